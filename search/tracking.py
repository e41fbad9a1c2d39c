"""MLflow tracking: one parent run per search, one child run per trial.

Logging must not stall Tune's scheduler. Ray's stock ``MLflowLoggerCallback``
writes synchronously from the driver's event loop (50-90 ms per result on
SQLite); :class:`MlflowTracker` only puts events on a queue there (micro-
seconds) and a single background thread writes them, merging the results of
one trial into one ``log_batch`` call. Only the contract's metrics are logged.

Runs are ended from the driver side: Tune ends an ASHA-stopped trial from
inside its report call, so code after a trial's loop never runs. ``close``
and :func:`end_orphans` make sure no run is left RUNNING after a search ends,
fails or is interrupted (a stop signal: the in-flight trials' runs end KILLED with
stop_reason ``interrupted``; the time budget: KILLED, ``time_budget``; see
:meth:`MlflowTracker.stopping`). When Ray itself is gone, :meth:`MlflowTracker.abandon`
ends the runs from outside Tune's loop: nothing here needs Ray.

The writer survives a tracking store that stops answering (a restarted
``mlflow server``): writes stay queued in order and are retried with backoff
(:mod:`results.outbox`); what a silent store never took by the end of the
search is saved in the search's folder for ``hpsearch status NAME --sync``.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable

from ray import tune

from hpsearch.results.mlflow_runs import (  # noqa: F401  (re-exported: the engine uses them from here)
    PARENT_TAG,
    _client,
    child_runs,
    end_orphans,
    ensure_experiment,
    start_parent,
)
from hpsearch.results.objective import Objective, finite

CONTRACT_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_rmse",
                    "val_mae", "val_r2", "epoch_seconds", "samples_per_second", "lr",
                    "val_top5_accuracy", "num_params", "macs_per_sample", "infer_ms",
                    "infer_ms_batched", "grad_norm_ratio_first_last")
# per-layer gradient norms (grad_norm/conv01 ...), pretraining stages (ae_*), text facts
# (text_vocab_size ...) and every train_/val_ metric (val_f1, val_naive_rmse ...)
LOGGED_PREFIXES = ("grad_norm/", "ae_", "text_", "train_", "val_")


def logged_metrics(result: dict) -> dict:
    """The numeric metrics of a Tune result that go to MLflow; nothing of Tune's own."""
    return {k: float(v) for k, v in result.items()
            if (k in CONTRACT_METRICS or k.startswith(LOGGED_PREFIXES))
            and isinstance(v, (int, float)) and not isinstance(v, bool)}
_STOP = object()
GRACE_ENV = "HPSEARCH_TRACKING_GRACE"  # seconds the end of a search waits for a silent store
DEFAULT_GRACE = 60.0


class MlflowTracker(tune.Callback):
    """Tune callback: trial events -> queue -> one background MLflow writer."""

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 param_names: list[str], metric: str, mode: str, max_epochs: int,
                 samples: int, echo: Callable[[str], None] | None = print,
                 outbox: str | None = None, verbose: bool = True,
                 objectives: tuple = ()) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.param_names = list(param_names)
        self.metric, self.mode = metric, mode
        self.max_epochs, self.samples = max_epochs, samples
        self.echo = echo
        self.verbose = verbose  # a line per epoch of every trial (else only trial ends)
        self.outbox = outbox  # file for the writes a silent store never took (None: drop them)
        # the other objectives of a search of several (logged as best_<metric> at the
        # epoch where the first objective was best: the exported checkpoint's point)
        self.others = [m for m, _ in objectives][1:]
        self._best: dict[str, float] = {}
        self._also: dict[str, dict] = {}
        self._epochs: dict[str, int] = {}
        self._finished: dict[str, bool] = {}
        self._index: dict[str, int] = {}
        self._errors: dict[str, str] = {}  # trials that ended themselves with an error
        self._unhealthy: dict[str, tuple[str, bool]] = {}  # health stops: (why, failed)
        self._nodes: dict[str, str] = {}   # trial -> the Ray node it last reported from
        self._open: set[str] = set()       # trials started and not yet ended
        self._stopping: tuple[str, str] | None = None  # (status, reason) of a search stop
        self._abandoned = False            # Ray is gone: later Tune events change nothing
        self.disk_full: str | None = None  # a write to a full disk failed (the writer saw it)
        self.reserve = None  # results.storage.Reserve: room given back when the disk is full
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._hurry = threading.Event()
        self.write_errors = 0
        self.undelivered = self.undelivered_results = 0  # writes (results) close() left behind

    live: list = []  # instances alive in this process (a restored one included)
    verbose = True   # (a tracker pickled before the attribute existed)

    # Tune pickles callbacks into its experiment state: leave the thread behind.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_queue=None, _thread=None, _hurry=None, echo=None)
        return state

    others: list = []  # (a tracker pickled before several objectives existed)

    def __setstate__(self, state):  # restored by `hpsearch resume`: print progress again
        self.__dict__.update(state)
        self.__dict__.setdefault("_also", {})
        self.echo = print
        self._stopping = None  # a stop before the resume is not this run's stop
        self._abandoned, self.disk_full = False, None
        # trials the dead driver numbered after Tune's last save (lost) keep their numbers
        self._index_floor = MlflowTracker.restored_index_floor
        self._hurry = threading.Event()
        MlflowTracker.live.append(self)

    def interrupt(self) -> None:
        """The search is being stopped: trials that end from now on were interrupted."""
        self.stopping("KILLED", "interrupted")

    def stopping(self, status: str, reason: str) -> None:
        """The search is being stopped: trials that Tune stops from now on end with
        ``status`` and stop_reason ``reason`` (the first stop's)."""
        if self._stopping is None:
            self._stopping = (status, reason)

    def abandon(self, status: str, reason: str) -> None:
        """Ray is gone and Tune's loop will not end the trials: end every open trial's
        run now (from any thread), and ignore what Tune reports after this."""
        self.stopping(status, reason)
        self._end_open()
        self._abandoned = True

    def _end_open(self) -> None:
        """End the trials still open with the search's stop, unless a trial ended itself
        first (its error, or its health stop, arrived before Tune stopped it)."""
        for tid in sorted(self._open, key=lambda t: self._index.get(t, 0)):
            if tid in self._errors:
                self._end(tid, "FAILED", self._errors[tid])
            elif tid in self._unhealthy:
                why, failed = self._unhealthy[tid]
                self._end(tid, "FAILED" if failed else "FINISHED", f"unhealthy: {why}")
            else:
                self._end(tid, *self._stopping)

    # ------------------------------------------------------------ Tune hooks

    def setup(self, **info) -> None:
        self._ensure_thread()

    first_index = 1  # trial numbers start here (the seed re-check continues the search's)
    run_prefix = "trial"  # MLflow run names: trial-<number>-<trial id>
    restored_index_floor = 0  # set by resume before Tune unpickles the tracker
    _index_floor = 0          # a new trial's number is at least this

    def trial_params(self, trial) -> dict:
        """The sampled parameters of a trial, logged as its run's params."""
        return {k: trial.config[k] for k in self.param_names if k in trial.config}

    def trial_tags(self, trial) -> dict:
        """Tags a trial's run gets when it starts, besides trial_id and trial_index."""
        return {}

    def number(self, tid: str) -> int:
        """The trial's number (its run's trial_index), given on its first start."""
        if tid not in self._index:
            self._index[tid] = max(self.first_index + len(self._index), self._index_floor)
            self._index_floor = self._index[tid] + 1
        return self._index[tid]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        tid = trial.trial_id
        self._open.add(tid)
        self._put({"op": "start", "trial": tid, "index": self.number(tid),
                   "params": self.trial_params(trial), "prefix": self.run_prefix,
                   "metric": self.metric})
        tags = self.trial_tags(trial)
        if tags:
            self._put({"op": "tags", "trial": tid, "tags": tags})

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        tid = trial.trial_id
        if isinstance(result.get("error"), str):
            self._errors[tid] = result.get("stop_reason") or \
                f"error: {result['error'].split(':', 1)[0]}"
            return
        if isinstance(result.get("unhealthy"), str):
            self._unhealthy[tid] = (result["unhealthy"], bool(result.get("diverged")))
            if result.get("diverged"):  # non-finite placeholders: nothing to log
                return
        step = int(result.get("training_iteration", 0))
        node = result.get("node_id")
        if isinstance(node, str) and self._nodes.get(tid) != node:  # first report, or moved
            self._nodes[tid] = node
            self._put({"op": "tags", "trial": tid,
                       "tags": {"node_id": node, "node_ip": str(result.get("node_ip", ""))}})
        metrics = logged_metrics(result)
        self._epochs[tid] = step
        self._finished[tid] = bool(result.get("trial_finished", False))
        value = result.get(self.metric)
        if Objective(self.metric, self.mode).better(value, self._best.get(tid)):
            self._best[tid] = float(value)  # with the other objectives at that epoch
            self._also[tid] = {f"best_{m}": float(result[m]) for m in self.others
                               if finite(result.get(m))}
        ts = int(time.time() * 1000)  # fixed now: a re-sent batch is the same rows again
        rows = [[k, v, ts, step] for k, v in metrics.items() if math.isfinite(v)]
        if rows:
            self._put({"op": "metrics", "trial": tid, "metrics": rows})
        if self.echo and self.verbose:
            self.echo(f"  trial {self._index.get(tid, '?'):>2}/{self.samples} [{tid}] "
                      f"epoch {step}/{self.max_epochs}  {self.metric}={_fmt(value)}  "
                      f"val_loss={_fmt(result.get('val_loss'))}  "
                      f"({_fmt(result.get('epoch_seconds'))} s/epoch)")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        tid = trial.trial_id
        if tid in self._errors:
            self._end(tid, "FAILED", self._errors[tid])
            return
        if tid in self._unhealthy:
            why, failed = self._unhealthy[tid]
            self._end(tid, "FAILED" if failed else "FINISHED", f"unhealthy: {why}")
            return
        # ASHA stops a trial on one of its results. Tune's own last result answers for a
        # trial this tracker saw no result of (restored by a resume); one with no result
        # at all (resumed from a checkpoint taken at its last epoch) ended itself
        last = getattr(trial, "last_result", None) or {}
        finished = self._finished.get(tid) or bool(last.get("trial_finished"))
        unseen = tid not in self._epochs and not last.get("training_iteration")
        reason = "completed" if finished or unseen else "asha_stopped"
        self._end(tid, "FINISHED", reason)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self._stopping is not None:  # e.g. its worker got the same signal as the driver
            self._end(trial.trial_id, *self._stopping)
            return
        self._end(trial.trial_id, "FAILED", f"error: {_error_type(trial)}")

    def on_experiment_end(self, trials, **info) -> None:
        if self._stopping is not None:  # Tune stops in-flight trials without a per-trial event
            self._end_open()
        self.close()

    # ------------------------------------------------------------ driver side

    def _end(self, tid: str, status: str, reason: str) -> None:
        if self._abandoned:
            return
        best = self._best.get(tid)
        self._open.discard(tid)
        # epochs None: no result in this session (a resumed trial); the writer reads
        # them from the run's history instead of overwriting them with 0
        self._put({"op": "end", "trial": tid, "status": status, "reason": reason,
                   "epochs": self._epochs.get(tid), "best": best,
                   "best_metric": f"best_{self.metric}", "also": self._also.get(tid, {}),
                   "time": int(time.time() * 1000)})
        if self.echo:
            epochs = self._epochs.get(tid, "?")
            self.echo(f"  trial {self._index.get(tid, '?'):>2}/{self.samples} [{tid}] {reason} "
                      f"after {epochs} epoch(s); best {self.metric}={_fmt(best)}")

    def _put(self, write: dict) -> None:
        self._ensure_thread()
        self._queue.put(write)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._queue = self._queue or queue.Queue()
            self._thread = threading.Thread(target=self._writer, name="hpsearch-mlflow",
                                            daemon=True)
            self._thread.start()

    def close(self) -> int:
        """Deliver every queued write and stop the writer. A store that does not answer
        gets ``$HPSEARCH_TRACKING_GRACE`` seconds (60); what is still undelivered then
        goes to the outbox file. Returns how many writes were left there."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            try:
                self._thread.join()
            except KeyboardInterrupt:  # a second Ctrl-C: save what is queued and go
                self._hurry.set()
                self._thread.join(30)
        self._thread = None
        return self.undelivered

    # ------------------------------------------------------------ writer thread

    def _writer(self) -> None:
        from hpsearch.results.outbox import Outbox, RunWriter, fail_fast_http
        from hpsearch.results.storage import is_disk_full

        fail_fast_http()
        outbox = Outbox(RunWriter(self.tracking_uri, self.experiment_id, self.parent_run_id))
        grace = float(os.environ.get(GRACE_ENV, DEFAULT_GRACE))
        q, closing = self._queue, None  # closing: when close() asked, time.monotonic()
        while True:
            timeout = None
            if outbox.pending:  # wake up for the next retry, or to give up when closing
                timeout = max(0.05, outbox.next_try - time.monotonic())
                if closing is not None:
                    timeout = min(timeout, max(0.05, closing + grace - time.monotonic()))
            items = []
            try:
                items.append(q.get(timeout=timeout))
                while True:  # drain what is waiting, to batch it
                    items.append(q.get_nowait())
            except queue.Empty:
                pass
            for item in items:
                if item is _STOP:
                    closing = time.monotonic()
                    outbox.next_try = 0.0  # the end of the search: try again at once
                else:
                    outbox.add(item)
            done = outbox.deliver()
            self.write_errors = outbox.rejected
            if self.disk_full is None and is_disk_full(outbox.last_error):
                self.disk_full = self.tracking_uri  # the search stops (stopping.DiskWatch)
                if getattr(self, "reserve", None) is not None:
                    self.reserve.release()  # room for this write and the runs' ends:
                    outbox.next_try = 0.0   # taken at once, before anything else takes it
            if closing is None:
                continue
            if done:
                self.undelivered = self.undelivered_results = 0
                return
            if time.monotonic() - closing >= grace or self._hurry.is_set():
                self._give_up(outbox, grace)
                return

    def _give_up(self, outbox, grace: float) -> None:
        """The store stayed silent past the grace period: keep the writes in a file."""
        from pathlib import Path

        results, writes = outbox.results(), len(outbox.pending)
        self.undelivered, self.undelivered_results = writes, results
        if self.outbox is None:
            print(f"hpsearch: MLflow at {self.tracking_uri} did not answer; {writes} write(s) "
                  f"({results} epoch result(s)) were not delivered", file=sys.stderr)
            return
        try:
            outbox.save(Path(self.outbox))
        except OSError as e:  # the search's folder is on a full disk too
            print(f"hpsearch: MLflow at {self.tracking_uri} did not answer for {grace:g} s and "
                  f"{self.outbox} cannot be written ({e.strerror}); {results} epoch result(s) "
                  f"({writes} write(s)) were not delivered", file=sys.stderr, flush=True)
            return
        print(f"hpsearch: MLflow at {self.tracking_uri} did not answer for {grace:g} s; "
              f"{results} epoch result(s) ({writes} write(s)) saved in {self.outbox}",
              file=sys.stderr, flush=True)


def _error_type(trial) -> str:
    try:
        err = trial.get_pickled_error()
    except Exception:
        err = None
    cause = getattr(err, "cause", None) or err
    if cause is not None and type(cause).__name__ not in ("RayTaskError", "TuneError"):
        return type(cause).__name__
    try:  # fall back to the last line of the stored traceback: "NonFiniteLoss: ..."
        text = open(trial.error_file).read().strip().splitlines()
        for line in reversed(text):
            head = line.split(":", 1)[0].strip()
            if head.isidentifier() and line.count(":") >= 1:
                return head.rsplit(".", 1)[-1]
    except Exception:
        pass
    return "TrialError"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"
