"""One live progress line for a whole search.

``hpsearch run`` shows where a search stands in one line: trials finished of
the total (and how many are running), training epochs used of the search's
expected budget, the best
objective so far, an estimate of the time left and, on a machine with an
NVIDIA GPU, its utilization::

    search 'resnet18': 12/40 trials done, 4 running | 96/520 epochs (18%) |
    best val_accuracy 0.9123 | ~3m10s left | GPU 87%

On a terminal the line is redrawn in place (at most twice a second) and the
lines the search prints (a trial that ended, warnings) scroll above it; when
the output is a file or a pipe (a Ray Job's log, CI) the same line is printed
as a plain line every ``every`` seconds and once at the end. The per-epoch
lines of every trial are there with ``hpsearch run -v``.

The budget is live: the epochs trained so far, plus what the trials not yet
started and those running are still expected to train (``expected_epochs``: a
function of the epochs a trial has reached, ``search.plan.EpochsLeft`` under ASHA).
Asynchronous promotion lets early trials train past ASHA's average, so a fixed
"samples x expected epochs" budget was overrun ("46/40 epochs") and lost its
time estimate; the live one tracks what the search actually does.

The time left is the epochs still expected divided by the rate at which the
search has trained epochs so far; before the first epoch ends it comes from
``hpsearch plan``'s measured epoch time when the run measured one (a local
GPU), and is not shown otherwise. A search with a time budget counts it down
(``budget 12m03s left``), and shows the estimate only while it ends first.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ray import tune

from hpsearch.results.objective import Objective

CLEAR = "\r\033[K"  # carriage return, erase to the end of the line


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _flat(epochs: float, reached: int) -> float:
    return max(0.0, epochs - reached)


class GpuMeter:
    """Mean utilization of this machine's NVIDIA GPUs through NVML, or None where
    there is none (NVML missing, no driver, no device)."""

    def __init__(self) -> None:
        self.nvml, self.handles = None, []
        try:
            try:
                import pynvml
            except ImportError:  # Ray ships a copy for its dashboard
                from ray._private.thirdparty import pynvml
            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
            self.nvml = pynvml
        except Exception:  # no NVIDIA driver here: say nothing about a GPU
            self.nvml, self.handles = None, []

    def read(self) -> float | None:
        if not self.handles:
            return None
        try:
            rates = [self.nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self.handles]
        except Exception:
            return None
        return sum(rates) / len(rates)


class SilentReporter(tune.ProgressReporter):
    """Tune's own progress reporter, told never to report: the search's progress is
    :class:`SearchProgress`. (In a notebook Tune would otherwise pick its Jupyter
    reporter, which clears the cell's output, the search's progress display with it,
    to redraw its table.)"""

    def should_report(self, trials, done: bool = False) -> bool:
        return False

    def report(self, trials, done: bool, *sys_info) -> None:
        pass


class SearchProgress(tune.Callback):
    """Tune callback that keeps the counts and draws the line (driver side only)."""

    def __init__(self, *, name: str, samples: int,
                 expected_epochs: float | Callable[[int], float], metric: str,
                 mode: str, stream: TextIO | None = None, tty: bool | None = None,
                 every: float = 30.0, epoch_seconds_hint: float | None = None,
                 concurrency: int = 1, prefix: str = "", gpu: bool = True,
                 time_budget=None) -> None:
        self.name, self.samples, self.metric, self.mode = name, samples, metric, mode
        if not callable(expected_epochs):  # a flat count: each trial trains that many
            expected_epochs = functools.partial(_flat, float(expected_epochs))
        self.expected_left = expected_epochs
        self.reached: dict[str, int] = {}  # epochs each running trial has trained
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every, self.prefix = every, prefix
        self.hint, self.concurrency = epoch_seconds_hint, max(1, concurrency)
        self.gpu = GpuMeter() if gpu else None
        self.time_budget = time_budget  # search.stopping.TimeBudget (its remaining()), or None
        self.epochs, self.done, self.best = 0, 0, None
        self.running: set[str] = set()
        self.t0 = time.monotonic()
        self._drawn = False          # a progress line is on the terminal's last line
        self._last = -math.inf       # when the line was last drawn / printed
        self._ended = False

    # Tune pickles callbacks into its experiment state: the stream and NVML stay here.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(stream=None, gpu=None, _drawn=False)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.stream, self.tty, self.gpu = sys.stdout, False, None
        self.t0, self._last = time.monotonic(), -math.inf
        self._ended = False  # a save taken after the end still shows the resumed search
        self._restored = True  # a resumed search: counts come from Tune's trials once

    def _resync(self, trials) -> bool:
        """After a resume the pickled counts are those of an older save: take them once
        from the restored trials themselves (status, last result, best value)."""
        if not getattr(self, "_restored", False) or not trials:
            return False
        self._restored = False
        self.done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        self.running = {t.trial_id for t in trials if t.status in ("RUNNING", "PENDING")}
        self.reached = {t.trial_id: int((t.last_result or {}).get("training_iteration", 0) or 0)
                        for t in trials if t.trial_id in self.running}
        self.epochs = sum(int((t.last_result or {}).get("training_iteration", 0) or 0)
                          for t in trials)
        best = Objective(self.metric, self.mode).best(
            (t.metric_analysis or {}).get(self.metric, {}).get(self.mode) for t in trials)
        if best is not None:
            self.best = float(best)
        return True

    # ------------------------------------------------------------ counting

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._resync(trials)
        self.running.add(trial.trial_id)
        self.tick()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._resync(trials):  # the trials' last results include this one
            self.tick()
            return
        if isinstance(result.get("error"), str) or result.get("diverged"):
            return
        self.epochs += 1
        self.running.add(trial.trial_id)  # (Tune starts a trial before its results)
        self.reached[trial.trial_id] = int(result.get("training_iteration")
                                           or self.reached.get(trial.trial_id, 0) + 1)
        value = result.get(self.metric)
        if Objective(self.metric, self.mode).better(value, self.best):
            self.best = float(value)
        self.tick()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._resync(trials)
        self._ended_one(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._resync(trials)
        self._ended_one(trial.trial_id)

    def _ended_one(self, tid: str) -> None:
        self.reached.pop(tid, None)
        if tid in self.running:
            self.running.discard(tid)
            self.done += 1
        self.tick()

    def on_step_end(self, iteration, trials, **info) -> None:  # Tune's loop: keep it fresh
        self._resync(trials)
        self.tick()

    def on_experiment_end(self, trials, **info) -> None:
        self._resync(trials)
        self.finish()

    # ------------------------------------------------------------ drawing

    @property
    def budget(self) -> int:
        """Epochs trained + those the unstarted and the running trials are expected to train."""
        unstarted = max(0, self.samples - self.done - len(self.running))
        left = unstarted * self.expected_left(0) + sum(
            self.expected_left(self.reached.get(t, 0)) for t in self.running)
        return round(self.epochs + left)  # 0 when every trial ended without an epoch

    def seconds_left(self) -> float | None:
        if self.done >= self.samples:
            return 0.0
        left = self.budget - self.epochs
        if left <= 0:  # all trials ended or at their last epoch: nothing left to estimate
            return None
        elapsed = time.monotonic() - self.t0
        if self.epochs:
            return left * elapsed / self.epochs
        if self.hint:
            return left * self.hint / self.concurrency
        return None

    def line(self) -> str:
        parts = [f"{self.prefix}search {self.name!r}: {self.done}/{self.samples} trials done"
                 + (f", {len(self.running)} running" if self.running else ""),
                 f"{self.epochs}/{self.budget} epochs"
                 + (f" ({min(100, round(100 * self.epochs / self.budget))}%)" if self.budget
                    else "")]
        parts.append(f"best {self.metric} "
                     + (f"{self.best:.4g}" if self.best is not None else "-"))
        left = self.seconds_left()
        budget = getattr(self, "time_budget", None)
        budget_left = budget.remaining() if budget is not None else None
        if left is not None and not self._ended and (budget_left is None or left < budget_left):
            parts.append(f"~{duration(left)} left")
        if budget_left is not None:
            parts.append("time budget spent" if budget_left <= 0 else
                         f"budget {duration(budget_left)} left" if not self._ended else
                         f"time budget {duration(budget.seconds)}")
        util = self.gpu.read() if self.gpu else None
        if util is not None:
            parts.append(f"GPU {util:.0f}%")
        parts.append(f"{duration(time.monotonic() - self.t0)} so far")
        return " | ".join(parts)

    def tick(self, force: bool = False) -> None:
        if self.stream is None or self._ended:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.5 if self.tty else self.every):
            return
        self._last = now
        if self.tty:
            self.stream.write(CLEAR + self.line())
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def above(self, echo):
        """``echo`` (which prints a line of the search's own output to the same stream)
        wrapped so that its lines scroll above the progress line."""
        def log(text: str) -> None:
            if self._drawn:
                self.stream.write(CLEAR)
                self.stream.flush()
                self._drawn = False
            echo(text)
            if self.tty and not self._ended:
                self.tick(force=True)
        return log

    def finish(self) -> None:
        """The last state, once, as a finished line."""
        if self._ended or self.stream is None:
            return
        self._ended = True
        text = self.line()
        self.stream.write((CLEAR if self._drawn else "") + text + "\n")
        self.stream.flush()
        self._drawn = False


def in_notebook() -> bool:
    """Running inside a Jupyter kernel (not a plain IPython terminal)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookProgress(SearchProgress):
    """The same counts in a Jupyter notebook: two outputs updated in place, the
    search's own lines (trials that ended, warnings) in one and the progress line
    below them in the other, instead of a terminal's carriage returns (which a
    notebook shows as one new line per redraw)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**{**kwargs, "tty": True})
        self._lines: list[str] = []
        self._log = self._bar = None

    def __getstate__(self):
        return {**super().__getstate__(), "_log": None, "_bar": None}

    def _handles(self):
        if self._bar is None:
            from IPython.display import Pretty, display

            self._log = display(Pretty(""), display_id=True)
            self._bar = display(Pretty(""), display_id=True)
        return self._log, self._bar

    def tick(self, force: bool = False) -> None:
        if self._ended:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        from IPython.display import Pretty

        self._handles()[1].update(Pretty(self.line()))

    def above(self, echo):
        def log(text: str) -> None:
            from IPython.display import Pretty

            self._lines += str(text).strip("\n").splitlines() or [""]
            self._handles()[0].update(Pretty("\n".join(self._lines)))
        return log

    def finish(self) -> None:
        if self._ended:
            return
        from IPython.display import Pretty

        self._ended = True
        self._handles()[1].update(Pretty(self.line()))


def progress_view(**kwargs) -> SearchProgress:
    """The live view for where this runs: a notebook's, else a terminal's or a log's."""
    return NotebookProgress(**kwargs) if in_notebook() else SearchProgress(**kwargs)
