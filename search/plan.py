"""``hpsearch plan``: measure a spec's largest trial on the target device before a search.

The largest configuration of the space (largest batch, widest model, the
optimizer with the most state; string options that change the model are
tried one by one and the hungriest kept) is built and trained for a few real
steps through the shared loop's own ``Trial`` (CUDA graphs and all), in a
child process so the driver never holds a CUDA context. From that come the
peak GPU memory of one trial, its step time at every batch size the space
offers, how busy one trial keeps the GPU, and so how many trials fit on one
GPU and how many help; with ASHA's expected epochs per trial, an estimate of
the search's wall time. ``hpsearch run`` uses the same measurement of the
largest trial to refuse, before anything starts, a spec whose largest trial
does not fit its GPU fraction, and its checkpoint size (model and optimizer
state) to refuse a search whose checkpoints the storage root has no room for.

Without a CUDA GPU the measurement is bounded (``CPU_BUDGET`` seconds): a
ResNet-18 step at batch 512 takes seconds on a CPU, and the full measurement
(every model variant, ten steps per batch size) took over five minutes. On the
CPU each variant gets one step, each batch size the steps that fit its share of
the budget (at least one), and a batch size the budget did not reach is
estimated from the measured time per sample; the plan says so.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from hpsearch.errors import SpecError
from hpsearch.search.spec import Param, SearchSpec

GIB = 2**30
# loop options that change neither the model nor its memory: never worth a probe
NO_MEMORY_EFFECT = {"init", "lr_scheduler", "loss", "nesterov"}
OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "rmsprop": 2, "sgd": 1}  # state tensors per parameter
CONTEXT_GUESS = 0.5 * GIB  # a CUDA context's own memory where NVML cannot tell
USABLE = 0.95  # of a GPU's memory: the rest is fragmentation and the driver's margin
CPU_BUDGET = 20.0  # s of measuring on a CPU, after the probe's imports and data loading
CHECKPOINTS_KEPT = 2  # per trial: Tune keeps its best one (num_to_keep=1) and its latest


class PlanError(RuntimeError):
    """The probe could not build or train the largest trial."""


class DoesNotFit(SpecError):
    """The largest trial needs more GPU memory than the spec's GPU fraction gives."""


# ---------------------------------------------------------------- the largest configuration


def _largest_value(p: Param):
    if p.kind != "choice":
        return p.args[1]
    opts = list(p.args)
    if all(isinstance(o, bool) for o in opts):
        return True in opts  # e.g. augment, batch_norm: the costlier side
    if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in opts):
        return max(opts)
    if p.name == "optimizer":
        return max(opts, key=lambda o: OPTIMIZER_STATE.get(o, 0))
    if p.name == "precision":
        return "fp32" if "fp32" in opts else opts[0]
    return opts[0]


def structural_choices(spec: SearchSpec) -> list[Param]:
    """String choices that may change the model (arch, activation, pooling, ...)."""
    return [p for p in spec.space if p.kind == "choice" and p.name not in NO_MEMORY_EFFECT
            and p.name not in ("optimizer", "precision")
            and any(isinstance(o, str) for o in p.args)]


def largest_config(spec: SearchSpec) -> dict:
    """The spec's base config with every searched parameter at its costliest value
    (conditions ignored: a parameter the model does not read changes nothing)."""
    config = spec.base_config()
    for p in spec.space:
        config[p.name] = _largest_value(p)
        if p.kind == "int":
            config[p.name] = int(config[p.name])
    return config


def batch_sizes(spec: SearchSpec, config: dict) -> list[int]:
    p = next((p for p in spec.space if p.name == "batch_size"), None)
    if p is None:
        return [int(config.get("batch_size", 64))]
    if p.kind == "choice":
        return sorted(int(v) for v in p.args)
    low, high = int(p.args[0]), int(p.args[1])
    return sorted({low, int(round(math.sqrt(low * high))), high})


@dataclass(frozen=True)
class EpochsLeft:
    """Expected epochs a trial still trains after ``reached`` epochs, under the search's
    scheduler: ASHA keeps 1/rf of the trials at each rung (grace, grace*rf, ...), so a
    trial running past rung k has odds rf**-j of training through the j-th rung after
    it. With brackets > 1, bracket s starts at grace*rf**s and takes a trial with Ray's
    odds, e**(its rungs). Without ASHA every trial trains ``max_epochs``. Picklable:
    the progress line keeps one in Tune's experiment state."""
    max_epochs: int
    reduction_factor: float = 1.0
    brackets: tuple[tuple[int, ...], ...] = ((),)  # each bracket's rungs below max_epochs
    weights: tuple[float, ...] = (1.0,)

    @classmethod
    def of(cls, spec: SearchSpec) -> EpochsLeft:
        if spec.scheduler != "asha":
            return cls(int(spec.max_epochs))
        rf, ladders = spec.reduction_factor, []
        for s in range(spec.brackets):
            rungs, r = [], spec.grace_period * rf**s
            while r < spec.max_epochs:
                rungs.append(int(r))
                r *= rf
            ladders.append(tuple(rungs))
        return cls(int(spec.max_epochs), rf, tuple(ladders),
                   tuple(math.e ** len(rungs) for rungs in ladders))

    def __call__(self, reached: int = 0) -> float:
        if reached >= self.max_epochs:
            return 0.0
        total = 0.0
        for rungs, weight in zip(self.brackets, self.weights):
            expected, previous, odds = 0.0, reached, 1.0
            for m in (m for m in rungs if m > reached):
                expected += (m - previous) * odds
                previous, odds = m, odds / self.reduction_factor
            total += weight * (expected + (self.max_epochs - previous) * odds)
        return total / sum(self.weights)


def asha_epochs(spec: SearchSpec) -> float:
    """Expected epochs per trial (see :class:`EpochsLeft`)."""
    return EpochsLeft.of(spec)(0)


# ---------------------------------------------------------------- measuring (child process)


def _process_gpu_bytes() -> int | None:
    """This process's GPU memory as the driver sees it (context included), via NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        import torch

        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory:
                return int(proc.usedGpuMemory)
    except Exception:  # NVML missing or not allowed in this container: estimate instead
        return None
    return None


def measure(config: dict, sizes: list[int], *, steps: int = 10, warmup: int = 3,
            variants: list[dict] | None = None, cpu_budget: float = CPU_BUDGET) -> dict:
    """Build and train the trial ``config`` (and each of ``variants``, partial configs
    layered on it) for a few steps at its batch size; then time every batch size in
    ``sizes`` on the hungriest (none: only its checkpoint's size). Runs in the probe's
    own process; on a CPU within ``cpu_budget`` seconds (see the module's docstring)."""
    import gc
    import time

    import torch

    from hpsearch.trainables import get as get_trainable
    from hpsearch.trainables.loop import Trial, evaluate_split, load_data, seed_everything
    from hpsearch.trainables.step import pick_device

    device = pick_device()
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(max(1, int(config.get("cpus_per_trial", 1))))
        warmup = min(warmup, 1)
    data = load_data(config)
    module = get_trainable(config["trainable"]).load()
    if hasattr(module, "fit"):
        return {"device": "cpu", "fit_only": True}
    deadline = None if cuda else time.monotonic() + cpu_budget

    def share(left: int) -> float | None:
        """Seconds of the CPU budget for this measurement, ``left`` of them still to make."""
        return None if deadline is None else max(0.0, deadline - time.monotonic()) / left

    def run(cfg: dict, n_steps: int, profile: bool = False, seconds: float | None = None
            ) -> dict:
        seed_everything(0)
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trial = Trial(cfg, data, module, device)
        t0 = time.perf_counter()
        capture = trial.capture()
        setup = time.perf_counter() - t0
        trial.model.train()
        batches = [idx for _, idx in zip(range(warmup + n_steps), _cycle(trial))]
        for idx in batches[:warmup]:
            trial.step(trial.x_train[idx], trial.y_train[idx])
        _sync(cuda)

        def timed_steps() -> int:
            t0 = time.perf_counter()
            for i, idx in enumerate(batches[warmup:], 1):
                trial.step(trial.x_train[idx], trial.y_train[idx])
                if seconds is not None and time.perf_counter() - t0 >= seconds:
                    return i  # the CPU budget's share is spent: time what ran
            return n_steps

        rounds = []  # the median of 3 rounds: one round can catch a stray stall
        for _ in range(3 if cuda else 1):
            t0 = time.perf_counter()
            done = timed_steps()
            _sync(cuda)
            rounds.append((time.perf_counter() - t0) / done)
        step_seconds = sorted(rounds)[len(rounds) // 2]
        # the same steps again under the profiler (it slows launches, so not timed)
        kernel_seconds = _kernel_seconds(timed_steps) if profile and cuda else None
        t0 = time.perf_counter()
        val_n = min(len(trial.data.val[0]), 2048 if cuda else 256)
        evaluate_split(cfg, trial.model, trial.data,
                       (trial.data.val[0][:val_n], trial.data.val[1][:val_n]), device=device)
        _sync(cuda)
        eval_seconds_per_sample = (time.perf_counter() - t0) / max(1, val_n)
        out = {"batch_size": trial.batch_size, "step_seconds": step_seconds,
               "setup_seconds": setup, "capture_seconds": capture, "graphed": trial.step.graphed,
               "capture_error": trial.step.capture_error,
               "eval_seconds_per_sample": eval_seconds_per_sample,
               "train_samples": len(trial.x_train), "val_samples": len(trial.data.val[0]),
               "loss": trial.step.totals()["loss"], "steps": done,
               "state_bytes": _state_bytes(trial)}
        if kernel_seconds is not None:
            out["gpu_busy"] = min(1.0, kernel_seconds / (step_seconds * n_steps))
        if cuda:
            out["peak_reserved"] = torch.cuda.max_memory_reserved()
            out["peak_allocated"] = torch.cuda.max_memory_allocated()
            process = _process_gpu_bytes()
            out["context_bytes"] = (max(0, process - torch.cuda.memory_reserved())
                                    if process else None)
        return out

    result: dict = {"device": torch.cuda.get_device_name(device) if cuda else "cpu"}
    if cuda:
        free, total = torch.cuda.mem_get_info(device)
        result.update(total_bytes=total, free_bytes=free)
    candidates = [dict(config)] + [{**config, **v} for v in (variants or [])]
    if not sizes:  # the checkpoint's size only: the first candidate, one step
        candidates = candidates[:1]
    probes = []
    for c in candidates:  # on a CPU: one step each, while the budget lasts
        if not cuda and len(candidates) == 1 and sizes:
            break  # nothing to choose between: the timings below measure it
        probes.append(run(c, max(2, steps // 3) if cuda else 1))
        if deadline is not None and time.monotonic() > deadline - cpu_budget / 2:
            break
    key = "peak_reserved" if cuda else "step_seconds"
    worst = max(range(len(probes)), key=lambda i: probes[i].get(key, 0)) if probes else 0
    result["candidates"], result["probed"] = len(candidates), max(1, len(probes))
    timings: list[dict] = []
    for i, bs in enumerate(sizes):
        seconds = share(len(sizes) - i)
        if seconds is not None and seconds <= 0 and timings:
            timings.append(_scaled(timings, bs))  # the budget is spent: per-sample time
            continue
        timings.append(run({**candidates[worst], "batch_size": bs}, steps, profile=True,
                           seconds=seconds))
    result["timings"] = timings
    largest = probes[worst] if probes else next(
        (t for t in timings if t["batch_size"] == int(config.get("batch_size", 0))), timings[-1])
    result["largest"] = {**largest, "config": _plain(candidates[worst])}
    if deadline is not None:
        result["cpu_budget"] = cpu_budget
    return result


def _state_bytes(trial) -> int:
    """Bytes of what a checkpoint holds: the model's state and the optimizer's."""
    import torch

    def nbytes(obj) -> int:
        if torch.is_tensor(obj):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(nbytes(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(nbytes(v) for v in obj)
        return 0

    return nbytes(trial.model.state_dict()) + nbytes(trial.optimizer.state_dict())


def _scaled(timings: list[dict], batch_size: int) -> dict:
    """A batch size the CPU budget did not reach: the measured time per sample of the
    nearest measured one, times this batch size."""
    near = min(timings, key=lambda t: abs(t["batch_size"] - batch_size))
    per_sample = near["step_seconds"] / near["batch_size"]
    return {**near, "batch_size": batch_size, "step_seconds": per_sample * batch_size,
            "steps": 0, "estimated": True, "gpu_busy": None}


def _cycle(trial):
    while True:
        yield from trial.epoch_batches()


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _kernel_seconds(fn) -> float | None:
    """Seconds of GPU kernels that ``fn`` runs (torch.profiler over CUPTI), or None."""
    try:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        _sync(True)
    total = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type != DeviceType.CPU)
    return total / 1e6 if total > 0 else None


def _plain(config: dict) -> dict:
    return {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool, dict, list))}


def probe(config: dict, sizes: list[int], *, variants: list[dict] | None = None,
          steps: int = 10, timeout: float = 600, cpu_budget: float = CPU_BUDGET) -> dict:
    """``measure`` in a child process (the caller never holds a CUDA context)."""
    with tempfile.TemporaryDirectory(prefix="hpsearch-plan-") as tmp:
        request, answer = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(request, "w") as fh:
            json.dump({"config": config, "sizes": sizes, "variants": variants or [],
                       "steps": steps, "cpu_budget": cpu_budget}, fh)
        proc = subprocess.run([sys.executable, "-m", "hpsearch.search.plan", request, answer],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(answer):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PlanError(f"the probe of the largest trial failed: {tail}")
        with open(answer) as fh:
            return json.load(fh)


# ---------------------------------------------------------------- the plan


@dataclass
class Plan:
    spec: SearchSpec
    result: dict

    @property
    def cuda(self) -> bool:
        return "total_bytes" in self.result and not self.result.get("fit_only")

    @property
    def per_trial_bytes(self) -> int:
        largest = self.result["largest"]
        context = largest.get("context_bytes") or CONTEXT_GUESS
        return int(largest["peak_reserved"] + context)

    @property
    def state_bytes(self) -> int:
        """One checkpoint of the largest trial: its model's and optimizer's state."""
        return int(self.result["largest"].get("state_bytes", 0))

    def checkpoint_bytes(self) -> int:
        """What the search's checkpoints take under the storage root at most: every trial
        keeps ``CHECKPOINTS_KEPT``, each the size of the largest trial's."""
        return self.spec.samples * CHECKPOINTS_KEPT * self.state_bytes

    @property
    def fits_per_gpu(self) -> int:
        return int(USABLE * self.result["total_bytes"] // self.per_trial_bytes)

    def epoch_seconds(self) -> float:
        """Mean epoch time over the space's batch sizes (TPE samples them all)."""
        times = []
        for t in self.result["timings"]:
            steps = t["train_samples"] // t["batch_size"]
            times.append(steps * t["step_seconds"] + t["val_samples"] * t["eval_seconds_per_sample"])
        return sum(times) / len(times)

    def refit_seconds(self) -> float | None:
        """The export's refit (``export: {refit: true}``): its epochs (the spec's, else at
        most ``max_epochs``) on train+val, one model alone, mean over the batch sizes."""
        if not self.spec.refit:
            return None
        epochs = self.spec.refit_epochs or self.spec.max_epochs
        times = [(t["train_samples"] + t["val_samples"]) // t["batch_size"] * t["step_seconds"]
                 for t in self.result["timings"]]
        return epochs * sum(times) / len(times)

    def gpu_busy(self) -> float | None:
        busy = [t["gpu_busy"] for t in self.result["timings"] if t.get("gpu_busy")]
        return sum(busy) / len(busy) if busy else None

    def helpful_per_gpu(self) -> int:
        """Trials packed on one GPU that still add throughput: they time-slice the GPU,
        so past 1 / (the busy fraction of one) they only queue behind each other."""
        busy = self.gpu_busy()
        by_time = max(1, math.ceil(1 / busy)) if busy else 4
        return max(1, min(self.fits_per_gpu, by_time))

    def check_fits(self) -> None:
        if not self.cuda or self.spec.gpus_per_trial <= 0 or self.result.get("fit_only"):
            return
        share = self.spec.gpus_per_trial * USABLE * self.result["total_bytes"]
        need = self.per_trial_bytes
        if need > share:
            largest = self.result["largest"]["config"]
            what = ", ".join(f"{p.name}={largest.get(p.name)!r}" for p in self.spec.space
                             if p.name in largest)
            suggestion = min(1.0, math.ceil(need / (USABLE * self.result["total_bytes"]) * 8) / 8)
            raise DoesNotFit(
                f"{self.spec.source}: `resources.gpus_per_trial`: the largest trial ({what}) needs "
                f"{need / GIB:.1f} GiB of GPU memory (measured), but {self.spec.gpus_per_trial:g} "
                f"of this {self.result['device']} is {share / GIB:.1f} GiB; raise it to "
                f"{suggestion:g} (--gpus-per-trial) or shrink the space (`hpsearch plan` "
                "shows the numbers)")

    def lines(self) -> list[str]:
        s, r = self.spec, self.result
        if r.get("fit_only"):
            return [f"plan for {s.source}: {s.trainable} fits a classical model (no epochs, no "
                    "GPU): nothing to measure"]
        largest = r["largest"]
        where = (r["device"] if self.cuda else
                 f"the CPU (no CUDA GPU here; measured within {r['cpu_budget']:g} s)"
                 if "cpu_budget" in r else r["device"])
        out = [f"plan for {s.source} ({s.trainable}) on {where}"]
        config = largest["config"]  # its parameters whose conditions hold: those it reads
        shown = {p.name: config.get(p.name) for p in s.space
                 if all(config.get(parent) in allowed for parent, allowed in p.when)}
        out.append("largest trial: " + ", ".join(f"{k}={v!r}" for k, v in shown.items())
                   + (f" (the hungriest of {r['candidates']} model variants)"
                      if r["candidates"] > 1 and r.get("probed", r["candidates"]) ==
                      r["candidates"] else
                      f" (the slowest of the first {r['probed']} of {r['candidates']} model "
                      "variants: the CPU budget ran out)" if r["candidates"] > 1 else ""))
        if largest.get("capture_error"):
            out.append(f"  CUDA graphs: not capturable, trains eagerly ({largest['capture_error']})")
        if self.cuda:
            ctx = largest.get("context_bytes")
            ctx_text = (f"{ctx / GIB:.2f} GiB CUDA context (NVML)" if ctx
                        else f"~{CONTEXT_GUESS / GIB:.1f} GiB CUDA context (assumed)")
            out.append(f"  peak GPU memory: {largest['peak_reserved'] / GIB:.2f} GiB reserved "
                       f"({largest['peak_allocated'] / GIB:.2f} allocated) + {ctx_text} = "
                       f"{self.per_trial_bytes / GIB:.2f} GiB per trial")
            out.append(f"  GPU memory {r['total_bytes'] / GIB:.1f} GiB: {self.fits_per_gpu} "
                       f"trials fit per GPU by memory")
        out.append("step time of the largest model, by batch size:")
        for t in r["timings"]:
            busy = f", GPU busy {t['gpu_busy']:.0%}" if t.get("gpu_busy") else ""
            graphs = "CUDA graphs" if t.get("graphed") else "eager"
            how = ("estimated from the time per sample measured above" if t.get("estimated")
                   else f"{t['steps']} timed step(s)" if "cpu_budget" in r
                   else f"setup {t['setup_seconds']:.2f} s")
            out.append(f"  batch {t['batch_size']:>4}: {t['step_seconds'] * 1e3:7.2f} ms "
                       f"({t['batch_size'] / t['step_seconds']:,.0f} samples/s, {graphs}{busy}); "
                       f"{how}")
        if self.state_bytes:
            out.append(f"checkpoints: {self.state_bytes / 2**20:,.1f} MiB each (model and "
                       f"optimizer state), up to {self.checkpoint_bytes() / 2**20:,.0f} MiB "
                       f"for the search ({s.samples} trials x {CHECKPOINTS_KEPT} kept)")
        epoch = self.epoch_seconds()
        per_trial = asha_epochs(s)
        total_epochs = per_trial * s.samples
        out.append(f"epoch: {epoch:.1f} s on {r['timings'][0]['train_samples']:,} training "
                   f"samples (mean over batch sizes, validation included)")
        out.append(f"budget: {s.samples} trials x {per_trial:.1f} expected epochs "
                   f"({s.scheduler.upper()}, max {s.max_epochs}) = {total_epochs:.0f} epochs")
        serial = total_epochs * epoch
        if s.refit:
            out.append(f"refit: {s.refit_epochs or f'at most {s.max_epochs}'} epochs on train+val, "
                       f"one model alone: ~{_duration(self.refit_seconds())} (export.refit)")
        if self.cuda:
            helpful = self.helpful_per_gpu()
            busy = self.gpu_busy()
            packed = serial / min(s.concurrency, helpful)
            out.append(f"packing: one trial keeps the GPU {busy:.0%} busy, so about {helpful} "
                       f"trials per GPU help (fractional GPU {1 / helpful:.2g} per trial); the "
                       f"spec asks for {s.gpus_per_trial:g} per trial, concurrency {s.concurrency}"
                       if busy else f"packing: GPU busy fraction not measurable here; "
                       f"the spec asks for {s.gpus_per_trial:g} per trial")
            out.append(f"estimated wall time on one GPU: {_duration(packed)} with "
                       f"{min(s.concurrency, helpful)} trials at a time ({_duration(serial)} "
                       "one at a time)")
            share = s.gpus_per_trial * USABLE * r["total_bytes"]
            out.append(f"fits: {self.per_trial_bytes / GIB:.1f} GiB needed, "
                       f"{s.gpus_per_trial:g} GPU gives {share / GIB:.1f} GiB: "
                       + ("yes" if self.per_trial_bytes <= share else "NO")
                       if s.gpus_per_trial > 0 else "fits: the spec asks for no GPU")
        else:
            out.append(f"estimated wall time on this CPU: {_duration(serial / s.concurrency)} at "
                       f"concurrency {s.concurrency} (no CUDA device: GPU memory not measured)")
        if s.time_budget:
            wall = serial / (min(s.concurrency, self.helpful_per_gpu()) if self.cuda
                             else s.concurrency)
            out.append(f"time budget: {_duration(s.time_budget)}" + (
                f", about {min(1.0, s.time_budget / wall):.0%} of the estimated search: it "
                "stops the rest (`hpsearch resume` continues it)" if wall > s.time_budget
                else ", more than the estimated search needs"))
        return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def variants(spec: SearchSpec) -> list[dict]:
    """One partial config per other option of each structural string choice."""
    return [{p.name: o} for p in structural_choices(spec) for o in p.args[1:]]


def make_plan(spec: SearchSpec, *, steps: int = 10, full: bool = True) -> Plan:
    """Probe the spec's largest trial (``full``: and time every batch size)."""
    config = largest_config(spec)
    sizes = batch_sizes(spec, config) if full else [int(config.get("batch_size", 64))]
    return Plan(spec, probe(config, sizes, variants=variants(spec), steps=steps))


def checkpoint_plan(spec: SearchSpec) -> Plan:
    """The largest trial built and trained one step, for its checkpoint's size only."""
    return Plan(spec, probe(largest_config(spec), [], steps=1))


def check_before_run(spec: SearchSpec) -> Plan | None:
    """On a machine with a CUDA GPU and a spec that asks for a GPU share: measure the
    largest trial and raise DoesNotFit if it cannot fit its share. Elsewhere: None."""
    if spec.gpus_per_trial <= 0:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    plan = make_plan(spec, steps=3, full=False)
    plan.check_fits()
    return plan


if __name__ == "__main__":  # the probe's child process: python -m search.plan IN.json OUT.json
    with open(sys.argv[1]) as fh:
        req = json.load(fh)
    res = measure(req["config"], req["sizes"], steps=req["steps"], variants=req["variants"],
                  cpu_budget=req.get("cpu_budget", CPU_BUDGET))
    with open(sys.argv[2], "w") as fh:
        json.dump(res, fh)
