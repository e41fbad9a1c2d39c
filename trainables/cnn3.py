"""The course reports' custom 3-block CNN for 32x32 colour images.

Three conv blocks (conv-ReLU-conv-ReLU-maxpool, 32/64/128 filters) and a dense
head. The reports compare four architecture variants, here one categorical
dimension ``variant``:
    baseline     dense head with ReLU
    sigmoid      dense head with sigmoid
    extra_conv   an extra conv + ReLU after the last pool, ReLU head
    bn_sigmoid   BatchNorm before the sigmoid head
Xavier init and cosine LR are loop options (``init: xavier``, ``lr_scheduler: cosine``).
"""

from __future__ import annotations

from torch import nn

TASK = "classification"
VARIANTS = ("baseline", "sigmoid", "extra_conv", "bn_sigmoid")


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]


class CNN3(nn.Module):
    def __init__(self, *, in_channels: int, image_size: int, num_classes: int,
                 variant: str = "baseline", width: int = 32, hidden: int = 256,
                 dropout: float = 0.3) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        layers = _block(in_channels, width) + _block(width, 2 * width) + _block(2 * width, 4 * width)
        channels, size = 4 * width, image_size // 8
        if variant == "extra_conv":
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(channels * size * size, hidden)]
        if variant == "bn_sigmoid":
            head.append(nn.BatchNorm1d(hidden))
        head.append(nn.Sigmoid() if variant in ("sigmoid", "bn_sigmoid") else nn.ReLU(inplace=True))
        head += [nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


def build(config: dict, data_info: dict) -> nn.Module:
    if data_info["image_size"] < 8:
        raise ValueError("cnn3 needs inputs of at least 8x8 (three 2x2 pools); set data.image_size")
    return CNN3(in_channels=data_info["in_channels"], image_size=data_info["image_size"],
                num_classes=data_info["num_classes"], variant=config.get("variant", "baseline"),
                width=int(config.get("width", 32)), hidden=int(config.get("hidden", 256)),
                dropout=float(config.get("dropout", 0.3)))
