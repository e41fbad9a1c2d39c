"""Classical text baselines (the course reports' Naive Bayes and decision tree),
trained by scikit-learn and run through the same engine as the LSTMs.

The model (nb | tree), its features (counts or TF-IDF of word n-grams, the
vocabulary from the training split) and their preprocessing are parameters:
``TEXT_BASELINE`` in ``trainables/params.py``, with domains and defaults.

A fitted model becomes a small torch module (Naive Bayes: a linear layer of log
probabilities; the tree: its node arrays walked with gathers), so the export,
the portable program, the test evaluation and the reports are the shared ones.
Its input is the feature vector; ``featurize`` (used by ``prepare`` and by
``hpsearch predict``) rebuilds it from a text with the stored vocabulary and idf.
"""

from __future__ import annotations

import functools
import json
import re
import time

import numpy as np
import torch
from torch import nn

from hpsearch.trainables.data import text as text_data

TASK = "classification"
_STRIP = re.compile(r"[^\w\s]|\d|_")


def preprocess(text: str, *, lowercase: bool, strip: bool) -> str:
    if lowercase:
        text = text.lower()
    if strip:
        text = _STRIP.sub(" ", text)
    return text


def vectorizer_options(config: dict) -> dict:
    stop = config.get("stop_words", "none")
    if stop not in ("none", "english"):
        raise ValueError(f"stop_words must be none or english, got {stop!r}")
    return {"features": config.get("features", "tfidf"), "ngram_max": int(config.get("ngram_max", 1)),
            "min_df": int(config.get("min_df", 2)), "max_features": int(config.get("max_features", 20000)),
            "lowercase": bool(config.get("lowercase", True)), "strip": bool(config.get("strip", True)),
            "stop_words": stop}


def featurize(texts: list[str], vec: dict) -> np.ndarray:
    """Texts -> the dense feature matrix the model takes (counts, or tf-idf with the
    stored idf and L2-normalized rows, exactly as TfidfVectorizer.transform)."""
    from sklearn.feature_extraction.text import CountVectorizer

    counter = CountVectorizer(
        vocabulary={w: i for i, w in enumerate(vec["vocabulary"])},
        ngram_range=(1, vec["ngram_max"]), lowercase=False,
        stop_words="english" if vec["stop_words"] == "english" else None,
        preprocessor=functools.partial(preprocess, lowercase=vec["lowercase"], strip=vec["strip"]))
    x = counter.transform(texts).astype(np.float64)
    if vec["features"] == "tfidf":
        x = x.multiply(np.asarray(vec["idf"])[None, :]).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(1))).ravel()
        x = x.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]).tocsr()
    return x


def prepare(data: text_data.Texts, config: dict):
    return _prepare_cached(json.dumps(vectorizer_options(config), sort_keys=True), data)


@functools.lru_cache(maxsize=4)
def _prepare_cached(key: str, data: text_data.Texts):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = json.loads(key)
    t0 = time.perf_counter()
    fitted = TfidfVectorizer(  # vocabulary and idf from the training split only
        ngram_range=(1, vec["ngram_max"]), min_df=vec["min_df"], max_features=vec["max_features"],
        lowercase=False, stop_words="english" if vec["stop_words"] == "english" else None,
        preprocessor=functools.partial(preprocess, lowercase=vec["lowercase"], strip=vec["strip"]))
    fitted.fit(data.train[0])
    vocab = [""] * len(fitted.vocabulary_)
    for w, i in fitted.vocabulary_.items():
        vocab[i] = w
    vec = {**vec, "vocabulary": vocab, "idf": fitted.idf_.tolist()}
    train_x = featurize(data.train[0], vec)
    dense = {s: torch.from_numpy(featurize(getattr(data, s)[0], vec).toarray().astype(np.float32))
             for s in ("val", "test")}
    info = {**data.info, "vectorizer": vec, "n_features": len(vocab),
            "featurize_seconds": time.perf_counter() - t0}
    return text_data.Encoded(
        train=(train_x, torch.from_numpy(data.train[1])),  # sparse: only fit() reads it
        val=(dense["val"], torch.from_numpy(data.val[1])),
        test=(dense["test"], torch.from_numpy(data.test[1])), info=info,
        texts={s: getattr(data, s)[0] for s in ("train", "val", "test")})


class NaiveBayes(nn.Module):
    """Multinomial NB as a linear map: joint log-likelihood = x @ log P(w|c)^T + log P(c)."""

    def __init__(self, n_features: int, num_classes: int):
        super().__init__()
        self.register_buffer("log_prob", torch.zeros(num_classes, n_features))
        self.register_buffer("log_prior", torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.log_prob.T + self.log_prior


class Tree(nn.Module):
    """A fitted decision tree walked with gathers: ``depth`` steps, every sample at once.
    Output: log class probabilities of the leaf reached."""

    def __init__(self, n_nodes: int, depth: int, num_classes: int):
        super().__init__()
        self.depth = depth
        for name, dtype in (("feature", torch.long), ("left", torch.long), ("right", torch.long)):
            self.register_buffer(name, torch.zeros(n_nodes, dtype=dtype))
        self.register_buffer("threshold", torch.zeros(n_nodes))
        self.register_buffer("value", torch.zeros(n_nodes, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for _ in range(self.depth):
            leaf = self.left[node] < 0
            feat = x.gather(1, self.feature[node].clamp(min=0)[:, None]).squeeze(1)
            nxt = torch.where(feat <= self.threshold[node], self.left[node], self.right[node])
            node = torch.where(leaf, node, nxt)
        return torch.log(self.value[node] + 1e-9)


def build(config: dict, data_info: dict) -> nn.Module:
    k = data_info["num_classes"]
    if config.get("model", "nb") == "nb":
        return NaiveBayes(data_info["n_features"], k)
    tree = data_info.get("tree", {"n_nodes": 1, "depth": 0})  # filled in by fit()
    return Tree(tree["n_nodes"], tree["depth"], k)


def _from_sklearn(clf, config: dict, info: dict) -> tuple[nn.Module, dict]:
    if config.get("model", "nb") == "nb":
        model = NaiveBayes(info["n_features"], info["num_classes"])
        model.log_prob.copy_(torch.from_numpy(clf.feature_log_prob_))
        model.log_prior.copy_(torch.from_numpy(clf.class_log_prior_))
        return model, info
    t = clf.tree_
    info = {**info, "tree": {"n_nodes": int(t.node_count), "depth": int(t.max_depth)}}
    model = Tree(t.node_count, t.max_depth, info["num_classes"])
    model.feature.copy_(torch.from_numpy(t.feature.astype(np.int64)))
    model.left.copy_(torch.from_numpy(t.children_left.astype(np.int64)))
    model.right.copy_(torch.from_numpy(t.children_right.astype(np.int64)))
    model.threshold.copy_(torch.from_numpy(t.threshold.astype(np.float32)))
    value = t.value[:, 0, :]
    model.value.copy_(torch.from_numpy(value / np.maximum(value.sum(1, keepdims=True), 1e-12)))
    return model, info


def fit(config: dict, data, report) -> None:
    """The whole trial: fit on the training split, evaluate on validation, one report."""
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.tree import DecisionTreeClassifier

    from hpsearch.trainables.loop import evaluate

    t0 = time.perf_counter()
    x, y = data.train
    if config.get("model", "nb") == "nb":
        clf = MultinomialNB(alpha=float(config.get("alpha", 1.0)))
    else:
        depth = config.get("max_depth")
        clf = DecisionTreeClassifier(max_depth=int(depth) if depth else None,
                                     min_samples_leaf=int(config.get("min_samples_leaf", 1)),
                                     random_state=int(config.get("seed", 0)))
    clf.fit(x, y.numpy())
    train_seconds = time.perf_counter() - t0
    model, info = _from_sklearn(clf, config, data.info)
    train_acc = float((clf.predict(x) == y.numpy()).mean())
    val = evaluate(model, *data.val, device=torch.device("cpu"))
    metrics = {
        "epoch": 1, "train_loss": float("nan"), "train_accuracy": train_acc,
        "val_loss": val["loss"], "val_accuracy": val["accuracy"],
        **{f"val_{k}": val[k] for k in ("precision", "recall", "f1", "f1_macro")},
        "epoch_seconds": time.perf_counter() - t0, "samples_per_second": len(y) / train_seconds,
        "lr": 0.0, "trial_finished": True, "early_stopped": False,
        "num_params": sum(b.numel() for b in model.buffers()),
        "text_vocab_size": info["n_features"], "text_featurize_seconds": info["featurize_seconds"],
    }
    metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v))}
    state = {"epoch": 1, "best": val["accuracy"], "bad_epochs": 0, "model": model.state_dict(),
             "config": config, "data_info": info,
             "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    report(metrics, state)
