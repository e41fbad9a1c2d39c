"""Every trainable's parameters, as data: one table per model family and one for
the shared loop (``trainables/loop.py``), which every SGD-trained model takes.

Each row is what the code reads from a trial config, with the default it uses
when the key is absent; ``tests/test_trainables.py`` runs every trainable with
a config that records its reads and checks them against these rows (a
declared key that nothing reads, an undeclared read, or a default that differs
from the code's all fail). The tables live here, not in the model modules,
because those import torch and validating a spec must not.
"""

from __future__ import annotations

from hpsearch.trainables.constraints import (
    BOOL,
    GIVEN,
    NULL,
    Derived,
    File,
    Param,
    Percentile,
    floats,
    ints,
    one_of,
)

POSITIVE = floats(0, None, "neither")
NON_NEGATIVE = floats(0)
DROPOUT = floats(0, 1, "left")  # p = 1 would zero every activation

# ---------------------------------------------------------------- the shared loop

LOOP = (
    Param("optimizer", one_of("sgd", "adam", "adamw", "rmsprop"), "sgd", "optimizer"),
    Param("lr", POSITIVE, 0.01, "initial learning rate"),
    Param("momentum", floats(0, 1), 0.9, "momentum (RMSprop's default: 0.0)",
          when=(("optimizer", ("sgd", "rmsprop")),)),
    Param("nesterov", BOOL, False, "Nesterov momentum", when=(("optimizer", ("sgd",)),)),
    Param("weight_decay", NON_NEGATIVE, 0.0, "L2 penalty coefficient"),
    Param("lr_scheduler", one_of("none", "plateau", "cosine", "step", "onecycle"), "none",
          "plateau: divide by 10 when the score stalls (the VGG paper); cosine: anneal to 0 "
          "over max_epochs; step: multiply by gamma every step_size epochs; onecycle: per "
          "step, warm up from lr/25 to lr over the first 30% of max_epochs, then cosine to "
          "~0 (Smith's one-cycle)"),
    Param("lr_patience", ints(0), 2, "epochs without improvement before plateau cuts the LR",
          when=(("lr_scheduler", ("plateau",)),)),
    Param("step_size", ints(1), 10, "epochs between step-scheduler cuts",
          when=(("lr_scheduler", ("step",)),)),
    Param("gamma", floats(0, 1, "right"), 0.1, "step scheduler's LR factor",
          when=(("lr_scheduler", ("step",)),)),
    Param("init", one_of("kaiming", "xavier", "default"), "kaiming",
          "weight init: He (fan_out for convs), Glorot uniform, or PyTorch's per-layer "
          "defaults", scope="init"),
    Param("batch_size", ints(2), 64, "training mini-batch (>= 2 for BatchNorm); every step "
          "has this shape, the ragged last batch is dropped"),
    Param("augment", BOOL, False, "random crop (pad 1/8 of the side) and horizontal flip, "
          "batched on tensors", scope="image"),
    Param("early_stopping_patience", ints(0), 0, "epochs without validation improvement "
          "before the trial stops (0: off); on accuracy, or R² for regression"),
    Param("track_grad_norms", BOOL, False, "log the L2 norm of every conv weight's gradient "
          "(grad_norm/conv01 ...) and the first/last ratio", scope="image"),
    Param("grad_norm_every", ints(1), 10, "iterations between gradient-norm samples, "
          "averaged per epoch", when=(("track_grad_norms", (True,)),), scope="image"),
    Param("grad_clip", NON_NEGATIVE, 0, "clip the global gradient norm to this (0: off; RNNs "
          "want 1-5)"),
    Param("loss", one_of("mse", "huber"), "mse", "loss on the scaled target",
          scope="regression"),
    Param("label_smoothing", floats(0, 1, "left"), 0.0, "cross-entropy label smoothing: the "
          "target puts this much of its mass evenly on every class (0: off); validation and "
          "test losses stay plain cross-entropy", scope="classification"),
    Param("precision", one_of("bf16", "fp32"), "bf16", "bf16 autocast for forward passes, or "
          "fp32 (for debugging numerics)", gpu=True),
    Param("channels_last", BOOL, True, "NHWC memory format for images and convolutions",
          gpu=True),
    Param("data_on_device", BOOL, True, "keep the training split on the GPU for the whole "
          "trial (a batch is one gather, no host copy)", gpu=True),
    Param("cuda_graphs", BOOL, True, "on a GPU, replay the training step's forward and "
          "backward as CUDA graphs (image models, fixed batch shapes)", gpu=True),
    Param("cudnn_benchmark", BOOL, False, "cuDNN autotuning per input shape; costs seconds per "
          "new shape", gpu=True),
)


def loop_params(task: str, data: str, *, init: bool = True) -> tuple[Param, ...]:
    """The shared loop's parameters that apply to a trainable of this task and data
    kind; ``init=False`` for one that keeps its own (pretrained) weights."""
    return tuple(p for p in LOOP if p.scope in ("", task, data) or (p.scope == "init" and init))


# ---------------------------------------------------------------- image models


def _resnet(default_arch: str) -> tuple[Param, ...]:
    return (
        Param("arch", one_of("resnet18", "resnet34", "resnet50", "resnext50_32x4d",
                             "resnext_small"), default_arch,
              "a row of the architecture table: block, blocks per stage, groups, width"),
        Param("groups", ints(1), Derived("the arch row's"),
              "cardinality C of the bottleneck blocks (basic-block rows need 1)"),
        Param("width_per_group", ints(1), Derived("the arch row's"),
              "bottleneck width d per group (basic-block rows need 64)"),
        Param("base_width", ints(1), 64, "channels of the first stage (64: the paper)"),
        Param("stem", one_of("imagenet", "cifar"), Derived("cifar up to 64 px, else imagenet"),
              "imagenet: 7x7/2 conv + max-pool (the paper); cifar: one 3x3/1 conv"),
        Param("dropout", DROPOUT, 0.0, "dropout before the final FC (the paper has none)"),
    )


RESNET18 = _resnet("resnet18")
RESNEXT = _resnet("resnext_small")

_VGG_WIDTHS = (
    Param("width_mult", POSITIVE, 1.0, "scales every conv's filters (1.0: the paper)"),
    Param("fc_width", ints(1), 512, "width of the two hidden FC layers (the paper's 4096 suits "
          "224 px inputs)"),
)
VGG13 = (
    *_VGG_WIDTHS,
    Param("dropout", DROPOUT, 0.5, "classifier dropout (the paper's 0.5)"),
    Param("batch_norm", BOOL, True, "BatchNorm after every conv (the paper has none)"),
)
VGG16 = (Param("vgg_config", one_of("A", "B", "C", "D", "E"), "C",
               "configuration of the paper's Table 1 (C: three 1x1 convs)"), *VGG13)
VGG_DEEP = (
    *_VGG_WIDTHS,
    Param("batch_norm", BOOL, False, "BatchNorm after every conv: the twin that shows what BN "
          "does to the vanishing gradients (false: the plain probe)"),
)

SMALL_VGG = (
    Param("blocks", ints(1), 3, "conv blocks, each doubling the filters"),
    Param("width", ints(1), 32, "filters of the first block"),
    Param("kernel_size", one_of(3, 5, 7), 3, "receptive field of each conv"),
    Param("use_1x1", BOOL, False, "a 1x1 conv after each block's conv (VGG C's idea)"),
    Param("pool", one_of("max", "avg"), "max", "downsampling"),
    Param("activation", one_of("relu", "leaky_relu", "elu", "gelu"), "relu", "activation"),
    Param("dropout", DROPOUT, 0.3, "dropout before the classifier"),
)

CNN3 = (
    Param("variant", one_of("baseline", "sigmoid", "extra_conv", "bn_sigmoid"), "baseline",
          "the reports' head variants: ReLU, sigmoid, an extra conv, BatchNorm + sigmoid"),
    Param("width", ints(1), 32, "filters of the first block (doubled per block)"),
    Param("hidden", ints(1), 256, "units of the dense head"),
    Param("dropout", DROPOUT, 0.3, "dropout before the output layer"),
)

AUTOENCODER = (
    Param("hidden", ints(1), 256, "units of the encoder's and decoder's hidden layer"),
    Param("code", ints(1), 64, "units of the code the classifier reads"),
    Param("dropout", DROPOUT, 0.2, "dropout before the classifier head"),
    Param("ae_epochs", ints(1), 3, "reconstruction (MSE) epochs before the classifier's"),
    Param("ae_lr", POSITIVE, 1e-3, "Adam learning rate of the reconstruction stage"),
    Param("freeze_encoder", BOOL, False, "keep the pretrained encoder fixed in stage 2"),
)

METRIC_RESNET18 = (
    Param("metric_loss", one_of("triplet", "center"), "triplet",
          "batch-hard triplet loss, or cross-entropy + center loss"),
    Param("margin", POSITIVE, 0.2, "triplet margin", when=(("metric_loss", ("triplet",)),)),
    Param("center_lambda", NON_NEGATIVE, 0.01, "weight of the center loss",
          when=(("metric_loss", ("center",)),)),
    Param("embedding_dim", ints(1), 64, "size of the L2-normalized embedding"),
    Param("base_width", ints(1), 64, "channels of ResNet-18's first stage"),
    Param("stem", one_of("imagenet", "cifar"), "cifar", "ResNet stem (see resnet18)"),
)

TRANSFER = (
    Param("backbone", one_of("shufflenet_v2", "mobilenet_v3", "resnet18"), "shufflenet_v2",
          "torchvision ImageNet model"),
    Param("finetune", one_of("freeze_backbone", "all", "last_k"), "freeze_backbone",
          "which stages train besides the new head"),
    Param("last_k", ints(1), 1, "the last k stages train", when=(("finetune", ("last_k",)),)),
    Param("resize", (ints(1), NULL), None, "input side fed to the backbone (null: the data's)"),
    Param("pretrained", BOOL, True, "load the ImageNet weights (false: random init)"),
    Param("weights", (File("a state_dict file of the backbone"), NULL), None,
          "the weights file (null: the torch hub cache, $TORCH_HOME/hub/checkpoints)",
          when=(("pretrained", (True,)),)),
)

# ---------------------------------------------------------------- sequences and texts

FORECASTER = (
    Param("seq_length", ints(1), 14, "past steps per input window"),
    Param("cell", one_of("rnn", "lstm", "gru"), "lstm", "recurrent cell"),
    Param("hidden_size", ints(1), 64, "units per recurrent layer"),
    Param("num_layers", ints(1), 3, "recurrent layers (the course asks for >= 3)"),
    Param("bidirectional", BOOL, False, "read each window both ways"),
    Param("dropout", DROPOUT, 0.1, "between recurrent layers and before the head"),
    Param("head_layers", ints(1), 1, "Linear layers on top"),
    Param("head_hidden", ints(1), 64, "width of the head's hidden Linear layers"),
    Param("residual", BOOL, False, "predict the change from the last observed target value "
          "(the naive forecast) rather than the value"),
)

_EMBEDDINGS = "a GloVe or word2vec text file (word v1 v2 ... per line)"
VECTOR_NAMES = ("glove.6B.100d",)  # trainables.data.vectors.NAMED, without importing it here
TEXT_PREPARATION = (
    Param("tokenizer", one_of("basic_english", "treebank", "tweet", "word_tokenize"),
          "basic_english", "torchtext's basic_english, or NLTK's (word_tokenize needs punkt_tab)"),
    Param("lowercase", BOOL, True, "lower-case before tokenizing"),
    Param("min_freq", ints(1), 2, "training-split count a word needs to enter the vocabulary"),
    Param("max_vocab", ints(3), 20000, "vocabulary size, <pad> and <unk> included"),
    Param("max_len", (ints(1), Percentile("training lengths")), "p95",
          "tokens kept per text: a count, or a percentile of the training lengths"),
)
_TEXT_RNN = (
    Param("embeddings", (one_of(*VECTOR_NAMES), File(_EMBEDDINGS), NULL), None,
          "pretrained vectors, by name (fetched once) or a file; their size sets embed_dim"),
    Param("freeze_embeddings", BOOL, False, "keep the pretrained vectors fixed",
          when=(("embeddings", (GIVEN,)),)),
    Param("embed_dim", ints(1), 100, "embedding size", when=(("embeddings", (None,)),)),
    Param("hidden_size", ints(1), 128, "units per recurrent layer (and direction)"),
    Param("dropout", DROPOUT, 0.3, "after the embedding and after every recurrent layer"),
)
SENTIMENT_LSTM = (
    *TEXT_PREPARATION, *_TEXT_RNN,
    Param("num_layers", ints(3), 3, "LSTM layers (the baseline has at least 3)"),
)
SENTIMENT = (
    *TEXT_PREPARATION, *_TEXT_RNN,
    Param("num_layers", ints(1), 1, "recurrent layers"),
    Param("cell", one_of("rnn", "lstm", "gru"), "lstm", "recurrent cell"),
    Param("bidirectional", BOOL, False, "read each text both ways"),
    Param("pooling", one_of("last", "mean", "max", "attention"), "last",
          "per-token outputs -> one vector (attention: additive, masked)"),
    Param("head_hidden", ints(0), 0, "a hidden Linear layer before the output (0: none)"),
    Param("design", (one_of("rnn64", "rnn256", "lstm1", "lstm2", "bilstm1"), NULL), None,
          "a course-report design; sets cell, hidden_size, num_layers, bidirectional"),
)

TEXT_BASELINE = (
    Param("model", one_of("nb", "tree"), "nb", "Multinomial Naive Bayes, or a decision tree"),
    Param("features", one_of("count", "tfidf"), "tfidf", "word n-gram counts, or TF-IDF"),
    Param("ngram_max", ints(1), 1, "n-grams from 1 to this"),
    Param("min_df", ints(1), 2, "training texts an n-gram must appear in"),
    Param("max_features", ints(1), 20000, "vocabulary size (the most frequent n-grams)"),
    Param("lowercase", BOOL, True, "lower-case the texts"),
    Param("strip", BOOL, True, "replace punctuation and digits by spaces"),
    Param("stop_words", one_of("none", "english"), "none", "scikit-learn's English list"),
    Param("alpha", POSITIVE, 1.0, "Naive Bayes smoothing", when=(("model", ("nb",)),)),
    Param("max_depth", (ints(1), NULL), None, "tree depth (null: unlimited)",
          when=(("model", ("tree",)),)),
    Param("min_samples_leaf", ints(1), 1, "training texts per leaf",
          when=(("model", ("tree",)),)),
)
