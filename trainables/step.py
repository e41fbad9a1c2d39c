"""One training step of the shared loop, set up once per trial for its device.

On a GPU the enemy is fixed cost, not FLOPs (DESIGN.md, performance rules).
At the batch sizes the course's specs search (32-128 images of 28 px), an
eager ResNet-18 step is ~400 kernel launches and takes ~10 ms whatever the
batch: the GPU mostly waits for Python. So on CUDA this module

- replays the model's forward and backward as CUDA graphs
  (``torch.cuda.make_graphed_callables``: two graph launches instead of
  hundreds of kernel launches; capture costs a few steps, not a compilation,
  so every trial can afford it, including the many that ASHA stops after one
  epoch). Loss, metrics and the optimizer stay eager and are a few kernels
  each (fused SGD/Adam/AdamW);
- keeps every training batch the same shape (the loop drops the ragged last
  batch), so one capture serves the whole trial;
- leaves cuDNN autotuning off by default: it re-times kernels for every new
  input shape, which a 1-epoch trial pays in full and a reused worker pays
  again for every batch size it meets (``cudnn_benchmark: true`` turns it on);
- keeps the training split resident on the GPU, shared by all the trials a
  worker runs (data sources are cached per process, and so is their copy on the
  device), and model facts (parameters, MACs) computed once per architecture;
- augments on the device with the device's RNG (no host round trip per batch).

Config switches (each a no-op on CPU, where fp32 NCHW eager is the fast path):
``precision`` bf16|fp32, ``channels_last``, ``data_on_device``, ``cuda_graphs``,
``cudnn_benchmark``. ``hpsearch plan`` times this same step.
"""

from __future__ import annotations

import inspect
import time

import torch
from torch import nn
from torch.nn import functional as F


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    """Where a model lives (a fitted Naive Bayes or tree has buffers, no parameters)."""
    t = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return t.device if t is not None else torch.device("cpu")


def gpu_options(config: dict, device: torch.device) -> dict:
    """The GPU-only switches of a config (all off on CPU)."""
    cuda = device.type == "cuda"
    precision = config.get("precision", "bf16")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, got {precision!r}")
    return {"amp": cuda and precision == "bf16",
            "channels_last": cuda and bool(config.get("channels_last", True)),
            "data_on_device": cuda and bool(config.get("data_on_device", True)),
            "cuda_graphs": cuda and bool(config.get("cuda_graphs", True)),
            "cudnn_benchmark": cuda and bool(config.get("cudnn_benchmark", False))}


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    if device.type == "cuda":
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device, amp: bool = True, cache: bool = True):
    # bf16 autocast on GPU only: on CPU it is slower than fp32 for these nets
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda",
                          cache_enabled=cache)


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding) and horizontal flip, for a whole batch at once.
    Random numbers come from ``generator`` if given, else from the batch's device."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    rng = x.device if generator is None else generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=rng).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=rng).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    flip = (torch.rand(n, generator=generator, device=rng) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def fused_kwargs(optimizer_class, device: torch.device | None) -> dict:
    """``fused=True`` where the optimizer has a fused CUDA kernel (one launch per step
    instead of several per parameter group)."""
    if device is None or device.type != "cuda":
        return {}
    return {"fused": True} if "fused" in inspect.signature(optimizer_class).parameters else {}


def regression_loss(pred: torch.Tensor, y: torch.Tensor, name: str) -> torch.Tensor:
    if name == "mse":
        return F.mse_loss(pred, y)
    if name == "huber":
        return F.huber_loss(pred, y, delta=1.0)
    raise ValueError(f"loss must be mse or huber, got {name!r}")


# ---------------------------------------------------------------- per-worker caches


class _Resident:
    """The training split on the device, kept while the same host tensors come back.

    Tune reuses a worker for many trials and the data source is cached per
    process, so consecutive trials pass the very same tensors: copy them once.
    One entry only: a worker that moves to another source frees the old copy."""

    entry: tuple | None = None

    @classmethod
    def get(cls, x: torch.Tensor, y: torch.Tensor, device: torch.device):
        e = cls.entry
        if e is not None and e[0] is x and e[1] is y and e[2] == device:
            return e[3]
        cls.entry = None  # free the old copy before making the new one
        moved = (x.to(device), y.to(device))
        cls.entry = (x, y, device, moved)
        return moved


def resident(x: torch.Tensor, y: torch.Tensor, device: torch.device):
    return _Resident.get(x, y, device)


# ---------------------------------------------------------------- the step


class TrainStep:
    """The loop's training step for one trial: ``step(xb, yb)`` trains on one batch
    and accumulates loss (and correct predictions or squared error) on the device;
    ``totals()`` reads them with one host sync. ``capture(example)`` graphs the
    model's forward and backward when the trial's switches allow it."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, device: torch.device,
                 gpu: dict, regression: bool = False, loss_name: str = "mse", loss_hook=None,
                 hook_config: dict | None = None, augment: bool = False, grad_clip: float = 0.0,
                 grad_norms=None, label_smoothing: float = 0.0) -> None:
        self.model, self.optimizer, self.device, self.gpu = model, optimizer, device, gpu
        self.regression, self.loss_name, self.loss_hook = regression, loss_name, loss_hook
        self.hook_config = hook_config or {}
        self.augment, self.grad_clip, self.grad_norms = augment, grad_clip, grad_norms
        self.label_smoothing = label_smoothing
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.graphed = False
        self.capture_error: str | None = None
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.sse = torch.zeros((), device=self.device)
        self.samples = 0

    def capture(self, example: torch.Tensor) -> float:
        """Graph the model's training forward and backward for batches shaped like
        ``example`` (already on the device); returns the seconds it took. Off on CPU,
        for non-image inputs (packed sequences are not capturable) and by config; a
        model that cannot be captured trains eagerly (``capture_error`` says why)."""
        if not self.gpu.get("cuda_graphs") or example.dim() != 4:
            return 0.0
        t0 = time.perf_counter()
        try:
            # make_graphed_callables needs autocast's weight cache off; the casts are
            # recorded in the graph, so replays need no autocast context
            with autocast(self.device, self.gpu["amp"], cache=False):
                torch.cuda.make_graphed_callables(self.model, (example,), allow_unused_input=True)
            self.graphed = True
        except Exception as e:  # an uncapturable op: eager is correct, only slower
            self.capture_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        xb, yb = to_device(xb, self.device, self.gpu["channels_last"]), yb.to(self.device)
        if self.augment:
            xb = augment_batch(xb)
        with autocast(self.device, self.gpu["amp"]):
            out = self.model(xb)
        if self.regression:
            out = out.float().reshape(yb.shape)
            loss = regression_loss(out, yb, self.loss_name)
            self.sse += (out.detach() - yb).pow(2).sum()
        elif self.loss_hook is None:
            loss = F.cross_entropy(out.float(), yb, label_smoothing=self.label_smoothing)
            self.correct += (out.argmax(1) == yb).sum()
        else:
            loss = self.loss_hook(self.model, out.float(), yb, self.hook_config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_norms is not None:
            self.grad_norms.after_backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        # accumulated on the device: one host sync per epoch, not per batch
        self.loss_sum += loss.detach() * len(yb)
        self.samples += len(yb)

    def running(self) -> tuple[float, int, int]:
        """(loss sum, correct predictions, samples) of the epoch so far: one host sync."""
        loss_sum, correct = torch.stack([self.loss_sum,
                                         self.correct.to(self.loss_sum.dtype)]).tolist()
        return loss_sum, int(correct), self.samples

    def totals(self) -> dict:
        """The epoch's mean loss, correct count and squared error (one host sync)."""
        values = torch.stack([self.loss_sum, self.correct.to(self.loss_sum.dtype), self.sse]).tolist()
        n = max(1, self.samples)
        return {"loss": values[0] / n, "correct": int(values[1]), "sse": values[2],
                "samples": self.samples}


def batch_plan(n: int, batch_size: int) -> tuple[int, int]:
    """(batch size, steps) of an epoch over n samples: every step has the same
    shape, so the ragged last batch is dropped (a different sample each epoch,
    since the order is reshuffled); a split smaller than a batch is one step."""
    size = max(1, min(batch_size, n))
    return size, n // size
