"""MLflow tracking: one parent run per search, one child run per trial.

Logging must not stall Tune's scheduler. Ray's stock ``MLflowLoggerCallback``
writes synchronously from the driver's event loop (50-90 ms per result on
SQLite); :class:`MlflowTracker` only puts events on a queue there (micro-
seconds) and a single background thread writes them, merging the results of
one trial into one ``log_batch`` call. Only the contract's metrics are logged.

Runs are ended from the driver side: Tune ends an ASHA-stopped trial from
inside its report call, so code after a trial's loop never runs. ``close``
and :func:`end_orphans` make sure no run is left RUNNING after a search ends,
fails or is interrupted.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable

from ray import tune

from results.mlflow_runs import (  # noqa: F401  (re-exported: the engine uses them from here)
    PARENT_TAG,
    _client,
    child_runs,
    end_orphans,
    ensure_experiment,
    start_parent,
)

CONTRACT_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_rmse",
                    "val_mae", "val_r2", "epoch_seconds", "samples_per_second", "lr",
                    "val_top5_accuracy", "num_params", "macs_per_sample",
                    "grad_norm_ratio_first_last")
# per-layer gradient norms (grad_norm/conv01 ...), pretraining stages (ae_*), text facts
# (text_vocab_size ...) and every train_/val_ metric (val_f1, val_naive_rmse ...)
LOGGED_PREFIXES = ("grad_norm/", "ae_", "text_", "train_", "val_")


def logged_metrics(result: dict) -> dict:
    """The numeric metrics of a Tune result that go to MLflow; nothing of Tune's own."""
    return {k: float(v) for k, v in result.items()
            if (k in CONTRACT_METRICS or k.startswith(LOGGED_PREFIXES))
            and isinstance(v, (int, float)) and not isinstance(v, bool)}
_STOP = object()


class MlflowTracker(tune.Callback):
    """Tune callback: trial events -> queue -> one background MLflow writer."""

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 param_names: list[str], metric: str, mode: str, max_epochs: int,
                 samples: int, echo: Callable[[str], None] | None = print) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.param_names = list(param_names)
        self.metric, self.mode = metric, mode
        self.max_epochs, self.samples = max_epochs, samples
        self.echo = echo
        self._best: dict[str, float] = {}
        self._epochs: dict[str, int] = {}
        self._finished: dict[str, bool] = {}
        self._index: dict[str, int] = {}
        self._errors: dict[str, str] = {}  # trials that ended themselves with an error
        self._unhealthy: dict[str, tuple[str, bool]] = {}  # health stops: (why, failed)
        self._nodes: dict[str, str] = {}   # trial -> the Ray node it last reported from
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self.write_errors = 0

    live: list = []  # instances alive in this process (a restored one included)

    # Tune pickles callbacks into its experiment state: leave the thread behind.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_queue=None, _thread=None, echo=None)
        return state

    def __setstate__(self, state):  # restored by `hpsearch resume`: print progress again
        self.__dict__.update(state)
        self.echo = print
        MlflowTracker.live.append(self)

    # ------------------------------------------------------------ Tune hooks

    def setup(self, **info) -> None:
        self._ensure_thread()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        tid = trial.trial_id
        self._index.setdefault(tid, len(self._index) + 1)
        params = {k: trial.config[k] for k in self.param_names if k in trial.config}
        self._put(("start", tid, self._index[tid], params))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        tid = trial.trial_id
        if isinstance(result.get("error"), str):
            self._errors[tid] = result["error"].split(":", 1)[0]
            return
        if isinstance(result.get("unhealthy"), str):
            self._unhealthy[tid] = (result["unhealthy"], bool(result.get("diverged")))
            if result.get("diverged"):  # non-finite placeholders: nothing to log
                return
        step = int(result.get("training_iteration", 0))
        node = result.get("node_id")
        if isinstance(node, str) and self._nodes.get(tid) != node:  # first report, or moved
            self._nodes[tid] = node
            self._put(("tags", tid, {"node_id": node, "node_ip": str(result.get("node_ip", ""))}))
        metrics = logged_metrics(result)
        self._epochs[tid] = step
        self._finished[tid] = bool(result.get("trial_finished", False))
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            old = self._best.get(tid)
            better = old is None or (value > old if self.mode == "max" else value < old)
            if better:
                self._best[tid] = float(value)
        self._put(("metrics", tid, step, metrics, int(time.time() * 1000)))
        if self.echo:
            self.echo(f"  trial {self._index.get(tid, '?'):>2}/{self.samples} [{tid}] "
                      f"epoch {step}/{self.max_epochs}  {self.metric}={_fmt(value)}  "
                      f"val_loss={_fmt(result.get('val_loss'))}  "
                      f"({_fmt(result.get('epoch_seconds'))} s/epoch)")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        tid = trial.trial_id
        if tid in self._errors:
            self._end(tid, "FAILED", f"error: {self._errors[tid]}")
            return
        if tid in self._unhealthy:
            why, failed = self._unhealthy[tid]
            self._end(tid, "FAILED" if failed else "FINISHED", f"unhealthy: {why}")
            return
        reason = "completed" if self._finished.get(tid) else "asha_stopped"
        self._end(tid, "FINISHED", reason)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial.trial_id, "FAILED", f"error: {_error_type(trial)}")

    def on_experiment_end(self, trials, **info) -> None:
        self.close()

    # ------------------------------------------------------------ driver side

    def _end(self, tid: str, status: str, reason: str) -> None:
        best = self._best.get(tid)
        self._put(("end", tid, status, reason, self._epochs.get(tid, 0), best))
        if self.echo:
            self.echo(f"  trial {self._index.get(tid, '?'):>2}/{self.samples} [{tid}] {reason} "
                      f"after {self._epochs.get(tid, 0)} epoch(s); best {self.metric}={_fmt(best)}")

    def _put(self, event: tuple) -> None:
        self._ensure_thread()
        self._queue.put(event)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._queue = self._queue or queue.Queue()
            self._thread = threading.Thread(target=self._writer, name="hpsearch-mlflow",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 120.0) -> None:
        """Flush every queued event and stop the writer thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------ writer thread

    def _writer(self) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = _client(self.tracking_uri)
        runs = {r.data.tags.get("trial_id"): r.info.run_id
                for r in child_runs(self.tracking_uri, self.experiment_id, self.parent_run_id)
                if r.data.tags.get("trial_id")}  # re-attach on resume: one run per trial
        q = self._queue
        stop = False
        while not stop:
            events = [q.get()]
            while True:  # drain what is waiting, to batch it
                try:
                    events.append(q.get_nowait())
                except queue.Empty:
                    break
            pending: dict[str, list] = {}  # trial -> metrics not yet written
            for ev in events:
                if ev is _STOP:
                    stop = True
                elif ev[0] == "metrics":
                    _, tid, step, metrics, ts = ev
                    pending.setdefault(tid, []).extend(
                        Metric(k, v, ts, step) for k, v in metrics.items() if math.isfinite(v))
                else:
                    self._flush(client, runs, pending)
                    if ev[0] == "start":
                        _, tid, index, params = ev
                        if tid in runs:  # a restored or retried trial keeps its run
                            self._safely(client.update_run, runs[tid], status="RUNNING")
                            continue
                        run = self._safely(client.create_run, self.experiment_id,
                                           run_name=f"trial-{index:03d}-{tid}",
                                           tags={PARENT_TAG: self.parent_run_id,
                                                 "trial_id": tid, "trial_index": str(index)})
                        if run is None:
                            continue
                        runs[tid] = run.info.run_id
                        self._safely(client.log_batch, runs[tid],
                                     params=[Param(k, str(v)) for k, v in sorted(params.items())])
                    elif ev[0] == "tags" and ev[1] in runs:
                        self._safely(client.log_batch, runs[ev[1]],
                                     tags=[RunTag(k, v) for k, v in ev[2].items()])
                    elif ev[0] == "end" and ev[1] in runs:
                        _, tid, status, reason, epochs, best = ev
                        tags = [RunTag("stop_reason", reason), RunTag("epochs_reached", str(epochs))]
                        metrics = [Metric("epochs_reached", epochs, int(time.time() * 1000), 0)]
                        if best is not None:
                            metrics.append(Metric(f"best_{self.metric}", best,
                                                  int(time.time() * 1000), 0))
                        self._safely(client.log_batch, runs[tid], metrics=metrics, tags=tags)
                        self._safely(client.set_terminated, runs[tid], status=status)
            self._flush(client, runs, pending)

    def _flush(self, client, runs: dict, pending: dict) -> None:
        """One log_batch per trial for all its queued metrics."""
        for tid, metrics in pending.items():
            if tid in runs:
                for i in range(0, len(metrics), 1000):  # MLflow's per-call limit
                    self._safely(client.log_batch, runs[tid], metrics=metrics[i:i + 1000])
        pending.clear()

    def _safely(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # one failed write must not kill the writer
            self.write_errors += 1
            print(f"hpsearch: MLflow write failed ({type(e).__name__}: {e})", file=sys.stderr)
            return None


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
