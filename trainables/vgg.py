"""VGG (Simonyan & Zisserman, 2015), configurations as data.

Each configuration is a list of layers: an int is a 3x3 conv with that many
filters, ``"1x1:N"`` a 1x1 conv (configuration C), ``"M"`` a 2x2 max-pool.
The classifier is the paper's: two FC layers with dropout, then the output.

Small inputs (28x28 Fashion-MNIST, 32x32 CIFAR-style) cannot take five pools,
so ``adapt_pools=True`` (the default) keeps a pool only while the feature map
is at least 2x2 and sizes the classifier from the map that remains. At
224x224 nothing is skipped and the network is exactly the paper's.
"""

from __future__ import annotations

import torch
from torch import nn

TASK = "classification"

# Table 1 of the paper. C differs from D only in its three 1x1 convs.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "1x1:256", "M",
          512, 512, "1x1:512", "M", 512, 512, "1x1:512", "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
    # Part II's vanishing-gradient probe: VGG-16 (D) with one more 3x3 conv in
    # each of the first four blocks. Filters never decrease along the depth and
    # no pool is added: 17 convs + 3 FC = 20 weight layers. Built without
    # dropout, and without BatchNorm unless asked (see build_deep), so the
    # gradients are the plain ones; the BatchNorm twin shows what BN changes.
    "deep": [64, 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _conv_spec(layer: int | str) -> tuple[int, int]:
    """Return (out_channels, kernel_size) for a conv entry of a config."""
    if isinstance(layer, str) and layer.startswith("1x1:"):
        return int(layer[4:]), 1
    return int(layer), 3


class VGG(nn.Module):
    def __init__(
        self,
        config: list[int | str],
        *,
        in_channels: int = 3,
        image_size: int = 224,
        num_classes: int = 1000,
        width_mult: float = 1.0,  # scales every conv's filters; 1.0 is the paper
        fc_width: int = 4096,  # the paper's 4096; 256-512 suits 28-64 px inputs
        dropout: float = 0.5,  # the paper's classifier dropout
        batch_norm: bool = False,  # the paper has none; it makes deep nets trainable from scratch
        adapt_pools: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for layer in config:
            if layer == "M":
                if adapt_pools and size < 2:
                    continue  # a pool would shrink the map to nothing
                layers.append(nn.MaxPool2d(2, 2))
                size //= 2
                continue
            out, k = _conv_spec(layer)
            out = max(1, round(out * width_mult))
            layers.append(nn.Conv2d(channels, out, k, padding=k // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        if size < 1:
            raise ValueError(
                f"image_size={image_size} is too small for this VGG without adapt_pools; "
                "use adapt_pools=True or a larger image_size"
            )
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def vgg(name: str, **kwargs) -> VGG:
    if name not in CONFIGS:
        raise ValueError(f"unknown VGG configuration {name!r}; choose one of {sorted(CONFIGS)}")
    return VGG(CONFIGS[name], **kwargs)


def build(config: dict, data_info: dict, *, name: str | None = None) -> nn.Module:
    """VGG-16 configuration C (the default; ``vgg_config`` picks A-E) sized to the data;
    ``name`` fixes the configuration instead."""
    return vgg(
        name or str(config.get("vgg_config", "C")),
        in_channels=data_info["in_channels"],
        image_size=data_info["image_size"],
        num_classes=data_info["num_classes"],
        width_mult=float(config.get("width_mult", 1.0)),
        fc_width=int(config.get("fc_width", 512)),
        dropout=float(config.get("dropout", 0.5)),
        batch_norm=bool(config.get("batch_norm", True)),
    )


def build_vgg13(config: dict, data_info: dict) -> nn.Module:
    """VGG-13 (configuration B), e.g. single-channel on 32x32 as in the course reports."""
    return build(config, data_info, name="B")


def build_deep(config: dict, data_info: dict) -> nn.Module:
    """VGG-Deep: 17 convs, no dropout, ReLU; BatchNorm after every conv only with
    ``batch_norm`` (off by default: the plain network is the vanishing-gradient probe)."""
    return vgg(
        "deep",
        in_channels=data_info["in_channels"], image_size=data_info["image_size"],
        num_classes=data_info["num_classes"], width_mult=float(config.get("width_mult", 1.0)),
        fc_width=int(config.get("fc_width", 512)), dropout=0.0,
        batch_norm=bool(config.get("batch_norm", False)),
    )
