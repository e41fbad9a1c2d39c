"""MLflow queries and run bookkeeping that need no Ray: the experiment per
search, its parent run, its child runs, and ending runs left open."""

from __future__ import annotations

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
    from pathlib import Path

    lock = Path(tracking_uri.removeprefix("sqlite:///") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        client = MlflowClient(tracking_uri=tracking_uri)  # builds the store: tables now exist
    _READY.add(tracking_uri)
    return client


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
