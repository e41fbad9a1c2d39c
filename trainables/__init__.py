"""Registered trainables: a name -> a module with ``build(config, data_info)`` and
the parameters it reads (declared in ``trainables/params.py``).

Modules import lazily (Ray Tune's plugin habit): listing the registry or
validating a spec never imports torch. A spec may also name any importable
module (``trainable: mypkg.my_model``) that defines ``build``, ``TASK`` and
``PARAMS`` (a tuple of :class:`trainables.constraints.Param`; the shared loop's
parameters are added to them as for a registered model). A module may also
define ``preflight(values)``: checks ``hpsearch run`` makes before anything
starts, e.g. that the pretrained weights the search needs are on disk.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from types import ModuleType

from hpsearch.trainables import params as P
from hpsearch.trainables.constraints import SCOPES, Param

METRICS = {
    "classification": ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                       "val_precision", "val_recall", "val_f1", "val_f1_macro",
                       "epoch_seconds", "samples_per_second", "lr", "val_top5_accuracy"),
    "regression": ("train_loss", "train_rmse", "val_loss", "val_rmse", "val_mae", "val_r2",
                   "val_naive_rmse", "val_skill", "epoch_seconds", "samples_per_second", "lr"),
}
# what a trial knows of its model before it trains (reported with every result, so a
# scheduler comparing trials at any rung sees them): size, compute, measured latency
FACTS = ("num_params", "macs_per_sample", "infer_ms", "infer_ms_batched")
# the direction in which a model-quality metric is better: an objective that names one
# with the other mode would search for the worst models (a spec error, not a choice)
BETTER = {**dict.fromkeys(("train_loss", "val_loss", "train_rmse", "val_rmse", "val_mae"), "min"),
          **dict.fromkeys(("train_accuracy", "val_accuracy", "val_precision", "val_recall",
                           "val_f1", "val_f1_macro", "val_top5_accuracy", "val_r2", "val_skill"),
                          "max")}


@dataclass(frozen=True)
class TrainableInfo:
    name: str
    module: str
    task: str
    default_spec: str
    description: str
    builder: str = "build"  # the module's function that builds the model
    data: str = "image"     # the data kind it takes: image | series | text
    model_params: tuple[Param, ...] = ()  # what the module reads; the loop's are added
    fits: bool = False        # trained by the module's fit() (scikit-learn), not the SGD loop
    keeps_init: bool = False  # KEEP_INIT: its weights are pretrained, the loop's `init` is moot
    preflight: bool = False   # the module's preflight(values) checks files before a search starts

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS[self.task]

    @property
    def reported(self) -> tuple[str, ...]:
        """Every metric a trial of this trainable reports (an objective or a constraint
        may name any): the task's per-epoch metrics, and the model's facts where the
        shared loop trains it."""
        return self.metrics + (() if self.fits else FACTS)

    @property
    def loop_params(self) -> tuple[Param, ...]:
        return () if self.fits else P.loop_params(self.task, self.data, init=not self.keeps_init)

    @property
    def params(self) -> dict[str, Param]:
        """Every parameter a spec may set for this trainable, by name."""
        return {p.name: p for p in (*self.model_params, *self.loop_params)}

    def unknown(self, key: str) -> str:
        """Why ``key`` is not a parameter of this trainable, and the likely fix (one line)."""
        loop = next((p for p in P.LOOP if p.name == key), None)
        if loop is not None and self.fits:
            why = "it is fitted by its module, not by the shared SGD loop"
        elif loop is not None and loop.scope == "init":
            why = "it keeps its pretrained weights, so the shared loop's `init` does not apply"
        elif loop is not None:
            why = f"the shared loop reads `{key}` for {SCOPES[loop.scope]} only"
        else:
            # a real parameter of other trainables is not a typo of a near name here
            others = sorted(n for n, info in REGISTRY.items() if n != self.name
                            and key in {p.name for p in info.model_params})
            close = difflib.get_close_matches(key, list(self.params), n=1)
            why = (f"it is a parameter of {', '.join(others)}, not of {self.name}" if others
                   else f"did you mean {close[0]!r}?" if close else "no such parameter")
        return (f"trainable {self.name!r} does not take `{key}`: {why} "
                f"(`hpsearch trainables {self.name}` lists its parameters)")


REGISTRY: dict[str, TrainableInfo] = {
    info.name: info
    for info in (
        TrainableInfo("resnet18", "hpsearch.trainables.resnet", "classification", "spaces/resnet18.yaml",
                      "ResNet-18 (BasicBlock, BN, projection shortcuts), paper or CIFAR stem",
                      model_params=P.RESNET18),
        TrainableInfo("resnext", "hpsearch.trainables.resnet", "classification", "spaces/resnext.yaml",
                      "ResNeXt: grouped bottlenecks; small row or resnext50_32x4d (arch)",
                      "build_resnext", model_params=P.RESNEXT),
        TrainableInfo("vgg16", "hpsearch.trainables.vgg", "classification", "spaces/vgg16.yaml",
                      "VGG-16 configuration C (three 1x1 convs), pools adapted to small inputs",
                      model_params=P.VGG16),
        TrainableInfo("vgg13", "hpsearch.trainables.vgg", "classification", "spaces/vgg13.yaml",
                      "VGG-13 (configuration B), e.g. single-channel 32x32", "build_vgg13",
                      model_params=P.VGG13),
        TrainableInfo("vgg_deep", "hpsearch.trainables.vgg", "classification", "spaces/vgg_deep.yaml",
                      "VGG-16 + 4 convs, no dropout, BN optional: the vanishing-gradient probe",
                      "build_deep", model_params=P.VGG_DEEP),
        TrainableInfo("small_vgg", "hpsearch.trainables.small_vgg", "classification",
                      "spaces/small_vgg_kernel.yaml",
                      "3-4 conv blocks: kernel size, 1x1 convs, pooling, activation",
                      model_params=P.SMALL_VGG),
        TrainableInfo("cnn3", "hpsearch.trainables.cnn3", "classification", "spaces/cnn3.yaml",
                      "the reports' 3-block CNN, four head variants", model_params=P.CNN3),
        TrainableInfo("autoencoder", "hpsearch.trainables.autoencoder", "classification",
                      "spaces/autoencoder.yaml",
                      "dense autoencoder (MSE), encoder reused by a classifier head",
                      model_params=P.AUTOENCODER),
        TrainableInfo("metric_resnet18", "hpsearch.trainables.metric", "classification",
                      "spaces/metric_resnet18.yaml",
                      "ResNet-18 embeddings: batch-hard triplet or center loss, NCC accuracy",
                      model_params=P.METRIC_RESNET18),
        TrainableInfo("transfer", "hpsearch.trainables.transfer", "classification", "spaces/transfer.yaml",
                      "torchvision pretrained ShuffleNetV2 / MobileNetV3 / ResNet-18, new head",
                      model_params=P.TRANSFER, keeps_init=True, preflight=True),
        TrainableInfo("forecaster", "hpsearch.trainables.forecaster", "regression",
                      "spaces/forecast_chicago.yaml",
                      "time series: RNN | LSTM | GRU stack (>= 3 layers) + Linear head",
                      data="series", model_params=P.FORECASTER),
        TrainableInfo("sentiment_lstm", "hpsearch.trainables.sentiment", "classification",
                      "spaces/sentiment_baseline.yaml",
                      "baseline: Embedding -> 3+ LSTM layers, dropout after each -> Linear",
                      "build_baseline", data="text", model_params=P.SENTIMENT_LSTM),
        TrainableInfo("sentiment", "hpsearch.trainables.sentiment", "classification",
                      "spaces/sentiment.yaml",
                      "improved: BiLSTM | GRU | RNN, attention pooling, GloVe/word2vec vectors",
                      data="text", model_params=P.SENTIMENT),
        TrainableInfo("text_baseline", "hpsearch.trainables.text_baselines", "classification",
                      "spaces/text_baselines.yaml",
                      "Naive Bayes (counts or TF-IDF) and a decision tree (TF-IDF), scikit-learn",
                      data="text", model_params=P.TEXT_BASELINE, fits=True),
    )
}


def get(name: str) -> TrainableInfo:
    """Resolve a registered name, or a dotted module path defining build(), TASK, PARAMS."""
    if name in REGISTRY:
        return REGISTRY[name]
    if "." in name:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise KeyError(f"cannot import trainable module {name!r}: {e}") from None
        declared = getattr(module, "PARAMS", None)
        if (not callable(getattr(module, "build", None))
                or getattr(module, "TASK", None) not in METRICS
                or not isinstance(declared, (tuple, list))
                or not all(isinstance(p, Param) for p in declared)):
            raise KeyError(f"module {name!r} must define build(config, data_info), "
                           f"TASK in {sorted(METRICS)} and PARAMS, a tuple of "
                           "trainables.constraints.Param (the parameters build() reads)")
        return TrainableInfo(name, name, module.TASK, "", module.__doc__ or "",
                             data=getattr(module, "DATA", "image"), model_params=tuple(declared),
                             fits=hasattr(module, "fit"),
                             keeps_init=bool(getattr(module, "KEEP_INIT", False)),
                             preflight=hasattr(module, "preflight"))
    close = difflib.get_close_matches(name, list(REGISTRY), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise KeyError(f"unknown trainable {name!r}; {hint}registered: {', '.join(sorted(REGISTRY))} "
                   "(or a dotted module path defining build(), TASK and PARAMS)")


def describe(name: str | None = None):
    """``hpsearch.trainables()``: the registered trainables as a table (name, task, data
    kind, spec file, description); ``hpsearch.trainables("resnet18")``: the parameters
    one takes (name, type, domain, default, scope, help), as ``hpsearch trainables NAME``
    prints them. Raises :class:`~hpsearch.SpecError` for an unknown name."""
    import pandas as pd

    from hpsearch.errors import SpecError

    if name is None:
        return pd.DataFrame(
            [{"name": i.name, "task": i.task, "data": i.data, "spec": i.default_spec,
              "description": i.description} for _, i in sorted(REGISTRY.items())])
    try:
        info = get(name)
    except KeyError as e:
        raise SpecError(e.args[0]) from None
    from hpsearch.trainables.constraints import show_default

    return pd.DataFrame([{"name": p.name, "type": p.type_name, "domain": p.domain_text,
                          "default": show_default(p),
                          "scope": "model" if p in info.model_params else "shared loop",
                          "help": p.help} for p in info.params.values()])


class _CallableRegistry(ModuleType):
    """This package, callable: ``hpsearch.trainables()`` is the public listing (the API
    names it so), while ``hpsearch.trainables.get`` and the modules stay where they are."""

    def __call__(self, name: str | None = None):
        return describe(name)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableRegistry
