"""What ends a search before its trials do: a stop signal, its time budget, a full
disk, or a cluster that cannot run a single trial.

:class:`GracefulStop` gives SIGTERM and SIGHUP (``kill``, ``timeout``, ``scancel``, a
service manager, a closing terminal, a Ray job being stopped) the meaning Ctrl-C
already has in Ray Tune: stop scheduling, save the experiment state once more, stop
the trials, return. Ray's driver turns SIGTERM into ``sys.exit`` and Tune only
catches SIGINT, so without it a SIGTERM skipped all of that and the trials' runs
ended FAILED as if they had crashed. A second signal stops at once. The search's
own reasons to stop (:class:`TimeBudget`, a full disk) take the same path through
:meth:`GracefulStop.request`, so Tune saves its state and ``hpsearch resume``
continues such a search where it stopped.

:class:`ResourceWatch` ends a search whose trials ask for resources no node of
the cluster has (GPUs on a CPU-only cluster) after a bounded wait, instead of
Tune's warning once a minute forever. The wait is long by default because an
autoscaling cluster adds the missing node within minutes.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable

from ray import tune

RESOURCE_WAIT_ENV = "HPSEARCH_RESOURCE_WAIT"
DEFAULT_RESOURCE_WAIT = 300.0  # s: a cloud GPU node boots and runs its setup in minutes
# `timeout` and systemd send their signal to the driver, then to its group or cgroup
# (which holds the driver too): a repeat this soon is that one signal, not a second one
REPEAT_WINDOW = 0.5  # s
# Tune's own lines about a stop; ours say what stopped the search and how to resume it
TUNE_STOP_LINES = ("Stop signal received", "Experiment has been interrupted")


class _QuietTuneStop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TUNE_STOP_LINES)


class GracefulStop:
    """Within ``with``: the first SIGINT, SIGTERM or SIGHUP calls ``on_stop(signum, None)``
    and asks Tune to stop (``signum`` is then set); a second raises KeyboardInterrupt
    (the same signal within ``REPEAT_WINDOW`` counts as the first).
    :meth:`request` stops the search the same way for a reason of its own."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    current: GracefulStop | None = None  # the stop of the search this process runs

    def __init__(self, on_stop: Callable[[int | None, tuple | None], None]) -> None:
        self.on_stop = on_stop
        self.signum: int | None = None
        self.requested: tuple[str, str] | None = None  # (trial status, stop_reason)
        self.fallback = False  # no Tune handler to call: stop_all() ends the search instead
        self.lost: str | None = None  # what of Ray died (see wake)
        self._since = 0.0  # time.monotonic() of the first signal
        self._saved: dict = {}
        self._filter = _QuietTuneStop()

    def __enter__(self) -> GracefulStop:
        GracefulStop.current = self
        logging.getLogger("ray.tune.tune").addFilter(self._filter)
        if threading.current_thread() is not threading.main_thread():
            return self  # signals go to the main thread only; leave them as they are
        self._saved = {s: signal.getsignal(s) for s in self.SIGNALS}
        # Tune's handler for SIGUSR1 from an earlier search in this process may still be
        # installed: only one that appears after this point belongs to this search
        self._stale_tune_handler = signal.getsignal(signal.SIGUSR1)
        # Tune's SIGINT handler would replace ours; SIGINT is routed to Tune below
        self._saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for s in self.SIGNALS:
            signal.signal(s, self._handle)
        return self

    def _tune_handler(self):
        """Tune's graceful-stop handler (it always installs one for SIGUSR1, the one it
        uses for Ctrl-C) when Tune's loop of this search runs, else None."""
        if not self._saved:
            return None
        handler = signal.getsignal(signal.SIGUSR1)
        return handler if callable(handler) and handler is not self._stale_tune_handler else None

    def _handle(self, signum, frame) -> None:
        if self.lost is not None:  # not a signal: the watchdog woke this thread (wake)
            raise RayGone(self.lost)
        if self.signum is not None:
            if signum == self.signum and time.monotonic() - self._since < REPEAT_WINDOW:
                return  # the same signal again at once: one sender reaching us twice
            raise KeyboardInterrupt
        self.signum, self._since = signum, time.monotonic()
        self.on_stop(signum, None)
        tune_stop = self._tune_handler()
        if tune_stop is not None:  # calling it is asking Tune to stop the way Ctrl-C does
            tune_stop(signal.SIGUSR1, frame)
        else:  # Tune's loop has not started yet: nothing to stop gracefully
            raise KeyboardInterrupt

    def request(self, status: str, reason: str) -> None:
        """Stop the search as a signal does, not for a signal: the trials still running
        end with ``status`` and ``reason`` (e.g. KILLED, ``time_budget``). Called from
        Tune's loop; the first request wins, and a signal before it wins."""
        if self.signum is not None or self.requested is not None:
            return
        self.requested = (status, reason)
        self.on_stop(None, self.requested)
        tune_stop = self._tune_handler()
        if tune_stop is not None:
            tune_stop(signal.SIGUSR1, None)
        else:  # Tune's loop runs outside the main thread: end it through stop_all()
            self.fallback = True

    def wake(self, lost: str) -> None:
        """From another thread: Ray died (``lost`` says what). Raise :class:`RayGone` in
        the main thread, which runs Tune's loop, at its next Python instruction (a
        thread blocked inside Ray's core does not get there)."""
        self.lost = lost
        if self._saved:
            import _thread

            _thread.interrupt_main()  # runs _handle in the main thread
        else:
            self.fallback = True

    def __exit__(self, *exc) -> None:
        if GracefulStop.current is self:
            GracefulStop.current = None
        logging.getLogger("ray.tune.tune").removeFilter(self._filter)
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        if self._saved:
            if self._saved_env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._saved_env


class RayGone(BaseException):
    """Raised in the main thread when Ray died under the search (not an ``Exception``:
    Tune's loop would run its clean-up, which needs Ray, on the way out)."""


def request_stop(status: str, reason: str) -> None:
    """Ask the search running in this process to stop (see :meth:`GracefulStop.request`)."""
    if GracefulStop.current is not None:
        GracefulStop.current.request(status, reason)


class StopRequests(tune.Stopper):
    """Ends Tune's loop for a request when Tune's own stop handler is not there to call
    (its loop runs outside the main thread). Trials then end without Tune saving them
    as running: a resume does not continue them."""

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return GracefulStop.current is not None and GracefulStop.current.fallback


class DiskWatch(tune.Callback):
    """A write to a full disk failed: a trial's checkpoint (its result says so) or one of
    the tracker's MLflow writes (``tracker.disk_full``). The search stops at once, the
    trials still running end FAILED ``error: disk full (<storage root>)``: each would
    only find out at its next checkpoint."""

    def __init__(self, tracker, root: str) -> None:
        self.tracker, self.root = tracker, root

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("disk_full"):
            self._full()

    def on_step_begin(self, iteration, trials, **info) -> None:
        if getattr(self.tracker, "disk_full", None):
            self._full()

    def _full(self) -> None:
        request_stop("FAILED", f"error: disk full ({self.root})")


class TimeBudget(tune.Callback):
    """The search's time budget (``search.time_budget``): once ``seconds`` have passed
    since Tune's loop started, no trial starts and the running ones end KILLED with
    stop_reason ``time_budget``; the search then ends as if its trials had finished.
    Each `run` and each `resume` of the search gets the whole budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._deadline: float | None = None  # time.monotonic() when the budget runs out

    def __getstate__(self):  # pickled into Tune's experiment state: no clock readings
        return {**self.__dict__, "_deadline": None}

    def setup(self, **info) -> None:
        self._deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        """Seconds of the budget left (all of it before the loop starts)."""
        if self._deadline is None:
            return self.seconds
        return max(0.0, self._deadline - time.monotonic())

    def on_step_begin(self, iteration, trials, **info) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            request_stop("KILLED", "time_budget")


def resource_wait(flag: float | None) -> float:
    """--resource-wait, else $HPSEARCH_RESOURCE_WAIT, else 300 s."""
    where, text = ("--resource-wait", flag) if flag is not None else (
        f"${RESOURCE_WAIT_ENV}", os.environ.get(RESOURCE_WAIT_ENV, DEFAULT_RESOURCE_WAIT))
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        raise ValueError(f"{where}: seconds >= 0 expected, got {text!r}")
    return seconds


class ResourceWatch(tune.Callback, tune.Stopper):
    """Tune callback and stopper: when no trial is running, one is waiting, and no alive
    node has the resources one trial asks for, for ``wait`` seconds, stop the search
    and keep the reason in ``missing`` (one line, naming the flag that changes it)."""

    live: list = []  # instances of this process, a restored one included: the engine reads them

    def __init__(self, wait: float, check_every: float = 2.0) -> None:
        self.wait = wait
        self.check_every = check_every
        self.missing: str | None = None
        self._since: float | None = None  # time.monotonic() since no node could hold a trial
        self._next_check = 0.0
        ResourceWatch.live.append(self)

    def __getstate__(self):  # pickled into Tune's experiment state: no clock readings
        return {**self.__dict__, "_since": None, "_next_check": 0.0}

    def __setstate__(self, state):  # restored by `hpsearch resume`
        self.__dict__.update(state, missing=None)
        ResourceWatch.live.append(self)

    # ------------------------------------------------------------ Stopper

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.missing is not None

    # ------------------------------------------------------------ Callback

    def on_step_begin(self, iteration, trials, **info) -> None:
        from ray.tune.experiment import Trial

        now = time.monotonic()
        if self.missing is not None or now < self._next_check:
            return
        self._next_check = now + self.check_every
        waiting = [t for t in trials if t.status == Trial.PENDING]
        if not waiting or any(t.status == Trial.RUNNING for t in trials):
            self._since = None
            return
        need = {k: v for k, v in waiting[0].placement_group_factory.required_resources.items()
                if v > 0}
        nodes = _alive_node_resources()
        if any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
            self._since = None  # a node can hold it: it waits for a free slot, not forever
            return
        if self._since is None:
            self._since = now
        if now - self._since >= self.wait:
            self.missing = unsatisfiable(need, nodes, self.wait)


def _alive_node_resources() -> list[dict]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def unsatisfiable(need: dict, nodes: list[dict], waited: float) -> str:
    """One line: what a trial asks for, what the best node has, and the flags."""
    def amount(res: dict, key: str) -> str:
        v = res.get(key, 0)
        return f"{v:g} {key}" if key != "memory" else f"{v / 1024**3:.1f} GiB memory"

    keys = [k for k in ("CPU", "GPU", "memory") if k in need] + sorted(
        k for k in need if k not in ("CPU", "GPU", "memory"))
    short = [k for k in keys if not any(n.get(k, 0) >= need[k] for n in nodes)]
    best = {k: max((n.get(k, 0) for n in nodes), default=0) for k in keys}
    fixes = []
    if "GPU" in short:
        fixes.append("--gpus-per-trial 0 trains on CPU")
    if "CPU" in short:
        fixes.append(f"--cpus-per-trial {max(1, math.floor(best['CPU']))} fits the largest node")
    fixes.append("--resource-wait SECONDS (or $HPSEARCH_RESOURCE_WAIT) waits longer for "
                 "nodes an autoscaler adds")
    return (f"no node of the cluster can run a trial: each asks for "
            f"{', '.join(amount(need, k) for k in keys)}, the most any node has is "
            f"{', '.join(amount(best, k) for k in keys)} "
            f"(missing: {', '.join(short) or 'no single node has all of it'}); "
            f"none joined within {waited:g} s, so the search stopped. {'; '.join(fixes)}")
