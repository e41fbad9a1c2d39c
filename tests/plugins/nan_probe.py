"""Test probe: a trainable whose loss turns NaN when `poison` is sampled true.

Named by its dotted module path (``trainable: plugins.nan_probe``), the
same way a user plugs in a model of their own.
"""

from torch import nn

from hpsearch.trainables.constraints import BOOL, Param

TASK = "classification"
PARAMS = (Param("poison", BOOL, False, "multiply the logits by NaN"),)


class _Poisonable(nn.Module):
    def __init__(self, in_features: int, classes: int, poison: bool):
        super().__init__()
        self.fc = nn.Linear(in_features, classes)
        self.poison = poison

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return out * float("nan") if self.poison else out


def build(config, data_info):
    n = data_info["in_channels"] * data_info["image_size"] ** 2
    return _Poisonable(n, data_info["num_classes"], bool(config.get("poison", False)))
