"""Registered trainables: a name -> a module with ``build(config, data_info)``.

Modules import lazily (Ray Tune's plugin habit): listing the registry or
validating a spec never imports torch. A spec may also name any importable
module (``trainable: mypkg.my_model``) that defines ``build`` and ``TASK``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

METRICS = {
    "classification": ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                       "val_precision", "val_recall", "val_f1", "val_f1_macro",
                       "epoch_seconds", "samples_per_second", "lr", "val_top5_accuracy"),
    "regression": ("train_loss", "train_rmse", "val_loss", "val_rmse", "val_mae", "val_r2",
                   "val_naive_rmse", "val_skill", "epoch_seconds", "samples_per_second", "lr"),
}


@dataclass(frozen=True)
class TrainableInfo:
    name: str
    module: str
    task: str
    default_spec: str
    description: str
    builder: str = "build"  # the module's function that builds the model
    data: str = "image"     # the data kind it takes: image | series | text

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS[self.task]


REGISTRY: dict[str, TrainableInfo] = {
    info.name: info
    for info in (
        TrainableInfo("resnet18", "trainables.resnet", "classification", "spaces/resnet18.yaml",
                      "ResNet-18 (BasicBlock, BN, projection shortcuts), paper or CIFAR stem"),
        TrainableInfo("resnext", "trainables.resnet", "classification", "spaces/resnext.yaml",
                      "ResNeXt: grouped bottlenecks; small row or resnext50_32x4d (arch)",
                      "build_resnext"),
        TrainableInfo("vgg16", "trainables.vgg", "classification", "spaces/vgg16.yaml",
                      "VGG-16 configuration C (three 1x1 convs), pools adapted to small inputs"),
        TrainableInfo("vgg13", "trainables.vgg", "classification", "spaces/vgg13.yaml",
                      "VGG-13 (configuration B), e.g. single-channel 32x32", "build_vgg13"),
        TrainableInfo("vgg_deep", "trainables.vgg", "classification", "spaces/vgg_deep.yaml",
                      "VGG-16 + 4 convs, no BN/dropout: the vanishing-gradient probe",
                      "build_deep"),
        TrainableInfo("small_vgg", "trainables.small_vgg", "classification",
                      "spaces/small_vgg_kernel.yaml",
                      "3-4 conv blocks: kernel size, 1x1 convs, pooling, activation"),
        TrainableInfo("cnn3", "trainables.cnn3", "classification", "spaces/cnn3.yaml",
                      "the reports' 3-block CNN, four head variants"),
        TrainableInfo("autoencoder", "trainables.autoencoder", "classification",
                      "spaces/autoencoder.yaml",
                      "dense autoencoder (MSE), encoder reused by a classifier head"),
        TrainableInfo("metric_resnet18", "trainables.metric", "classification",
                      "spaces/metric_resnet18.yaml",
                      "ResNet-18 embeddings: batch-hard triplet or center loss, NCC accuracy"),
        TrainableInfo("transfer", "trainables.transfer", "classification", "spaces/transfer.yaml",
                      "torchvision pretrained ShuffleNetV2 / MobileNetV3 / ResNet-18, new head"),
        TrainableInfo("forecaster", "trainables.forecaster", "regression",
                      "spaces/forecast_chicago.yaml",
                      "time series: RNN | LSTM | GRU stack (>= 3 layers) + Linear head",
                      data="series"),
        TrainableInfo("sentiment_lstm", "trainables.sentiment", "classification",
                      "spaces/sentiment_baseline.yaml",
                      "baseline: Embedding -> 3+ LSTM layers, dropout after each -> Linear",
                      "build_baseline", data="text"),
        TrainableInfo("sentiment", "trainables.sentiment", "classification",
                      "spaces/sentiment.yaml",
                      "improved: BiLSTM | GRU | RNN, attention pooling, GloVe/word2vec vectors",
                      data="text"),
        TrainableInfo("text_baseline", "trainables.text_baselines", "classification",
                      "spaces/text_baselines.yaml",
                      "Naive Bayes (counts or TF-IDF) and a decision tree (TF-IDF), scikit-learn",
                      data="text"),
    )
}


def get(name: str) -> TrainableInfo:
    """Resolve a registered name, or a dotted module path defining build() and TASK."""
    if name in REGISTRY:
        return REGISTRY[name]
    if "." in name:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise KeyError(f"cannot import trainable module {name!r}: {e}") from None
        if not callable(getattr(module, "build", None)) or getattr(module, "TASK", None) not in METRICS:
            raise KeyError(f"module {name!r} must define build(config, data_info) and "
                           f"TASK in {sorted(METRICS)}")
        return TrainableInfo(name, name, module.TASK, "", module.__doc__ or "",
                             data=getattr(module, "DATA", "image"))
    raise KeyError(f"unknown trainable {name!r}; registered: {', '.join(sorted(REGISTRY))} "
                   "(or a dotted module path defining build() and TASK)")
