"""Transfer learning from torchvision's pretrained ImageNet models (by design
the one trainable that uses ``torchvision.models``).

    backbone   shufflenet_v2 | mobilenet_v3 | resnet18
    finetune   freeze_backbone | all | last_k   (``last_k``: the last k stages train)
    resize     input side fed to the backbone (e.g. 224; default: the data's size)
    weights    path to a state_dict file; default: the torch hub cache

Weights never download at training time (trials must not race to the
internet). They come from ``weights:`` or from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``); when neither has them the error
names the file, where to put it and the URL it comes from.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

TASK = "classification"

# backbone: (torchvision builder, weights enum name, head attribute path)
BACKBONES = {
    "shufflenet_v2": ("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_Weights", "fc"),
    "mobilenet_v3": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier.3"),
    "resnet18": ("resnet18", "ResNet18_Weights", "fc"),
}


class WeightsNotFound(FileNotFoundError):
    pass


def expected_weights_file(backbone: str) -> tuple[Path, str]:
    """(where the hub cache keeps the file, the URL it comes from)."""
    import torchvision.models as tvm

    _, enum_name, _ = BACKBONES[backbone]
    url = getattr(tvm, enum_name).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def weights_path(backbone: str, weights: str | None) -> Path:
    """The state_dict file to load: ``weights``, else the hub cache's. WeightsNotFound,
    naming the file and the URL it comes from, when it is not there."""
    path, url = expected_weights_file(backbone)
    path = Path(weights) if weights else path
    if not path.is_file():
        raise WeightsNotFound(f"pretrained weights for {backbone} not found at {path}; download "
                              f"{url} and put it there (or set `weights: <file>` in the spec)")
    return path


def load_pretrained_state(backbone: str, weights: str | None) -> dict:
    return torch.load(weights_path(backbone, weights), map_location="cpu", weights_only=True)


def preflight(values) -> None:
    """Before a search starts (``hpsearch run`` calls it): the weights of every backbone
    the search may build are there. ``values(name)``: the values it may give ``name``."""
    if True in values("pretrained"):
        for backbone in values("backbone"):
            for weights in values("weights"):
                weights_path(backbone, weights)


class TransferNet(nn.Module):
    def __init__(self, backbone: nn.Module, *, in_channels: int, resize: int | None,
                 frozen: list[nn.Module] = ()) -> None:
        super().__init__()
        self.backbone = backbone
        self.in_channels, self.resize = in_channels, resize
        # frozen stages keep their ImageNet BatchNorm statistics: always in eval mode
        self._frozen_norms = [m for stage in frozen for m in stage.modules()
                              if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen_norms:
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:  # ImageNet models expect three channels
            x = x.expand(-1, 3, -1, -1)
        if self.resize and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                              align_corners=False)
        return self.backbone(x)


def _replace_head(model: nn.Module, path: str, num_classes: int) -> None:
    *parents, leaf = path.split(".")
    owner = model
    for p in parents:
        owner = owner[int(p)] if p.isdigit() else getattr(owner, p)
    old = owner[int(leaf)] if leaf.isdigit() else getattr(owner, leaf)
    new = nn.Linear(old.in_features, num_classes)
    if leaf.isdigit():
        owner[int(leaf)] = new
    else:
        setattr(owner, leaf, new)


def _stages(model: nn.Module, head: str) -> list[nn.Module]:
    """Top-level children that hold parameters, the head excluded, in order."""
    head_root = head.split(".")[0]
    return [m for name, m in model.named_children()
            if name != head_root and any(True for _ in m.parameters())]


def build(config: dict, data_info: dict) -> nn.Module:
    import torchvision.models as tvm

    name = config.get("backbone", "shufflenet_v2")
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
    builder, _, head = BACKBONES[name]
    model = getattr(tvm, builder)(weights=None)
    if config.get("pretrained", True):
        model.load_state_dict(load_pretrained_state(name, config.get("weights")))
    _replace_head(model, head, data_info["num_classes"])
    mode = config.get("finetune", "freeze_backbone")
    stages = _stages(model, head)
    if mode == "freeze_backbone":
        frozen = stages
    elif mode == "all":
        frozen = []
    elif mode == "last_k":
        k = int(config.get("last_k", 1))
        frozen = stages[:max(0, len(stages) - k)]
    else:
        raise ValueError(f"finetune must be freeze_backbone, all or last_k, got {mode!r}")
    for stage in frozen:
        for p in stage.parameters():
            p.requires_grad_(False)
    resize = config.get("resize")
    return TransferNet(model, in_channels=data_info["in_channels"],
                       resize=int(resize) if resize else None, frozen=frozen)


# the loop must not re-initialize pretrained weights
KEEP_INIT = True
