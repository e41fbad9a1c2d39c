"""Test probe: a trainable that runs out of GPU memory when `oom` is sampled true.

On a machine without CUDA it raises ``torch.cuda.OutOfMemoryError`` itself (what
PyTorch raises when an allocation fails); on a GPU it first fills ``hog_gib`` of
memory, then asks for far more than the card has, so the error is real.

Every build checks what the previous trial on this worker process left behind:
the model of a trial that ran out of memory must be gone (its references
dropped), and on a GPU the cached blocks it used must be back with the driver
(``torch.cuda.memory_reserved``). Anything left over fails the trial that
finds it, with ``LeftoverMemory``.
"""

import weakref

import torch
from torch import nn

from hpsearch.trainables.constraints import BOOL, Param, floats

TASK = "classification"
PARAMS = (
    Param("oom", BOOL, False, "run out of GPU memory in the first forward pass"),
    Param("hog_gib", floats(0, None, closed="neither"), 1.0,
          "GiB held by the model when the huge allocation fails (GPU only)"),
)
_previous = None  # weakref to the model of the last trial that ran out of memory here


class LeftoverMemory(RuntimeError):
    pass


class _Hungry(nn.Module):
    def __init__(self, in_features: int, classes: int, oom: bool, hog_gib: float):
        super().__init__()
        self.fc = nn.Linear(in_features, classes)
        self.oom = oom
        self.hog_gib = hog_gib

    def forward(self, x):
        if self.oom:
            if x.is_cuda:
                # held by the model while the huge request fails: cached afterwards
                self.hog = torch.empty(int(self.hog_gib * 2**30), dtype=torch.uint8, device=x.device)
                torch.empty(2**44, dtype=torch.uint8, device=x.device)  # 16 TiB: a real OOM
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 16.00 TiB (probe)")
        return self.fc(x.flatten(1))


def build(config, data_info):
    global _previous
    if _previous is not None and _previous() is not None:
        raise LeftoverMemory("the previous trial's model is still alive on this worker")
    if torch.cuda.is_available() and torch.cuda.memory_reserved() > 2**28:
        raise LeftoverMemory(f"{torch.cuda.memory_reserved() / 2**30:.2f} GiB still reserved "
                             "by this worker's caching allocator")
    n = data_info["in_channels"] * data_info["image_size"] ** 2
    oom = bool(config.get("oom", False))
    model = _Hungry(n, data_info["num_classes"], oom, float(config.get("hog_gib", 1.0)))
    if oom:
        _previous = weakref.ref(model)
    return model
