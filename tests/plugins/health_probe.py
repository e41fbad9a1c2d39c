"""Test probe: trainables that are unhealthy in a known way, for the health stops.

``mode: diverge``: the logits double every 10 training steps, so the training
loss grows fast (and finite) whatever the optimizer does.
``mode: chance``: the logits are constant (zero), so the net guesses one class
and its loss stays at ln(classes): it cannot learn.
``mode: healthy``: a plain linear classifier, which learns digits at once.
"""

import torch
from torch import nn

from hpsearch.trainables.constraints import Param, one_of

TASK = "classification"
PARAMS = (Param("mode", one_of("diverge", "chance", "healthy"), "healthy", "how to misbehave"),)


class _Probe(nn.Module):
    def __init__(self, in_features: int, classes: int, mode: str):
        super().__init__()
        self.fc = nn.Linear(in_features, classes)
        self.mode = mode
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if self.mode == "chance":
            return out * 0.0
        if self.mode == "diverge" and self.training:
            self.calls += 1
            # doubles every 10 steps; no gradient reaches the weights, so no optimizer helps
            return (out * 0.0 + out.detach()) * 2.0 ** (self.calls / 10)
        return out


def build(config, data_info):
    n = data_info["in_channels"] * data_info["image_size"] ** 2
    return _Probe(n, data_info["num_classes"], config.get("mode", "healthy"))
