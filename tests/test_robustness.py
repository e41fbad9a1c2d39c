"""Runtime faults, on real parts (local Ray, real MLflow, real data): a trial out of
GPU memory, a search stopped by SIGTERM, a tracking server that goes away and
comes back (or never does), two searches at once on one SQLite store.

Waits poll for a condition with a generous bound and never sleep a fixed time
hoping the machine was fast enough: CI machines are busy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port, wait_for
from mlflow.tracking import MlflowClient

from hpsearch.results.status import trial_rows
from hpsearch.results.storage import Storage
from hpsearch.search.engine import run_search
from hpsearch.search.spec import parse_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent

DIGITS = {  # seconds per trial: ResNet-18 (CIFAR stem, width 8) on scikit-learn's digits
    "trainable": "resnet18",
    "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {"algorithm": "random", "samples": 2, "seed": 0, "concurrency": 2},
    "scheduler": {"name": "fifo", "max_epochs": 2},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    "space": {"lr": {"loguniform": [1e-3, 3e-2]}, "batch_size": {"choice": [32, 64]}},
    "fixed": {"stem": "cifar", "base_width": 8, "optimizer": "adam"},
}


def children(meta) -> list:
    client = MlflowClient(meta["tracking_uri"])
    return client.search_runs([meta["experiment_id"]],
                              filter_string=f"tags.`mlflow.parentRunId` = '{meta['parent_run_id']}'")


def write_spec(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**DIGITS, **changes}))
    return path


def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "hpsearch", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


# ---------------------------------------------------------------- GPU out of memory


def test_out_of_memory_ends_its_trial_without_retry_and_frees_the_worker(ray_session, storage):
    """A trial that runs out of GPU memory (raised on CPU by the probe, for real on a GPU)
    ends FAILED `error: OutOfMemory` with no FailureConfig retry, Optuna is told FAIL,
    and the next trial on the same worker finds the memory released (the probe fails
    any trial that finds the previous model alive or GPU memory still reserved)."""
    spec = parse_spec({
        "name": "oom-probe", "trainable": "plugins.oom_probe", "data": {"source": "digits"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random", "samples": 5, "seed": 1, "concurrency": 1},
        "scheduler": {"name": "fifo", "max_epochs": 1},
        "failure": {"max_failures": 2},
        # on a GPU machine the probe runs out of memory for real; without one, the local
        # cluster runs the trials on CPU and the probe raises the error itself
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0.5},
        "space": {"oom": {"choice": [True, False]}},
    }, source="oom-probe")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_errors == 0  # ended by the adapter, not as a Tune error (no retry)
    meta, rows = trial_rows(spec.name, storage)
    runs = sorted(children(meta), key=lambda r: int(r.data.tags["trial_index"]))
    kinds = [r.data.params["oom"] for r in runs]
    # the seeded draw: an out-of-memory trial followed by others on the same worker
    assert "True" in kinds[:-1] and "False" in kinds[kinds.index("True") + 1:], kinds
    for r in runs:
        if r.data.params["oom"] == "True":
            assert (r.info.status, r.data.tags["stop_reason"]) == ("FAILED", "error: OutOfMemory")
        else:
            assert (r.info.status, r.data.tags["stop_reason"]) == ("FINISHED", "completed"), \
                r.data.tags
    assert len({r.data.tags["node_id"] for r in runs if "node_id" in r.data.tags}) == 1
    # one attempt per trial: Tune recorded no failure, the trial folder no error file
    exp = storage.search_dir(spec.name)
    for trial_dir in exp.glob("trial_*"):
        assert not (trial_dir / "error.txt").exists(), trial_dir
        lines = (trial_dir / "result.json").read_text().splitlines()
        assert len(lines) == 1, (trial_dir, len(lines))
    # TPE's study: FAIL for each out-of-memory trial, COMPLETE for the others
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    searcher.restore_from_dir(str(exp))
    states = sorted((str(t.params["oom"]), t.state.name) for t in searcher._ot_study.trials)
    assert states == sorted((k, "FAIL" if k == "True" else "COMPLETE") for k in kinds), states


# ---------------------------------------------------------------- SIGTERM mid-search


def test_sigterm_mid_search_ends_inflight_runs_killed_as_interrupted(tmp_path):
    """`kill PID` (what a service manager or `jobs stop` sends) stops a real search the
    way Ctrl-C does: in-flight trials' runs end KILLED with stop_reason `interrupted`,
    keeping the epochs they logged; the parent run ends KILLED; exit code 128+15."""
    spec = write_spec(tmp_path / "term.yaml", name="sigterm-probe",
                      scheduler={"name": "fifo", "max_epochs": 60})
    storage = tmp_path / "runs"
    proc = cli("run", str(spec), "--storage", str(storage))
    st = Storage(storage)
    try:
        def two_trials_logging():
            meta, rows = trial_rows("sigterm-probe", st)
            client = MlflowClient(meta["tracking_uri"])
            return len(rows) == 2 and all(
                len(client.get_metric_history(r.run_id, "val_accuracy")) >= 1 for r in rows)

        wait_for(two_trials_logging, 300, "two trials logging epochs", proc)
        proc.send_signal(signal.SIGTERM)  # the driver only, as `kill PID` does
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "interrupted (SIGTERM)" in out and "hpsearch resume sigterm-probe" in out, out[-2000:]
    meta, rows = trial_rows("sigterm-probe", st)
    client = MlflowClient(meta["tracking_uri"])
    assert client.get_run(meta["parent_run_id"]).info.status == "KILLED"
    assert len(rows) == 2
    for r in rows:
        run = client.get_run(r.run_id)
        assert (run.info.status, run.data.tags.get("stop_reason")) == ("KILLED", "interrupted"), \
            (run.info.status, run.data.tags)
        steps = [m.step for m in client.get_metric_history(r.run_id, "val_accuracy")]
        assert steps == list(range(1, len(steps) + 1)) and r.epochs == len(steps) >= 1, steps
    status = subprocess.run([sys.executable, "-m", "hpsearch", "status", "sigterm-probe",
                             "--storage", str(storage)], cwd=ROOT, capture_output=True, text=True)
    table = [line.split() for line in status.stdout.splitlines()]
    assert sum(row[2:4] == ["KILLED", "interrupted"] for row in table) == 2, status.stdout


# ---------------------------------------------------------------- tracking server goes away


def _serve(port: int, root: Path) -> subprocess.Popen:
    proc = cli("tracking", "serve", "--port", str(port), "--storage", str(root),
               start_new_session=True)

    def healthy():
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status == 200

    wait_for(healthy, 180, f"mlflow server on port {port}", proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `tracking serve` stops the server's process group
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _results_on_disk(storage: Path, name: str) -> int:
    """Epoch results the trials reported, as Tune wrote them (not through MLflow)."""
    return sum(len((d / "result.json").read_text().splitlines())
               for d in (storage / name).glob("trial_*") if (d / "result.json").is_file())


def _histories_complete(uri: str, name: str, storage: Path, epochs: int | None = None) -> None:
    meta, rows = trial_rows(name, Storage(storage))
    client = MlflowClient(uri)
    assert client.get_run(meta["parent_run_id"]).info.status == "FINISHED"
    assert rows and all((r.state, r.stop_reason) == ("FINISHED", "completed") for r in rows), \
        [(r.state, r.stop_reason) for r in rows]
    for r in rows:
        for key in ("val_accuracy", "train_loss", "lr"):
            steps = [m.step for m in client.get_metric_history(r.run_id, key)]
            # every epoch once: none lost in the outage, none written twice by a retry
            assert steps == list(range(1, (epochs or r.epochs) + 1)), (r.trial_id, key, steps)


def test_tracking_server_restart_loses_nothing_and_a_dead_one_leaves_an_outbox(tmp_path):
    """A real `mlflow server` (hpsearch tracking serve) stopped mid-search: (1) restarted on
    the same port and store, every queued result arrives exactly once and the search
    ends normally; (2) never back before the search ends: the search still ends, exits 1
    saying how many writes wait in the outbox file, and `status --sync` delivers them
    once the server is back."""
    port, server_root, storage = free_port(), tmp_path / "server", tmp_path / "runs"
    uri = f"http://127.0.0.1:{port}"
    server = _serve(port, server_root)
    run = None
    try:
        # (1) stopped, then back while the search runs
        epochs = 16  # room for epochs after the stop, even when a busy machine slows the stop
        spec = write_spec(tmp_path / "restart.yaml", name="ts-restart",
                          scheduler={"name": "fifo", "max_epochs": epochs})
        run = cli("run", str(spec), "--storage", str(storage), "--tracking-uri", uri,
                  env={"HPSEARCH_TRACKING_GRACE": "300"})

        def logged_epochs():
            meta, rows = trial_rows("ts-restart", Storage(storage))
            client = MlflowClient(uri)
            return len(rows) == 2 and all(client.get_metric_history(r.run_id, "val_accuracy")
                                          for r in rows)

        wait_for(logged_epochs, 300, "both trials' first epochs in MLflow", run)
        _stop(server)
        before = _results_on_disk(storage, "ts-restart")
        # the search keeps running without its tracking server (until its trials end: then
        # its writer waits for the store, up to HPSEARCH_TRACKING_GRACE)
        wait_for(lambda: _results_on_disk(storage, "ts-restart") >= min(before + 3, 2 * epochs),
                 300, "epochs trained during the outage", run)
        server = _serve(port, server_root)
        out, _ = run.communicate(timeout=420)
        assert run.returncode == 0, out[-3000:]
        assert "does not answer" in out and "answers again" in out, out[-3000:]
        _histories_complete(uri, "ts-restart", storage, epochs=epochs)

        # (2) stopped for good: the search ends, its writes wait in a file
        spec = write_spec(tmp_path / "gone.yaml", name="ts-gone",
                          scheduler={"name": "fifo", "max_epochs": 2})
        run = cli("run", str(spec), "--storage", str(storage), "--tracking-uri", uri,
                  env={"HPSEARCH_TRACKING_GRACE": "3"})
        wait_for(lambda: trial_rows("ts-gone", Storage(storage))[1], 300,
                 "the first trial's run in MLflow", run)
        _stop(server)
        out, _ = run.communicate(timeout=420)
        outbox = storage / "ts-gone" / "mlflow-outbox.jsonl"
        assert run.returncode == 1, out[-3000:]
        assert f"they are kept in {outbox}" in out and "--sync" in out, out[-3000:]
        writes = [json.loads(line) for line in outbox.read_text().splitlines()]
        assert {"metrics", "end", "parent"} <= {w["op"] for w in writes}
        still = subprocess.run([sys.executable, "-m", "hpsearch", "status", "ts-gone",
                                "--sync", "--storage", str(storage)], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
        assert still.returncode == 1 and "still does not answer" in still.stderr, still.stderr
        assert len(outbox.read_text().splitlines()) == len(writes)  # nothing lost by trying
        server = _serve(port, server_root)
        synced = subprocess.run([sys.executable, "-m", "hpsearch", "status", "ts-gone",
                                 "--sync", "--storage", str(storage)], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert f"delivered {len(writes)} MLflow write(s)" in synced.stdout, synced.stdout
        assert not outbox.exists()
        _histories_complete(uri, "ts-gone", storage, epochs=2)
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.communicate()
        _stop(server)


# ---------------------------------------------------------------- two searches, one store


def test_two_searches_at_once_on_one_sqlite_store(tmp_path):
    """Two `hpsearch run` with different names start together on a fresh storage root
    (default SQLite store): both finish with every run and every epoch recorded, and
    neither meets "database is locked" or MLflow's table creation racing the other's."""
    storage = tmp_path / "runs"
    spec = write_spec(tmp_path / "pair.yaml", name="pair",
                      search={**DIGITS["search"], "samples": 2},
                      scheduler={"name": "fifo", "max_epochs": 2})
    runs = [cli("run", str(spec), "--name", name, "--storage", str(storage))
            for name in ("pair-a", "pair-b")]
    outs = []
    try:
        for proc in runs:
            outs.append(proc.communicate(timeout=600)[0])
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, out in zip(runs, outs):
        assert proc.returncode == 0, out[-3000:]
        assert "locked" not in out.lower() and "write failed" not in out, out[-3000:]
    uri = Storage(storage).tracking_uri()
    for name in ("pair-a", "pair-b"):
        meta, rows = trial_rows(name, Storage(storage))
        assert len(rows) == 2
        _histories_complete(uri, name, storage, epochs=2)


def test_processes_opening_a_fresh_sqlite_store_at_once_do_not_race(tmp_path):
    """The race above made deterministic: three processes released at the same instant
    open a store that does not exist yet (MLflow creates and migrates its tables on
    open). Without the lock in results.mlflow_runs, some fail in MLflow's migrations."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\n"
            "from mlflow.tracking import MlflowClient  # the slow imports before the start line\n"
            "from hpsearch.results.mlflow_runs import _client\n"
            "pathlib.Path(sys.argv[2] + '-' + sys.argv[3]).touch()  # ready\n"
            "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.005)\n"
            "_client(sys.argv[1]).create_experiment(sys.argv[3])\n")
    names = [f"exp-{i}" for i in range(3)]
    # an empty cache: the first process under the lock has MLflow build the template store
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HPSEARCH_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, str(go), name], cwd=ROOT,
                              env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in names]
    try:
        wait_for(lambda: all(Path(f"{go}-{n}").exists() for n in names), 180,
                 "the processes ready at the start line")
        go.touch()
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 3, "\n".join(o[-1500:] for o in outs)
    assert set(names) <= {e.name for e in MlflowClient(uri).search_experiments()}
    assert len(list((tmp_path / "cache" / "mlflow").glob("empty-store-*.db"))) == 1


def test_a_new_store_copied_from_the_template_is_the_store_mlflow_builds(tmp_path, monkeypatch):
    """A fresh SQLite store is seeded from the cached empty store (no migrations): same
    tables, indexes and Alembic version as the one MLflow builds itself, and usable."""
    import sqlite3

    from hpsearch.results import mlflow_runs

    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "own.db"
    MlflowClient(f"sqlite:///{own}").search_experiments()  # MLflow's own build
    seeded = tmp_path / "runs" / "mlflow.db"
    seeded.parent.mkdir()
    assert mlflow_runs.seed_store(seeded) and seeded.is_file()
    assert not list(seeded.parent.glob(".*part*"))

    def schema(db):
        # a table's clauses as a set: MLflow's own builds order a recreated table's
        # CHECK constraints differently from one process to the next (hash seed)
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            return (sorted((kind, name, sorted(re.split(r",\s*\n", sql or "")))
                           for kind, name, sql in rows),
                    c.execute("SELECT version_num FROM alembic_version").fetchall())

    assert schema(seeded) == schema(own)
    client = mlflow_runs._client(f"sqlite:///{seeded}")
    assert client.get_experiment("0").artifact_location == str(tmp_path / "mlruns" / "0")
    exp = mlflow_runs.ensure_experiment(f"sqlite:///{seeded}", "seeded", None)
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "val_accuracy", 0.5, step=1)
    assert client.get_run(run.info.run_id).data.metrics == {"val_accuracy": 0.5}


# ---------------------------------------------------------------- the pieces, directly


def test_a_write_delivered_twice_is_harmless(tmp_path):
    """What makes retrying safe after an ambiguous failure (the request reached the store,
    the answer did not come back): every write applied twice leaves one run per trial,
    one row per metric step, and the same end state. Real MLflow, SQLite store."""
    from hpsearch.results.mlflow_runs import ensure_experiment, start_parent
    from hpsearch.results.outbox import Outbox, RunWriter

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = ensure_experiment(uri, "twice", (tmp_path / "artifacts").as_uri())  # not ./mlruns
    parent = start_parent(uri, exp, run_name="p", params={}, tags={}, spec_text="x")
    writes = [{"op": "start", "trial": "t1", "index": 1, "params": {"lr": 0.1}},
              {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.5, 1000, 1]]},
              {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.6, 2000, 2]]},
              {"op": "tags", "trial": "t1", "tags": {"node_id": "n1"}},
              {"op": "end", "trial": "t1", "status": "FINISHED", "reason": "completed",
               "epochs": 2, "best": 0.6, "best_metric": "best_val_accuracy", "time": 3000},
              {"op": "parent", "status": "FINISHED"}]
    for _ in range(2):
        writer = RunWriter(uri, exp, parent)  # a fresh writer: it must find the run again
        outbox = Outbox(writer, log=lambda line: None)
        for w in writes:
            outbox.add(json.loads(json.dumps(w)))
        assert len(outbox.pending) == 5  # the two metrics writes of t1 merged into one
        assert outbox.deliver() and outbox.delivered == 5
    client = MlflowClient(uri)
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.6)]
    assert runs[0].data.tags["stop_reason"] == "completed" and runs[0].data.params["lr"] == "0.1"


def test_a_trial_resumed_from_an_older_checkpoint_logs_each_epoch_once(tmp_path):
    """Tune calls back with a result before it registers the result's checkpoint: a stop
    in between leaves the store an epoch ahead of the checkpoint, and the resumed trial
    reports that epoch again (a new timestamp, so not a duplicate row MLflow would fold).
    The reopened run keeps one row per epoch, and the epochs after it are logged."""
    from hpsearch.results.mlflow_runs import ensure_experiment, start_parent
    from hpsearch.results.outbox import RunWriter

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = ensure_experiment(uri, "again", (tmp_path / "artifacts").as_uri())
    parent = start_parent(uri, exp, run_name="p", params={}, tags={}, spec_text="x")
    start = {"op": "start", "trial": "t1", "index": 1, "params": {}, "metric": "val_accuracy"}
    first = RunWriter(uri, exp, parent)
    for w in [start, {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.5, 1000, 1]]},
              {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.6, 2000, 2]]}]:
        first.apply(w)
    resumed = RunWriter(uri, exp, parent)  # `hpsearch resume`: restored from epoch 1's checkpoint
    for w in [start, {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.61, 5000, 2]]},
              {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.7, 6000, 3]]},
              {"op": "metrics", "trial": "t1", "metrics": [["val_accuracy", 0.69, 7000, 3]]}]:
        resumed.apply(w)  # (the last: a retry within the session re-reports epoch 3)
    run = resumed.run_id("t1")
    history = MlflowClient(uri).get_metric_history(run, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.6), (3, 0.7)]


def test_an_unreachable_store_keeps_writes_in_order_and_saves_them(tmp_path, monkeypatch):
    """Against a port nobody listens on, nothing is dropped: the first write fails, the
    outbox keeps all of them, schedules a retry with backoff, and saves them in order."""
    from hpsearch.results.outbox import HTTP_DEFAULTS, Outbox, RunWriter, pending_in

    for key, value in HTTP_DEFAULTS.items():  # what a search's writer sets for itself
        monkeypatch.setenv(key, value)
    outbox = Outbox(RunWriter("http://127.0.0.1:9", "1", "p"), log=lambda line: None)
    writes = [{"op": "start", "trial": "t1", "index": 1, "params": {}},
              {"op": "metrics", "trial": "t1", "metrics": [["lr", 0.1, 1, 1]]},
              {"op": "parent", "status": "FINISHED"}]
    for w in writes:
        outbox.add(w)
    t0 = time.monotonic()
    assert not outbox.deliver()
    assert time.monotonic() - t0 < 60  # MLflow's own retries do not hold it for minutes
    assert outbox.failures == 1 and outbox.next_try > time.monotonic() - 1
    assert not outbox.deliver()  # before the backoff has passed: no new attempt
    assert outbox.failures == 1 and outbox.results() == 1
    path = tmp_path / "outbox.jsonl"
    assert outbox.save(path) == 3 and pending_in(path) == writes


def test_resource_wait_and_the_unsatisfiable_line(monkeypatch):
    from hpsearch.search.stopping import resource_wait, unsatisfiable

    assert resource_wait(12.5) == 12.5
    monkeypatch.setenv("HPSEARCH_RESOURCE_WAIT", "45")
    assert resource_wait(None) == 45
    monkeypatch.setenv("HPSEARCH_RESOURCE_WAIT", "soon")
    with pytest.raises(ValueError, match=r"\$HPSEARCH_RESOURCE_WAIT: seconds >= 0"):
        resource_wait(None)
    with pytest.raises(ValueError, match="--resource-wait"):
        resource_wait(-1)
    nodes = [{"CPU": 2.0}, {"CPU": 3.0}]
    gpu = unsatisfiable({"CPU": 1, "GPU": 0.25}, nodes, 30)
    assert "1 CPU, 0.25 GPU" in gpu and "3 CPU, 0 GPU" in gpu and "(missing: GPU)" in gpu
    assert "--gpus-per-trial 0" in gpu and "--cpus-per-trial" not in gpu and "30 s" in gpu
    cpu = unsatisfiable({"CPU": 4}, nodes, 30)
    assert "--cpus-per-trial 3" in cpu and "--gpus-per-trial" not in cpu
    split = unsatisfiable({"CPU": 3, "GPU": 1}, [{"CPU": 3.0}, {"CPU": 1.0, "GPU": 1.0}], 30)
    assert "no single node has all of it" in split
    assert "\n" not in gpu + cpu + split


def test_a_bad_resource_wait_is_bad_input(tmp_path, capsys, monkeypatch):
    from hpsearch.search.cli import main

    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))  # no cluster token to pick up

    spec = write_spec(tmp_path / "s.yaml", name="bad-wait")
    code = main(["run", str(spec), "--address", "127.0.0.1:1", "--resource-wait", "-3",
                 "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--resource-wait" in err, err
    assert not (tmp_path / "runs").exists()


def test_runs_of_trials_tune_never_saved_leave_the_search_on_resume(tmp_path, monkeypatch):
    """A driver killed between starting a trial and Tune's next save of the experiment
    leaves a run Tune does not know; the resume re-runs its configuration as a new
    trial. The old run must not count as a trial: deleted when it holds nothing,
    kept tagged `lost` (and out of the search's rows) when it logged metrics; runs the
    dead driver ended and trials Tune knows are untouched."""
    from hpsearch.results import mlflow_runs
    from hpsearch.results.status import trial_rows
    from hpsearch.results.storage import Storage

    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
    storage = Storage(tmp_path / "runs")
    storage.root.mkdir()
    uri = storage.tracking_uri()
    exp = mlflow_runs.ensure_experiment(uri, "lost-probe", None)
    parent = mlflow_runs.start_parent(uri, exp, run_name="search", params={}, tags={},
                                      spec_text="name: lost-probe\n")
    client = MlflowClient(uri)

    def child(tid: str, *, metric: bool, end: str | None = None) -> str:
        run = client.create_run(exp, tags={mlflow_runs.PARENT_TAG: parent, "trial_id": tid,
                                           "trial_index": str(len(tid))})
        if metric:
            client.log_metric(run.info.run_id, "val_accuracy", 0.5, step=1)
        if end:
            client.set_terminated(run.info.run_id, status=end)
        return run.info.run_id

    known_running = child("known", metric=True)
    empty = child("empty", metric=False)
    partial = child("partial", metric=True)
    ended = child("ended", metric=True, end="FINISHED")
    # (deleted, kept, the highest trial_index: "partial", 7)
    assert mlflow_runs.settle_lost_runs(uri, exp, parent, known={"known"}) == (1, 1, 7)
    assert client.get_run(empty).info.lifecycle_stage == "deleted"
    lost = client.get_run(partial)
    assert lost.info.status == "KILLED" and lost.data.tags["lost"] == "true"
    assert lost.data.tags["stop_reason"].startswith("lost: ")
    assert client.get_run(known_running).info.status == "RUNNING"
    assert client.get_run(ended).info.status == "FINISHED"
    storage.write_meta("lost-probe", {"name": "lost-probe", "tracking_uri": uri,
                                      "experiment_id": exp, "parent_run_id": parent,
                                      "spec": {"objective": {"metric": "val_accuracy",
                                                             "mode": "max"}}})
    _, rows = trial_rows("lost-probe", storage)
    assert sorted(r.trial_id for r in rows) == ["ended", "known"]
    # a resumed trial that ends with no result in the new session keeps its epochs
    from hpsearch.results.outbox import RunWriter

    RunWriter(uri, exp, parent).apply({"op": "end", "trial": "known", "status": "FINISHED",
                                       "reason": "completed", "epochs": None, "best": None,
                                       "best_metric": "best_val_accuracy", "time": 1})
    done = client.get_run(known_running)
    assert done.data.metrics["epochs_reached"] == 1 and done.data.tags["epochs_reached"] == "1"
    # the restored tracker numbers the re-run configuration after the lost trial's 7
    import pickle

    from hpsearch.search.tracking import MlflowTracker

    tracker = MlflowTracker(tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                            param_names=[], metric="val_accuracy", mode="max", max_epochs=2,
                            samples=9, echo=None)
    for tid in ("a", "b", "known"):
        tracker.number(tid)
    monkeypatch.setattr(MlflowTracker, "restored_index_floor", 8)
    restored = pickle.loads(pickle.dumps(tracker))
    MlflowTracker.live.remove(restored)
    assert [restored.number(t) for t in ("known", "rerun", "next")] == [3, 8, 9]


def test_tunes_upload_racing_its_own_save_is_not_shown_but_a_missing_file_at_the_root_is(
        tmp_path, caplog):
    """Tune's background upload of the driver's staging folder can list the temporary
    file of its own atomic save, renamed before the copy: pyarrow's FileNotFoundError,
    which Tune logs as an ERROR with a traceback though the next upload brings the file.
    While a search runs that record is dropped; a file missing anywhere else still shows."""
    import logging

    import pyarrow.fs

    from hpsearch.results.storage import QuietStorageNoise

    def pyarrow_error(path: Path) -> FileNotFoundError:
        try:
            pyarrow.fs.LocalFileSystem().open_input_stream(str(path))
        except FileNotFoundError as e:
            return e
        raise AssertionError(f"{path} exists")

    staging = tmp_path / "artifacts" / "exp" / "driver_artifacts"
    race = pyarrow_error(staging / ".1a27f4c3-tmp-searcher-state-2026.pkl")
    root = pyarrow_error(tmp_path / "runs" / "exp" / ".1a27f4c3-tmp-searcher-state-2026.pkl")
    tune_log = logging.getLogger("ray.tune.execution.experiment_state")

    def log(error: BaseException) -> None:  # as experiment_state.py's wait_for_sync logs it
        try:
            raise error
        except FileNotFoundError:
            tune_log.error("Saving experiment state to storage at 'x' failed with "
                           "exception: ", exc_info=True)

    caplog.set_level(logging.ERROR)
    with QuietStorageNoise():
        log(race)
        log(root)
    log(race)
    shown = [r.exc_info[1] for r in caplog.records if r.name == tune_log.name]
    assert shown == [root, race]  # the root's while the search ran, the race's outside it
