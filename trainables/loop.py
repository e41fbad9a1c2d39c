"""The shared epoch loop: one trial from config to per-epoch reports.

``train(config, report)`` builds data and model from the trial config, trains
for ``max_epochs`` and calls ``report(metrics, state)`` once per epoch, where
``state`` is everything needed to resume or export (it carries the full
config, as nanoGPT's checkpoints do). ``state`` holds the live tensors of
``state_dict()``: a ``report`` that keeps it must serialize or copy it before
returning. The loop never sees Ray: the Tune
adapter and the tests pass plain callables as ``report``.

Config keys: the shared loop's parameters are declared, with their domains
and defaults, in ``LOOP`` of ``trainables/params.py`` (``hpsearch trainables
NAME`` prints them); the engine adds ``trainable``, ``data``, ``max_epochs``,
``seed`` and ``cpus_per_trial``. Keys that do not apply to a trial are not
read: ``loss`` outside regression, the image options (``augment``,
``track_grad_norms``) for sequences, ``init`` for a module with ``KEEP_INIT``.

Tasks: classification (cross-entropy; accuracy, precision, recall, F1) and
regression (the data's ``info["task"]``; MSE or Huber on the scaled target,
RMSE / MAE / R^2 in the target's own units beside a naive last-value
forecast). Early stopping and the plateau scheduler follow the *score*:
accuracy for classification, R^2 for regression (higher is better for both).

A trainable module may define optional hooks, each replacing one default:
    KEEP_INIT = True                       keep the module's own (e.g. pretrained) weights
    pretrain(model, data, config, device)  a stage before epoch 1; returns metrics
    training_loss(model, out, y, config)   instead of cross-entropy on logits
    evaluate(model, x, y, *, reference, device, config)   instead of argmax accuracy
    prepare(data, config) -> data          per-trial inputs from the loaded source
                                           (windows of seq_length, token ids of a tokenizer)
    fit(config, data, report)              the whole trial, for models that are not
                                           trained by SGD epochs (Naive Bayes, trees)
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hpsearch.trainables import data as data_sources
from hpsearch.trainables import get as get_trainable
from hpsearch.trainables.health import HealthMonitor, Unhealthy, non_finite
from hpsearch.trainables.health import settings as health_settings
from hpsearch.trainables.step import (  # noqa: F401  (augment_batch, gpu_options: part of this API)
    TrainStep,
    augment_batch,
    autocast,
    batch_plan,
    fused_kwargs,
    gpu_options,
    model_device,
    pick_device,
    regression_loss,
    resident,
    to_device,
)

Report = Callable[[dict, dict], None]


# ---------------------------------------------------------------- building blocks


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_weights(model: nn.Module, scheme: str) -> None:
    """kaiming: He et al. for ReLU nets (fan_out, as torchvision's ResNet);
    xavier: Glorot uniform; default: leave PyTorch's per-layer defaults."""
    if scheme == "default":
        return
    if scheme not in ("kaiming", "xavier"):
        raise ValueError(f"init must be kaiming, xavier or default, got {scheme!r}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    output_layer = linears[-1] if linears else None
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if m is output_layer and scheme == "kaiming":
                # small logits at the start: He init on a 10-way output gives
                # losses of 5-10 in the first steps (torchvision's VGG does the same)
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif scheme == "kaiming":
                mode = "fan_out" if isinstance(m, nn.Conv2d) else "fan_in"
                nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def make_optimizer(config: dict, params, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The config's optimizer; on CUDA the fused kernels where PyTorch has them."""
    name = config.get("optimizer", "sgd")
    lr, wd = float(config.get("lr", 0.01)), float(config.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(config.get("momentum", 0.9)),
                               nesterov=bool(config.get("nesterov", False)), weight_decay=wd,
                               **fused_kwargs(torch.optim.SGD, device))
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, **fused_kwargs(cls, device))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=float(config.get("momentum", 0.0)),
                                   weight_decay=wd)
    raise ValueError(f"optimizer must be sgd, adam, adamw or rmsprop, got {name!r}")


def make_scheduler(config: dict, optimizer, max_epochs: int, steps_per_epoch: int = 1):
    """The config's LR scheduler, stepped once per epoch; ``onecycle`` once per training
    step (:data:`PER_STEP`), over ``max_epochs * steps_per_epoch`` steps."""
    name = config.get("lr_scheduler", "none")
    if name == "none":
        return None
    if name == "onecycle":
        # momentum is not cycled: SGD without momentum (VGG-Deep's plain SGD) must stay so
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=float(config.get("lr", 0.01)),
            total_steps=max(1, max_epochs * steps_per_epoch), cycle_momentum=False)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.1, patience=int(config.get("lr_patience", 2)))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(config.get("step_size", 10)),
                                               gamma=float(config.get("gamma", 0.1)))
    raise ValueError(f"lr_scheduler must be none, plateau, cosine, step or onecycle, got {name!r}")


PER_STEP = (torch.optim.lr_scheduler.OneCycleLR,)  # schedulers stepped after every batch


def eval_batches(x: torch.Tensor, batch_size: int, device: torch.device, channels_last: bool = True):
    """(batch on the device, rows that are real) over x. On CUDA every batch has the
    same shape (the last one zero-padded): a new shape would cost cuDNN a new plan."""
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        real = len(xb)
        if device.type == "cuda" and real < batch_size and len(x) > batch_size:
            xb = torch.cat([xb, xb.new_zeros((batch_size - real, *xb.shape[1:]))])
        yield to_device(xb, device, channels_last), real


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
             device: torch.device | None = None, amp: bool = True,
             channels_last: bool = True) -> dict:
    """Mean loss, accuracy and predictions of a classifier over (x, y)."""
    device = device or model_device(model)
    model.eval()
    y_dev = y.to(device)
    loss_sum = torch.zeros((), device=device)
    preds = []
    for i, (xb, real) in zip(range(0, len(x), batch_size),
                             eval_batches(x, batch_size, device, channels_last)):
        with autocast(device, amp):
            logits = model(xb)[:real]
        loss_sum += F.cross_entropy(logits.float(), y_dev[i:i + real], reduction="sum")
        preds.append(logits.argmax(1))
    pred = torch.cat(preds).cpu()
    return {"loss": loss_sum.item() / max(1, len(x)),
            "accuracy": (pred == y).float().mean().item(), **prf(y, pred), "predictions": pred}


def prf(y: torch.Tensor, pred: torch.Tensor) -> dict:
    """Precision, recall and F1: of class 1 (the positive class) for two classes,
    macro-averaged otherwise; ``f1_macro`` always. From bincounts: no sklearn call."""
    k = int(max(int(y.max()), int(pred.max())) + 1) if len(y) else 1
    k = max(k, 2)
    tp = torch.bincount(y[pred == y], minlength=k).double()
    predicted = torch.bincount(pred, minlength=k).double()
    actual = torch.bincount(y, minlength=k).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0,
                     2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(tp))
    present = actual > 0
    macro = lambda v: float(v[present].mean()) if present.any() else 0.0  # noqa: E731
    if k == 2:
        return {"precision": float(precision[1]), "recall": float(recall[1]), "f1": float(f1[1]),
                "f1_macro": macro(f1)}
    return {"precision": macro(precision), "recall": macro(recall), "f1": macro(f1),
            "f1_macro": macro(f1)}


@torch.inference_mode()
def evaluate_regression(model: nn.Module, x: torch.Tensor, y: torch.Tensor, info: dict, *,
                        loss_name: str = "mse", batch_size: int = 1024,
                        device: torch.device | None = None, amp: bool = True) -> dict:
    """Loss on the scaled target; RMSE, MAE, R^2 in the target's units, and the
    same for the naive forecast (the last input step's target, column 0)."""
    device = device or model_device(model)
    model.eval()
    outs = []
    for xb, real in eval_batches(x, batch_size, device):
        with autocast(device, amp):
            outs.append(model(xb)[:real].float().cpu())
    pred = torch.cat(outs).reshape(y.shape)
    loss = regression_loss(pred, y, loss_name).item()
    scale, offset = info["target_scale"], info["target_offset"]
    truth, fitted = y * scale + offset, pred * scale + offset
    naive = (x[:, -1, 0:1] * scale + offset).expand_as(truth)
    out = {"loss": loss, **_errors(truth, fitted),
           **{f"naive_{k}": v for k, v in _errors(truth, naive).items()},
           "predictions": fitted, "truth": truth, "naive": naive}
    out["skill"] = 1 - out["rmse"] / out["naive_rmse"] if out["naive_rmse"] > 0 else 0.0
    return out


def _errors(truth: torch.Tensor, pred: torch.Tensor) -> dict:
    err = (pred - truth).double()
    sst = ((truth - truth.mean()) ** 2).sum().double()
    return {"rmse": err.pow(2).mean().sqrt().item(), "mae": err.abs().mean().item(),
            "r2": (1 - err.pow(2).sum() / sst).item() if sst > 0 else 0.0}


def build_model(config: dict, data_info: dict) -> nn.Module:
    info = get_trainable(config["trainable"])
    return getattr(info.load(), info.builder)(config, data_info)


def load_data(config: dict):
    """The trial's data: the source (cached per process), then the trainable's
    ``prepare`` hook when it has one (windows, token ids, text features)."""
    data = data_sources.load(config["data"])
    prepare = getattr(get_trainable(config["trainable"]).load(), "prepare", None)
    data = prepare(data, config) if prepare is not None else data
    if (config.get("refit") or {}).get("fit_on") == "train+val":
        data = with_validation_in_training(data)
    return data


def with_validation_in_training(data):
    """A refit's data: the validation split appended to the training split. The inputs
    stay as the chosen trial saw them (normalization statistics, scaler, vocabulary:
    fitted on the training split), so the bundle's preprocessing facts hold for it."""
    import dataclasses

    (x_tr, y_tr), (x_va, y_va) = data.train, data.val
    if hasattr(x_tr, "tocsr"):  # scipy sparse features: a text baseline's n-gram counts
        import scipy.sparse

        x = scipy.sparse.vstack([x_tr, scipy.sparse.csr_matrix(np.asarray(x_va))]).tocsr()
    else:
        x = torch.cat([x_tr, x_va])
    changes = {"train": (x, torch.cat([y_tr, y_va]))}
    for name in ("texts", "times"):  # per-split labels of the rows (raw texts, dates)
        per_split = getattr(data, name, None)
        if isinstance(per_split, dict) and "train" in per_split:
            changes[name] = {**per_split, "train": [*per_split["train"], *per_split["val"]]}
    info = {**data.info, "fit_on": "train+val", "fit_size": len(y_tr) + len(y_va)}
    return dataclasses.replace(data, info=info, **changes)


def evaluate_split(config: dict, model: nn.Module, data, split: tuple, *,
                   device: torch.device | None = None) -> dict:
    """Evaluate on one split with the trainable's own hook when it has one."""
    module = get_trainable(config["trainable"]).load()
    device = device or model_device(model)
    hook = getattr(module, "evaluate", None)
    if hook is not None:
        return hook(model, split[0], split[1], reference=data.train, device=device, config=config)
    gpu = gpu_options(config, device)
    if data.info.get("task") == "regression":
        return evaluate_regression(model, split[0], split[1], data.info, amp=gpu["amp"],
                                   loss_name=config.get("loss", "mse"), device=device)
    return evaluate(model, split[0], split[1], device=device, amp=gpu["amp"],
                    channels_last=gpu["channels_last"])


def model_summary(model: nn.Module, example: torch.Tensor):
    """torchinfo's summary for one example input (any shape and dtype)."""
    import torchinfo

    device = model_device(model)
    return torchinfo.summary(model, input_data=[example[:1].to(device)], verbose=0, device=device)


def model_facts(model: nn.Module, example: torch.Tensor) -> dict:
    """Parameter count and multiply-accumulates per sample (torchinfo), computed once
    per architecture and input shape in a worker (the module's repr names every
    layer's shape, so it is the architecture's key; dropout rates do not count)."""
    key = (re.sub(r"Dropout\(p=[^,)]*", "Dropout(", repr(model)), tuple(example.shape[1:]),
           example.dtype)
    if key not in _FACTS:
        facts = {"num_params": sum(p.numel() for p in model.parameters())}
        try:
            facts["macs_per_sample"] = int(model_summary(model, example).total_mult_adds)
        except Exception:  # an exotic model torchinfo cannot trace: the count still stands
            pass
        if len(_FACTS) >= 32:  # a search meets a few architectures; stay bounded
            _FACTS.clear()
        _FACTS[key] = facts
    return dict(_FACTS[key])


_FACTS: dict = {}


@torch.no_grad()
def inference_ms(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
                 *, amp: bool = True, channels_last: bool = True) -> dict:
    """Measured inference latency per sample on the trial's device, in milliseconds: one
    input at a time (``infer_ms``: serving one request) and a training-size batch
    (``infer_ms_batched``: throughput). Measured once per trial, after its first epoch
    (the kernels warm), so latency can be an objective or a constraint."""
    was_training = model.training
    model.eval()
    cuda = device.type == "cuda"

    def per_sample(inputs: torch.Tensor, repeats: int) -> float:
        inputs = to_device(inputs, device, channels_last)
        with autocast(device, amp):  # as the trial evaluates (bf16 on a GPU)
            model(inputs)  # warm: first-call allocations and autotuning stay out
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                model(inputs)
        if cuda:
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) / repeats / len(inputs) * 1000.0

    try:
        return {"infer_ms": per_sample(x[:1], 10),
                "infer_ms_batched": per_sample(x[:max(1, batch_size)], 3)}
    finally:
        model.train(was_training)


class GradNormTracker:
    """L2 norm of each conv weight's gradient every k iterations, averaged per epoch.

    Norms accumulate on the device (no host sync per sample); ``epoch_metrics``
    syncs once. Layers are numbered in forward order: conv01 is the first."""

    def __init__(self, model: nn.Module, every: int) -> None:
        self.convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        self.every = max(1, every)
        self.reset()

    def reset(self) -> None:
        self.sums, self.count, self.step = None, 0, 0

    def after_backward(self) -> None:
        self.step += 1
        if (self.step - 1) % self.every or not self.convs:
            return
        norms = torch.stack([c.weight.grad.detach().float().norm() if c.weight.grad is not None
                             else torch.zeros((), device=c.weight.device) for c in self.convs])
        self.sums = norms if self.sums is None else self.sums + norms
        self.count += 1

    def current_ratio(self) -> float | None:
        """First over last conv layer's mean gradient norm so far (one host sync)."""
        if self.sums is None:
            return None
        first, last = self.sums[[0, -1]].tolist()
        return first / last if last > 0 else float("inf")

    def epoch_metrics(self) -> dict:
        if self.sums is None:
            return {}
        mean = (self.sums / self.count).tolist()
        out = {f"grad_norm/conv{i + 1:02d}": v for i, v in enumerate(mean)}
        # "layer 1's gradient norm is X times the deepest layer's", as a number
        out["grad_norm_ratio_first_last"] = mean[0] / mean[-1] if mean[-1] > 0 else float("inf")
        self.reset()
        return out


# ---------------------------------------------------------------- the loop


class Trial:
    """A trial's model, optimizer, scheduler and training step, on its device: what
    ``train`` runs epochs of and what ``hpsearch plan`` times a few steps of."""

    def __init__(self, config: dict, data, module, device: torch.device) -> None:
        self.config, self.data, self.module, self.device = config, data, module, device
        model = build_model(config, data.info)
        if not getattr(module, "KEEP_INIT", False):
            init_weights(model, config.get("init", "kaiming"))
        model.to(device)
        self.gpu = gpu = gpu_options(config, device)
        if gpu["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = gpu["cudnn_benchmark"]
        self.model = model
        self.max_epochs = int(config.get("max_epochs", 10))
        x, y = data.train
        self.batch_size, self.steps_per_epoch = batch_plan(len(x), int(config.get("batch_size", 64)))
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config, params, device)
        self.scheduler = make_scheduler(config, self.optimizer, self.max_epochs,
                                        self.steps_per_epoch)
        self.regression = data.info.get("task") == "regression"
        images = data.train[0].dim() == 4  # the image-only options are not read for sequences
        self.grad_norms = (GradNormTracker(model, int(config.get("grad_norm_every", 10)))
                           if images and config.get("track_grad_norms") else None)
        loss_hook = getattr(module, "training_loss", None)
        self.step = TrainStep(
            model, self.optimizer, device=device, gpu=gpu, regression=self.regression,
            loss_name=config.get("loss", "mse") if self.regression else None,
            loss_hook=loss_hook, hook_config=config,
            augment=images and bool(config.get("augment", False)),
            grad_clip=float(config.get("grad_clip", 0) or 0), grad_norms=self.grad_norms,
            # a loss hook (metric learning) applies its own cross-entropy, if any
            label_smoothing=(float(config.get("label_smoothing", 0.0))
                             if not self.regression and loss_hook is None else 0.0))
        if gpu["data_on_device"]:  # the training split lives on the GPU, shared across trials
            x, y = resident(x, y, device)
        self.x_train, self.y_train = x, y

    def capture(self) -> float:
        """CUDA-graph the training step for this trial's batch shape (see TrainStep)."""
        example = to_device(self.x_train[:self.batch_size], self.device, self.gpu["channels_last"])
        return self.step.capture(example)

    def epoch_batches(self):
        """The indices of one epoch's batches (the host RNG, as on CPU: same order anywhere)."""
        order = torch.randperm(len(self.x_train)).to(self.x_train.device)
        for k in range(self.steps_per_epoch):
            yield order[k * self.batch_size:(k + 1) * self.batch_size]


def train(config: dict, report: Report, *, restore: dict | None = None) -> None:
    """Run one trial. ``restore`` is a state previously passed to ``report``.

    A refit (``config["refit"]``, set by ``search/refit.py``) trains on the training
    and validation splits together (:func:`load_data`) for exactly ``max_epochs``: no
    validation split is left to evaluate, so it reports training metrics only, never
    stops early, and replays the chosen trial's learning rates where a plateau
    scheduler followed its validation score (``refit["lr_by_epoch"]``)."""
    started = time.perf_counter()
    device = pick_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(config.get("cpus_per_trial", 1))))
    seed = int(config.get("seed", 0))
    seed_everything(seed)
    data = load_data(config)
    module = get_trainable(config["trainable"]).load()
    refit = config.get("refit") or None
    if refit:
        report = _without_validation(report)
    if hasattr(module, "fit"):  # not an epoch-trained network: the module runs the trial
        module.fit(config, data, report)
        return
    trial = Trial(config, data, module, device)
    model, optimizer, scheduler, step = trial.model, trial.optimizer, trial.scheduler, trial.step
    facts = model_facts(model, data.train[0])
    max_epochs = trial.max_epochs
    patience = 0 if refit else int(config.get("early_stopping_patience", 0) or 0)
    regression, loss_hook, grad_norms = trial.regression, step.loss_hook, trial.grad_norms
    lr_by_epoch = (refit or {}).get("lr_by_epoch")
    if lr_by_epoch:  # the trial's own learning rates replace its plateau scheduler
        scheduler = None
    per_step = isinstance(scheduler, PER_STEP)

    start_epoch, best, bad_epochs = 0, -math.inf, 0
    if restore is not None:
        model.load_state_dict(restore["model"])
        optimizer.load_state_dict(restore["optimizer"])
        if scheduler is not None and restore.get("scheduler") is not None:
            scheduler.load_state_dict(restore["scheduler"])
        start_epoch, best, bad_epochs = restore["epoch"], restore["best"], restore["bad_epochs"]
        torch.set_rng_state(restore["rng"])
    stage_metrics = {}
    if restore is None and hasattr(module, "pretrain"):
        stage_metrics = module.pretrain(model, data, config, device)
    trial.capture()  # after any pretraining stage, before the first epoch
    setup = {"setup_seconds": time.perf_counter() - started, "cuda_graphs": float(step.graphed)}
    x_train, y_train = trial.x_train, trial.y_train
    monitor = HealthMonitor(health_settings(config.get("health", True)),
                            steps_per_epoch=trial.steps_per_epoch,
                            num_classes=data.info.get("num_classes"),
                            counts_correct=not regression and loss_hook is None)

    for epoch in range(start_epoch, max_epochs):
        t0 = time.perf_counter()
        model.train()
        step.reset()
        monitor.new_epoch()
        if lr_by_epoch:
            for group in optimizer.param_groups:
                group["lr"] = float(lr_by_epoch[min(epoch, len(lr_by_epoch) - 1)])
        unhealthy = None
        for k, idx in enumerate(trial.epoch_batches(), 1):
            step(x_train[idx], y_train[idx])
            if per_step:
                scheduler.step()
            if monitor.due(k):
                try:
                    monitor.check(step, epoch=epoch, steps_done=k,
                                  grad_ratio=grad_norms.current_ratio() if grad_norms else None)
                except Unhealthy as e:
                    if e.failed:  # diverged: nothing worth evaluating
                        raise
                    unhealthy = str(e)  # pruned: report where it stands, then stop
                    break
        totals = step.totals()  # the epoch's one host sync
        train_loss, n = totals["loss"], totals["samples"]
        train_seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):  # no health check saw it (off, or a short epoch)
            raise non_finite(train_loss, (epoch + 1) * trial.steps_per_epoch)
        train_fit = _train_fit(totals, trial, data, config, device)
        val = {} if refit else evaluate_split(config, model, data, data.val, device=device)
        seconds = time.perf_counter() - t0
        lr = optimizer.param_groups[0]["lr"]
        # the score the plateau scheduler and early stopping follow: validation, or in
        # a refit (no validation left) the training fit
        score = ((val["r2"] if regression else val["accuracy"]) if val else
                 -train_fit["train_rmse"] if regression else train_fit["train_accuracy"])
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(score)
        elif scheduler is not None and not per_step:
            scheduler.step()
        if epoch == start_epoch and "infer_ms" not in facts:
            gpu = gpu_options(config, device)
            facts.update(inference_ms(model, data.val[0], int(config.get("batch_size", 64)), device,
                                      amp=gpu["amp"], channels_last=gpu["channels_last"]))
        improved = score > best
        best, bad_epochs = (score, 0) if improved else (best, bad_epochs + 1)
        stop_early = patience > 0 and bad_epochs >= patience
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            **train_fit,
            **_validation_metrics(val, regression),
            "epoch_seconds": seconds,
            "samples_per_second": n / train_seconds,  # training throughput, eval excluded
            "lr": lr,
            # lets the driver tell "finished on its own" from "stopped by the scheduler";
            # a health stop counts as stopped by the search (pruned), not finished
            "trial_finished": (epoch + 1 == max_epochs or stop_early) and unhealthy is None,
            **({"unhealthy": unhealthy} if unhealthy else {}),
            "early_stopped": stop_early,
            **facts,
            **(grad_norms.epoch_metrics() if grad_norms is not None else {}),
            **({**stage_metrics, **setup} if epoch == start_epoch else {}),
        }
        state = {
            "epoch": epoch + 1, "best": best, "bad_epochs": bad_epochs,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": torch.get_rng_state(), "config": config, "data_info": data.info,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        }
        report(metrics, state)
        if stop_early or unhealthy:
            return


def _train_fit(totals: dict, trial: Trial, data, config: dict, device) -> dict:
    """How well the epoch fit its training data: accuracy, or RMSE for regression."""
    if trial.regression:  # train RMSE in the target's units (a linear scaler: one factor)
        n = totals["samples"]
        return {"train_rmse": math.sqrt(totals["sse"] / max(1, n * trial.y_train[0].numel()))
                * data.info["target_scale"]}
    if trial.step.loss_hook is None:
        return {"train_accuracy": totals["correct"] / totals["samples"]}
    # no logits to argmax: the module's evaluation on (part of) the train split
    sub = (data.train[0][:1000], data.train[1][:1000])
    return {"train_accuracy": evaluate_split(config, trial.model, data, sub,
                                             device=device)["accuracy"]}


def _validation_metrics(val: dict, regression: bool) -> dict:
    """An epoch's val_* metrics (none in a refit: its validation split is trained on)."""
    if not val:
        return {}
    return {"val_loss": val["loss"], **({} if regression else {"val_accuracy": val["accuracy"]}),
            **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))
               and k not in ("loss", "accuracy")}}


def _without_validation(report: Report) -> Report:
    """A refit's report: a module that evaluates the validation split itself (a fitted
    text baseline, an autoencoder's first stage) scored data it trained on; drop it."""
    def seen(key: str) -> bool:
        return key.startswith("val_") or "_val_" in key

    def wrapped(metrics: dict, state: dict) -> None:
        kept = {k: v for k, v in metrics.items() if not seen(k)}
        report(kept, {**state, "metrics": {k: v for k, v in state["metrics"].items()
                                           if not seen(k)}})

    return wrapped
