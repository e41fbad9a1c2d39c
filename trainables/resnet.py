"""ResNet (He et al., 2016) and ResNeXt (Xie et al., 2017) as rows of one table.

A row names the block (basic: two 3x3 convs; bottleneck: 1x1 -> grouped 3x3 ->
1x1 with expansion 4), the blocks per stage, the cardinality (``groups``) and
the bottleneck width per group. Shortcuts are identity where shapes match and
1x1 projections (with BatchNorm) where they change: option B of the paper.

``stem="imagenet"`` is the paper's 7x7/2 conv + 3x3/2 max-pool; ``stem="cifar"``
is a 3x3/1 conv with no pool, the usual choice for 28-64 px inputs, where the
ImageNet stem would throw away three quarters of the pixels at once.
"""

from __future__ import annotations

import torch
from torch import nn

TASK = "classification"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 1,
                 base_width: int = 64) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 1,
                 base_width: int = 64) -> None:
        super().__init__()
        # ResNeXt's "C x d" inner width (torchvision's formula; at least 1 per group so
        # narrow test-sized nets stay valid)
        width = max(1, int(planes * (base_width / 64.0))) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)  # stride on the 3x3, as in v1.5
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Module:
    if stride == 1 and inplanes == outplanes:
        return nn.Identity()
    return nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))


# name: (block, blocks per stage, groups, width per group)
ARCHS: dict[str, tuple[type[nn.Module], tuple[int, ...], int, int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext_small": (Bottleneck, (1, 1, 1, 1), 8, 4),  # 32-64 px inputs
}


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        base_width: int = 64,  # channels of the first stage; 64 is the paper
        stem: str = "imagenet",
        dropout: float = 0.0,  # before the final FC; the paper has none
    ) -> None:
        super().__init__()
        self.inplanes = base_width
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, base_width, 7, 2, padding=3, bias=False),
                nn.BatchNorm2d(base_width), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, padding=1),
            )
        elif stem == "cifar":
            self.stem = nn.Sequential(
                conv3x3(in_channels, base_width), nn.BatchNorm2d(base_width), nn.ReLU(inplace=True),
            )
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        stages = []
        for i, blocks in enumerate(layers):
            planes = base_width * 2**i
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(block(self.inplanes, planes, stride if b == 0 else 1, groups,
                                   width_per_group))
                self.inplanes = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(self.inplanes, num_classes),
        )
        # Zero-init of each residual branch's last BN (Goyal et al., 2017) is left
        # out on purpose: the paper's init is the baseline the course compares against.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def resnet(name: str, **kwargs) -> ResNet:
    if name not in ARCHS:
        raise ValueError(f"unknown ResNet variant {name!r}; choose one of {sorted(ARCHS)}")
    block, layers, groups, width = ARCHS[name]
    return ResNet(block, layers, groups=groups, width_per_group=width, **kwargs)


def build(config: dict, data_info: dict, *, default_arch: str = "resnet18") -> nn.Module:
    """ResNet-18 (the default row) sized to the data. ``groups`` and
    ``width_per_group`` override the row's cardinality and bottleneck width."""
    name = config.get("arch", default_arch)
    if name not in ARCHS:
        raise ValueError(f"unknown ResNet variant {name!r}; choose one of {sorted(ARCHS)}")
    block, layers, groups, width = ARCHS[name]
    return ResNet(
        block, layers,
        groups=int(config.get("groups", groups)),
        width_per_group=int(config.get("width_per_group", width)),
        in_channels=data_info["in_channels"],
        num_classes=data_info["num_classes"],
        base_width=int(config.get("base_width", 64)),
        stem=config.get("stem", "cifar" if data_info["image_size"] <= 64 else "imagenet"),
        dropout=float(config.get("dropout", 0.0)),
    )


def build_resnext(config: dict, data_info: dict) -> nn.Module:
    """ResNeXt: bottleneck blocks with a grouped 3x3 conv; the small row by default."""
    return build(config, data_info, default_arch="resnext_small")
