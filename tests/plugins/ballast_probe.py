"""Test probe: a linear classifier whose checkpoints weigh ``ballast_mb`` MiB more (a
buffer of that size in its state_dict), to fill a small disk with them, and whose
training steps each take at least ``pace`` seconds, so a test can act mid-trial
without depending on how busy the machine is."""

import time

import torch
from torch import nn

from hpsearch.trainables.constraints import Param, one_of

TASK = "classification"
PARAMS = (Param("ballast_mb", one_of(0, 1, 64), 0, "MiB of state added to each checkpoint"),
          Param("pace", one_of(0.0, 0.02, 0.05), 0.0, "seconds each training step sleeps"))


class _Ballasted(nn.Module):
    def __init__(self, in_features: int, classes: int, ballast_mb: int, pace: float):
        super().__init__()
        self.fc = nn.Linear(in_features, classes)
        # random, so that no file system stores it sparsely or compresses it away
        self.register_buffer("ballast", torch.rand(ballast_mb * 2**18))
        self.pace = pace

    def forward(self, x):
        if self.training and self.pace:
            time.sleep(self.pace)
        return self.fc(x.flatten(1))


def build(config, data_info):
    n = data_info["in_channels"] * data_info["image_size"] ** 2
    return _Ballasted(n, data_info["num_classes"], int(config.get("ballast_mb", 0)),
                      float(config.get("pace", 0.0)))
