"""MLflow writes that survive a tracking server going away.

The tracker turns every trial event into a plain, JSON-able *write* (start a
trial's run, tag it, log a batch of metrics, end it; at the end of a search,
end leftover runs and the parent run). An :class:`Outbox` delivers them in
order and, when the store does not answer (a restarting ``mlflow server``, a
busy SQLite file), keeps them and retries with backoff instead of dropping
them. What is still undelivered when the search ends goes to a file in the
search's folder, which ``hpsearch status NAME --sync`` replays.

Delivering a write twice is harmless, which is what makes retrying after an
ambiguous failure (the request reached the server, the answer did not come
back) safe: a trial's run is found by its ``trial_id`` tag before one is
created, params and tags are re-set to the same values, and a metric carries
the timestamp it got when it was queued, so the same (key, value, timestamp,
step) row again is dropped by MLflow's store (``SqlAlchemyStore._log_metrics``
removes rows that already exist) rather than logged twice.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from pathlib import Path

from hpsearch.results.mlflow_runs import PARENT_TAG, _client, end_orphans
from hpsearch.results.storage import is_disk_full

OUTBOX_FILE = "mlflow-outbox.jsonl"
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100
# MLflow rejects these outright: retrying the same write cannot succeed
PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
             "INVALID_STATE", "BAD_REQUEST"}
# MLflow's own HTTP retries (7, backoff factor 2: about 4 minutes per call against a dead
# server) would hold the writer on one call; the outbox retries instead, so a call to
# an unreachable server fails in seconds. Set before the first request; a value the
# user set wins.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def fail_fast_http() -> None:
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


class RunWriter:
    """Applies writes to one search's runs: trial id -> child run, found or created."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self._client = None
        self._runs: dict[str, str] | None = None  # trial_id -> run_id, read on first use
        # run_id -> the last epoch its history holds. A trial resumed or retried from its
        # checkpoint reports again the epochs after it, and the one the store may already
        # hold: Tune calls back with a result before it registers the result's checkpoint,
        # so a stop in between (a time budget, a signal) leaves the store an epoch ahead
        # of the checkpoint. Each epoch is logged once; the re-run one (from the same
        # checkpoint and RNG state) is dropped.
        self._logged: dict[str, int] = {}

    @property
    def client(self):
        if self._client is None:
            self._client = _client(self.tracking_uri)
        return self._client

    def forget(self) -> None:
        """After a failed write: look runs up again (a create may have reached the server)."""
        self._runs = None

    def run_id(self, trial: str) -> str | None:
        if self._runs is None:
            from hpsearch.results.mlflow_runs import child_runs

            self._runs = {r.data.tags["trial_id"]: r.info.run_id
                          for r in child_runs(self.tracking_uri, self.experiment_id,
                                              self.parent_run_id)
                          if r.data.tags.get("trial_id")}
        return self._runs.get(trial)

    def apply(self, write: dict) -> None:
        from mlflow.entities import Metric, Param, RunTag

        op, c = write["op"], self.client
        if op == "start":  # a restored or retried trial keeps its run
            run = self.run_id(write["trial"])
            if run is None:
                prefix = write.get("prefix", "trial")  # a refit's run: refit-<index>-<id>
                run = c.create_run(self.experiment_id, run_name=f"{prefix}-{write['index']:03d}-"
                                   f"{write['trial']}",
                                   tags={PARENT_TAG: self.parent_run_id, "trial_id": write["trial"],
                                         "trial_index": str(write["index"])}).info.run_id
                self._runs[write["trial"]] = run
            else:
                c.update_run(run, status="RUNNING")
                if write.get("metric") and run not in self._logged:
                    self._logged[run] = _last_step(c, run, write["metric"])
            params = [Param(k, str(v)) for k, v in sorted(write["params"].items())]
            for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
                c.log_batch(run, params=params[i:i + MAX_PARAMS_PER_BATCH])
        elif op in ("tags", "metrics", "end"):
            run = self.run_id(write["trial"])
            if run is None:  # its start was rejected: nothing to attach this to
                raise LookupError(f"no MLflow run for trial {write['trial']}")
            if op == "tags":
                c.log_batch(run, tags=[RunTag(k, str(v)) for k, v in write["tags"].items()])
            elif op == "metrics":
                done = self._logged.get(run, -1)
                rows = [Metric(k, v, ts, step) for k, v, ts, step in write["metrics"]
                        if step > done]
                if rows:
                    c.log_batch(run, metrics=rows)
                    self._logged[run] = max(done, max(m.step for m in rows))
            else:
                ts, epochs = write["time"], write["epochs"]
                if epochs is None:  # the tracker saw no result: the run's history knows
                    epochs = _last_step(c, run, write["best_metric"].removeprefix("best_"))
                metrics = [Metric("epochs_reached", epochs, ts, 0)]
                if write["best"] is not None:
                    metrics.append(Metric(write["best_metric"], write["best"], ts, 0))
                # the other objectives at the first one's best epoch (a Pareto point)
                metrics += [Metric(k, v, ts, 0) for k, v in write.get("also", {}).items()]
                c.log_batch(run, metrics=metrics, tags=[RunTag("stop_reason", write["reason"]),
                                                        RunTag("epochs_reached", str(epochs))])
                c.set_terminated(run, status=write["status"])
        elif op == "orphans":
            end_orphans(self.tracking_uri, self.experiment_id, self.parent_run_id,
                        status=write["status"], reason=write["reason"])
        elif op == "parent":
            c.set_terminated(self.parent_run_id, status=write["status"])
        else:
            raise ValueError(f"unknown MLflow write {op!r}")


def _last_step(client, run: str, metric: str) -> int:
    """The last epoch a run's history of ``metric`` holds (0: none)."""
    return max((m.step for m in client.get_metric_history(run, metric)), default=0)


def is_permanent(error: Exception) -> bool:
    """A write MLflow refused (bad value, missing run), as opposed to a store that did
    not answer (connection refused, timeout, HTTP 5xx, SQLite busy)."""
    code = getattr(error, "error_code", None)
    return code in PERMANENT or (code is None and isinstance(error, (LookupError, ValueError)))


class Outbox:
    """Ordered writes, delivered with retry and exponential backoff (0.5 s doubling to
    30 s) while the store does not answer. ``deliver`` returns when everything went
    out or a write failed for a reason worth retrying."""

    def __init__(self, writer: RunWriter, *, log=None) -> None:
        self.writer = writer
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.pending: deque[dict] = deque()
        self.next_try = 0.0  # time.monotonic() before which no retry is made
        self.failures = 0    # consecutive failed attempts
        self.delivered = 0
        self.rejected = 0    # writes MLflow refused: logged and dropped, as before
        self.last_error: Exception | None = None  # of the last failed attempt (None: it went)
        self._tail: dict[str, dict] = {}  # trial -> its last pending metrics write, still open

    def add(self, write: dict) -> None:
        trial = write.get("trial")
        tail = self._tail.get(trial)
        if (write["op"] == "metrics" and tail is not None
                and len(tail["metrics"]) + len(write["metrics"]) <= MAX_METRICS_PER_BATCH):
            tail["metrics"] = tail["metrics"] + write["metrics"]  # one log_batch for both
            return
        self.pending.append(write)
        if write["op"] == "metrics":
            self._tail[trial] = write
        elif trial is None:  # a search-wide write: what came before goes first
            self._tail.clear()
        else:  # a trial's metrics never move past its own start, tags or end
            self._tail.pop(trial, None)

    def results(self) -> int:
        """Epoch results among the pending writes (one per trial and step)."""
        return len({(w["trial"], m[3]) for w in self.pending if w["op"] == "metrics"
                    for m in w["metrics"]})

    def deliver(self) -> bool:
        """Deliver pending writes in order; True when none is left."""
        while self.pending:
            if time.monotonic() < self.next_try:
                return False
            write = self.pending[0]
            if self._tail.get(write.get("trial")) is write:
                del self._tail[write["trial"]]  # being sent: later metrics start a new write
            try:
                self.writer.apply(write)
            except Exception as e:
                if is_permanent(e):
                    self.pending.popleft()
                    self.rejected += 1
                    self.log(f"hpsearch: MLflow refused a write ({write['op']}): "
                             f"{type(e).__name__}: {_first_line(e)}")
                    continue
                self.writer.forget()
                self.last_error = e
                if self.failures == 0 and is_disk_full(e):
                    self.log(f"hpsearch: MLflow at {self.writer.tracking_uri} cannot write: the "
                             "disk is full; results stay queued and are retried")
                elif self.failures == 0:
                    self.log(f"hpsearch: MLflow at {self.writer.tracking_uri} does not answer "
                             f"({type(e).__name__}: {_first_line(e)[:200]}); results stay "
                             "queued and are retried")
                self.failures += 1
                self.next_try = time.monotonic() + min(30.0, 0.5 * 2 ** (self.failures - 1))
                return False
            self.pending.popleft()
            self.delivered += 1
            self.last_error = None
            if self.failures:
                self.log(f"hpsearch: MLflow at {self.writer.tracking_uri} answers again; "
                         f"delivering {len(self.pending) + 1} queued write(s)")
                self.failures = 0
        return True

    def save(self, path: Path) -> int:
        """Append the pending writes to ``path`` (JSON lines); how many were saved."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            for write in self.pending:
                fh.write(json.dumps(write) + "\n")
        n = len(self.pending)
        self.pending.clear()
        self._tail.clear()
        return n


def outbox_path(search_dir: Path) -> Path:
    return Path(search_dir) / OUTBOX_FILE


def pending_in(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def replay(path: Path, tracking_uri: str, experiment_id: str, parent_run_id: str,
           *, attempts: int = 3, log=None) -> tuple[int, int]:
    """Deliver the writes saved in ``path``, in order. Returns (delivered, left); what is
    left (the store still does not answer) stays in the file for a later replay."""
    fail_fast_http()
    outbox = Outbox(RunWriter(tracking_uri, experiment_id, parent_run_id), log=log)
    for write in pending_in(path):
        outbox.add(write)
    for _ in range(attempts):
        if outbox.deliver():
            break
        time.sleep(max(0.0, outbox.next_try - time.monotonic()))
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    left = outbox.save(tmp) if outbox.pending else 0
    if left:
        tmp.replace(path)
    else:
        path.unlink(missing_ok=True)
    return outbox.delivered, left


def finish_search(tracking_uri: str, experiment_id: str, parent_run_id: str, *, status: str,
                  orphan_status: str, orphan_reason: str, path: Path | None) -> tuple[int, int]:
    """End the trial runs a search left open and its parent run. When earlier writes
    wait in the outbox file (they must go first) or the store does not answer, these
    two join the file. Returns (trial runs ended now, writes added to the file)."""
    writes = [{"op": "orphans", "status": orphan_status, "reason": orphan_reason},
              {"op": "parent", "status": status}]
    if path is None or not pending_in(path):
        try:
            ended = end_orphans(tracking_uri, experiment_id, parent_run_id,
                                status=orphan_status, reason=orphan_reason)
            _client(tracking_uri).set_terminated(parent_run_id, status=status)
            return ended, 0
        except Exception:
            if path is None:
                raise
    with open(path, "a") as fh:
        for write in writes:
            fh.write(json.dumps(write) + "\n")
    return 0, len(writes)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
