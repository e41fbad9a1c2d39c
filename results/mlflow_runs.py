"""MLflow queries and run bookkeeping that need no Ray: the experiment per
search, its parent run, its child runs, and ending runs left open."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PARENT_TAG = "mlflow.parentRunId"


_READY: set[str] = set()  # SQLite stores this process has opened once (tables exist)


def _client(tracking_uri: str):
    """An MlflowClient. The first one for a SQLite store in a process is made under a
    file lock: opening a store creates or migrates its tables, and two searches that
    start at once on a fresh storage root would otherwise run MLflow's migrations
    twice ("Online migration expected to match one row ...")."""
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith("sqlite:///") or tracking_uri in _READY:
        return MlflowClient(tracking_uri=tracking_uri)
    import fcntl

    db = Path(tracking_uri.removeprefix("sqlite:///"))
    lock = Path(f"{db}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        if not db.exists():
            seed_store(db)
        client = MlflowClient(tracking_uri=tracking_uri)  # builds the store: tables now exist
    _READY.add(tracking_uri)
    return client


def seed_store(db: Path) -> bool:
    """Start a new SQLite store as a copy of an empty one this MLflow version made.

    MLflow builds a new store by running every Alembic migration since its first
    schema: 3-8 s of CPU on 2 cores, paid by the first search in every new storage
    root (and every test). The migrated empty store is kept once per MLflow version
    under the cache (``$HPSEARCH_CACHE``) and copied in with
    SQLite's backup API; MLflow then finds its tables at head and migrates nothing.
    Its one row, the Default experiment, gets the artifact location MLflow would
    have given it here. Any failure leaves ``db`` absent and MLflow builds it."""
    import sqlite3
    import time

    part = db.with_name(f".{db.name}.part-{os.getpid()}")
    try:
        template = _store_template()
        with sqlite3.connect(template) as src, sqlite3.connect(part) as dst:
            src.backup(dst)
            now = int(time.time() * 1000)
            dst.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                        "last_update_time = ? WHERE experiment_id = 0",
                        (os.path.join(os.path.abspath("mlruns"), "0"), now, now))
        part.replace(db)  # whole or absent: a reader never sees a half-copied store
        return True
    except Exception:
        with contextlib.suppress(Exception):
            part.unlink(missing_ok=True)
        return False


def _store_template() -> Path:
    import mlflow
    from mlflow.tracking import MlflowClient

    from hpsearch.trainables.data.debian import cache_root

    folder = cache_root() / "mlflow"
    template = folder / f"empty-store-{mlflow.__version__}.db"
    if template.is_file():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    build = folder / f".build-{os.getpid()}.db"
    build.unlink(missing_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{build}").search_experiments()  # MLflow migrates it
    build.replace(template)  # atomic: processes that race each build their own copy
    return template


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """The experiment id for a search name, created on first use."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        experiment_id = exp.experiment_id
    else:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    # MLflow 3's UI opens GenAI trace dashboards unless told this is model training
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
    return experiment_id


def start_parent(tracking_uri: str, experiment_id: str, *, run_name: str, params: dict,
                 tags: dict, spec_text: str) -> str:
    from mlflow.entities import Param, RunTag

    client = _client(tracking_uri)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i:i + 100])
    client.log_text(run.info.run_id, spec_text, "spec.yaml")
    client.log_batch(run.info.run_id, tags=[RunTag("hpsearch.role", "search")])
    return run.info.run_id


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list:
    """All child runs of a search's parent run, oldest first."""
    client = _client(tracking_uri)
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1000, page_token=token, order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def end_orphans(tracking_uri: str, experiment_id: str, parent_run_id: str, *,
                status: str = "KILLED", reason: str = "interrupted") -> int:
    """End every child run still RUNNING (after Ctrl-C, a crash, a lost node)."""
    client = _client(tracking_uri)
    n = 0
    for run in child_runs(tracking_uri, experiment_id, parent_run_id):
        if run.info.status == "RUNNING":
            if "stop_reason" not in run.data.tags:
                client.set_tag(run.info.run_id, "stop_reason", reason)
            client.set_terminated(run.info.run_id, status=status)
            n += 1
    return n


LOST_TAG = "lost"
LOST_REASON = ("lost: the driver started it after Tune last saved the search, then died; "
               "the resumed search ran its configuration again as a new trial")


def settle_lost_runs(tracking_uri: str, experiment_id: str, parent_run_id: str,
                     known: set[str]) -> tuple[int, int, int]:
    """Before a resume: the child runs of trials that Tune's saved experiment state does
    not hold (the dead driver started them after its last save). Tune runs their
    configurations again under new trial ids, so the old runs are no trials of the
    search any more. One still RUNNING without a metric is deleted (nothing is lost);
    one with metrics ends KILLED, tagged ``lost`` with the reason, kept in MLflow and
    left out of the search's trials. Runs the dead driver had ended are trials and
    stay. Returns (deleted, kept, the highest trial_index a child run holds): the
    resumed search numbers its new trials after it, a lost trial's number included."""
    from mlflow.entities import RunTag

    client = _client(tracking_uri)
    deleted = kept = highest = 0
    for run in child_runs(tracking_uri, experiment_id, parent_run_id):
        tags = run.data.tags
        tid = tags.get("trial_id")
        if str(tags.get("trial_index", "")).isdigit():
            highest = max(highest, int(tags["trial_index"]))
        if (tid is None or tid in known or run.info.status != "RUNNING"
                or tags.get("recheck") == "true" or tags.get("refit") == "true"):
            continue
        run_id = run.info.run_id
        client.log_batch(run_id, tags=[RunTag("stop_reason", LOST_REASON), RunTag(LOST_TAG, "true")])
        client.set_terminated(run_id, status="KILLED")
        if run.data.metrics:
            kept += 1
        else:
            client.delete_run(run_id)
            deleted += 1
    return deleted, kept, highest
