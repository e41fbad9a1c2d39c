"""A VGG-like net of 3-4 conv blocks whose options are Part II's investigations.

Each investigation is one space dimension (the others fixed in its spec):
    kernel_size  3 | 5 | 7          receptive field per layer
    use_1x1      bool               a 1x1 conv after each block's conv (VGG config C's idea)
    pool         max | avg          downsampling
    activation   relu | leaky_relu | elu | gelu
plus ``blocks`` (3 or 4), ``width`` (filters of the first block, doubled per
block) and ``dropout`` before the classifier.
"""

from __future__ import annotations

from torch import nn

TASK = "classification"

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "elu": nn.ELU,
               "gelu": nn.GELU}


class SmallVGG(nn.Module):
    def __init__(self, *, in_channels: int, image_size: int, num_classes: int, blocks: int = 3,
                 width: int = 32, kernel_size: int = 3, use_1x1: bool = False,
                 pool: str = "max", activation: str = "relu", dropout: float = 0.3) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be max or avg, got {pool!r}")
        if kernel_size not in (3, 5, 7):
            raise ValueError(f"kernel_size must be 3, 5 or 7, got {kernel_size!r}")
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for i in range(blocks):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, kernel_size, padding=kernel_size // 2),
                       nn.BatchNorm2d(out), ACTIVATIONS[activation]()]
            if use_1x1:
                layers += [nn.Conv2d(out, out, 1), nn.BatchNorm2d(out), ACTIVATIONS[activation]()]
            if size >= 2:
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                size //= 2
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(channels * size * size, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def build(config: dict, data_info: dict) -> nn.Module:
    return SmallVGG(
        in_channels=data_info["in_channels"], image_size=data_info["image_size"],
        num_classes=data_info["num_classes"], blocks=int(config.get("blocks", 3)),
        width=int(config.get("width", 32)), kernel_size=int(config.get("kernel_size", 3)),
        use_1x1=bool(config.get("use_1x1", False)), pool=config.get("pool", "max"),
        activation=config.get("activation", "relu"), dropout=float(config.get("dropout", 0.3)),
    )
