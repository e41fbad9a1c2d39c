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
                       "epoch_seconds", "samples_per_second", "lr"),
}


@dataclass(frozen=True)
class TrainableInfo:
    name: str
    module: str
    task: str
    default_spec: str
    description: str

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
        TrainableInfo("vgg16", "trainables.vgg", "classification", "spaces/vgg16.yaml",
                      "VGG-16 configuration C (three 1x1 convs), pools adapted to small inputs"),
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
        return TrainableInfo(name, name, module.TASK, "", module.__doc__ or "")
    raise KeyError(f"unknown trainable {name!r}; registered: {', '.join(sorted(REGISTRY))} "
                   "(or a dotted module path defining build() and TASK)")
