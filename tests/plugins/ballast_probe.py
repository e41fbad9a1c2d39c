"""Test probe: a linear classifier whose checkpoints weigh ``ballast_mb`` MiB more
(a buffer of that size in its state_dict), to fill a small disk with them."""

import torch
from torch import nn

from hpsearch.trainables.constraints import Param, one_of

TASK = "classification"
PARAMS = (Param("ballast_mb", one_of(0, 1, 2, 64), 0, "MiB of state added to each checkpoint"),)


class _Ballasted(nn.Module):
    def __init__(self, in_features: int, classes: int, ballast_mb: int):
        super().__init__()
        self.fc = nn.Linear(in_features, classes)
        # random, so that no file system stores it sparsely or compresses it away
        self.register_buffer("ballast", torch.rand(ballast_mb * 2**18))

    def forward(self, x):
        return self.fc(x.flatten(1))


def build(config, data_info):
    n = data_info["in_channels"] * data_info["image_size"] ** 2
    return _Ballasted(n, data_info["num_classes"], int(config.get("ballast_mb", 0)))
