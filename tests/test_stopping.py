"""A search ends cleanly however it is stopped, on real parts (the `hpsearch` command
in its own process, local Ray, SQLite MLflow): `timeout` expiring, a signal to its
whole process group, Ray's GCS killed under it, its time budget, a SIGKILLed driver
seen by `status`, a disk that fills up. Each checks the runs' final states and
stop_reasons through MlflowClient, the exit code and the one closing line.

The trials train a linear model on digits whose steps sleep a fixed pace, so the
test acts mid-trial however busy the machine is; waits poll a condition with a
generous bound and never sleep a fixed time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import wait_for
from mlflow.tracking import MlflowClient

from hpsearch.results.heartbeat import DRIVER_TAG, HEARTBEAT_TAG, PERIOD_TAG, gone_since
from hpsearch.results.status import trial_rows
from hpsearch.results.storage import Storage
from hpsearch.search.cli import main

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent

PACED = {  # ~1 s per epoch at pace 0.05 (17 steps), whatever the machine's load
    "trainable": "plugins.ballast_probe", "data": {"source": "digits"},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {"algorithm": "random", "samples": 2, "seed": 0, "concurrency": 2},
    "scheduler": {"name": "fifo", "max_epochs": 200},
    "space": {"lr": {"loguniform": [1e-3, 1e-1]}},
    "fixed": {"optimizer": "sgd", "batch_size": 64, "pace": 0.05},
}


def spec_file(tmp_path: Path, name: str, **changes) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**PACED, "name": name, **changes}))
    return path


def start(*args, prefix=(), env=None) -> subprocess.Popen:
    """`hpsearch ARGS` in a session of its own (its process group is its pid)."""
    return subprocess.Popen([*prefix, sys.executable, "-m", "hpsearch", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """(exit code, output, seconds it took to exit)."""
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"still running {timeout:g} s after it was stopped: {out[-3000:]}")
    return proc.returncode, out, time.monotonic() - t0


def runs(name: str, storage: Path) -> tuple[dict, MlflowClient, list]:
    meta, _ = trial_rows(name, Storage(storage))
    client = MlflowClient(meta["tracking_uri"])
    children = client.search_runs(
        [meta["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{meta['parent_run_id']}'")
    children = [r for r in children if r.data.tags.get("lost") != "true"]  # not its trials
    return meta, client, sorted(children, key=lambda r: int(r.data.tags["trial_index"]))


def logging_epochs(name: str, storage: Path, n: int = 2, epochs: int = 1):
    """A condition: ``n`` trials' runs have logged ``epochs`` epochs."""
    def condition():
        meta, client, children = runs(name, storage)
        return len([r for r in children if r.info.status == "RUNNING" and len(
            client.get_metric_history(r.info.run_id, "val_accuracy")) >= epochs]) >= n
    return condition


def ended(children, status: str, reason: str) -> bool:
    return all((r.info.status, r.data.tags.get("stop_reason")) == (status, reason)
               for r in children)


def closing(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------- signals to the group


@pytest.mark.parametrize("how", ["timeout -s HUP", "kill -TERM -- -PGID"])
def test_a_signal_to_the_whole_group_ends_the_search_like_ctrl_c(tmp_path, how):
    """`timeout` expiring and `kill -- -PGID` signal the whole process group, Ray's local
    daemons included on Ray's own terms: the daemons start in a session of their own,
    so the search stops as Ctrl-C stops it, within seconds (it used to wait 60 s for a
    dead GCS, then Ray's core aborted, leaving every run RUNNING)."""
    storage, name = tmp_path / "runs", "grouped"
    via_timeout = how.startswith("timeout")
    prefix = [shutil.which("timeout"), "-s", "HUP", "900"] if via_timeout else []
    proc = start("run", str(spec_file(tmp_path, name)), "--storage", str(storage),
                 prefix=prefix)
    try:
        wait_for(logging_epochs(name, storage), 300, "two trials logging epochs", proc)
        if via_timeout:  # timeout's own expiry: SIGALRM is its timer's signal
            os.kill(proc.pid, signal.SIGALRM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        code, out, seconds = finish(proc, 120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    signum = signal.SIGHUP if via_timeout else signal.SIGTERM
    assert code == (124 if via_timeout else 128 + signum), out[-3000:]
    assert seconds < 60, f"{seconds:.0f} s to stop: {out[-3000:]}"
    [line] = closing(out, "hpsearch: interrupted")
    assert line.startswith(f"hpsearch: interrupted ({signum.name}): ") and \
        f"`hpsearch resume {name}` finishes it" in line, line
    assert "Failed to connect to GCS" not in out and "Stop signal received" not in out, out
    meta, client, children = runs(name, storage)
    assert client.get_run(meta["parent_run_id"]).info.status == "KILLED"
    assert len(children) == 2 and ended(children, "KILLED", "interrupted"), \
        [(r.info.status, r.data.tags) for r in children]


# ---------------------------------------------------------------- Ray's daemons dying


def test_the_local_gcs_killed_ends_the_search_at_once_and_resume_continues_it(tmp_path):
    """`kill -9` of the local GCS mid-search: exit 1 within seconds with one line naming
    it, every run ended (the finished trial kept as it was, the running one FAILED
    `error: ray cluster lost`); `resume` on a new Ray continues the search."""
    storage, name = tmp_path / "runs", "gcs-lost"
    spec = spec_file(tmp_path, name, search={**PACED["search"], "concurrency": 1},
                     scheduler={"name": "fifo", "max_epochs": 8})
    proc = start("run", str(spec), "--storage", str(storage))
    try:
        def one_finished_one_training():
            meta, client, children = runs(name, storage)
            return [r.info.status for r in children] == ["FINISHED", "RUNNING"] and \
                client.get_metric_history(children[1].info.run_id, "val_accuracy")
        wait_for(one_finished_one_training, 300, "a finished trial and one training", proc)
        [gcs] = [p for p in psutil.Process(proc.pid).children() if p.name() == "gcs_server"]
        gcs.kill()
        code, out, seconds = finish(proc, 120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 1 and seconds < 45, (code, seconds, out[-3000:])
    [line] = closing(out, "hpsearch: error:")
    assert line.startswith(f"hpsearch: error: Ray's GCS server (pid {gcs.pid}) died (killed by "
                           f"SIGKILL) during search '{name}': its runs ended (error: ray "
                           "cluster lost)"), line
    assert "Failed to connect to GCS" not in out, out[-3000:]
    meta, client, children = runs(name, storage)
    assert client.get_run(meta["parent_run_id"]).info.status == "FAILED"
    done, lost = children
    assert (done.info.status, done.data.tags["stop_reason"]) == ("FINISHED", "completed")
    assert (lost.info.status, lost.data.tags["stop_reason"]) == ("FAILED", "error: ray cluster lost")
    epochs_done = len(client.get_metric_history(done.info.run_id, "val_accuracy"))

    r = subprocess.run([sys.executable, "-m", "hpsearch", "resume", name, "--storage",
                        str(storage)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    meta, client, children = runs(name, storage)
    assert client.get_run(meta["parent_run_id"]).info.status == "FINISHED"
    assert len(children) == 2 and ended(children, "FINISHED", "completed"), \
        [(c.info.status, c.data.tags) for c in children]
    assert children[0].info.run_id == done.info.run_id and \
        len(client.get_metric_history(done.info.run_id, "val_accuracy")) == epochs_done, \
        "the finished trial was kept, not run again"


# ---------------------------------------------------------------- the time budget


def test_the_time_budget_ends_the_search_normally_and_resume_continues_it(
        ray_session, tmp_path, capsys):
    """--time-budget: the running trials end KILLED `time_budget`, the search ends as
    usual (exit 0, the table, the best trial, the export), and `resume` continues the
    same trials (their runs go on from the epochs they had)."""
    storage, name = tmp_path / "runs", "budget"
    spec = spec_file(tmp_path, name)
    code = main(["run", str(spec), "--storage", str(storage), "--time-budget", "30s",
                 "--export"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "time budget 30s)" in out and "time budget spent" in out
    assert "best trial (*): " in out and ", time_budget" in out and "exported trial " in out
    meta, client, children = runs(name, storage)
    assert client.get_run(meta["parent_run_id"]).info.status == "FINISHED"
    assert len(children) == 2 and ended(children, "KILLED", "time_budget"), \
        [(r.info.status, r.data.tags) for r in children]
    before = {r.info.run_id: int(r.data.tags["epochs_reached"]) for r in children}
    assert any(before.values()), "a trial reported its objective within the budget"

    assert main(["resume", name, "--storage", str(storage)]) == 0
    meta, client, children = runs(name, storage)
    after = {r.info.run_id: int(r.data.tags["epochs_reached"]) for r in children}
    assert after.keys() == before.keys(), "the same trials' runs, none started anew"
    assert all(after[k] > before[k] for k in before), (before, after)
    assert all(r.info.status != "RUNNING" for r in children)
    for run_id in after:  # each epoch once: the resumed trial went on from its checkpoint
        steps = [m.step for m in client.get_metric_history(run_id, "val_accuracy")]
        assert steps == list(range(1, after[run_id] + 1)), steps


# ---------------------------------------------------------------- a SIGKILLed driver


def test_a_sigkilled_drivers_runs_show_as_lost(tmp_path):
    """SIGKILL ends nothing: the runs stay RUNNING in MLflow, and `status` tells them
    from live ones: `lost (driver gone since <the last heartbeat>)`. (`resume` settles
    them: test_end_to_end's SIGKILL test.)"""
    storage, name = tmp_path / "runs", "killed"
    proc = start("run", str(spec_file(tmp_path, name)), "--storage", str(storage),
                 env={"HPSEARCH_HEARTBEAT": "1"})
    try:
        wait_for(logging_epochs(name, storage), 300, "two trials logging epochs", proc)
        meta, client, _ = runs(name, storage)
        first = float(client.get_run(meta["parent_run_id"]).data.tags[HEARTBEAT_TAG])
        wait_for(lambda: float(client.get_run(meta["parent_run_id"]).data.tags[HEARTBEAT_TAG])
                 > first, 60, "a second heartbeat", proc)
        status = run_status(name, storage)
        assert "lost" not in status and status.count(" running ") == 2, status
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver (Ray's daemons die with it)
        proc.communicate()
    killed = time.time()
    status = run_status(name, storage)
    lost = re.findall(r" RUNNING +lost \(driver gone since ([-0-9]+ [:0-9]+)\)", status)
    assert len(lost) == 2, status
    since = time.mktime(time.strptime(lost[0], "%Y-%m-%d %H:%M:%S"))
    assert killed - 10 < since <= killed, (lost, killed)
    assert f"`hpsearch resume {name}` continues the search and settles them" in status
    overview = run_status(None, storage)
    assert re.search(rf"^{name} .* 2 lost ", overview, re.M), overview


def run_status(name: str | None, storage: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "hpsearch", "status", *([name] if name else []),
                        "--storage", str(storage)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_driver_gone_elsewhere_is_known_by_its_heartbeat(tmp_path):
    """A driver on another machine cannot be looked up: its runs count as lost once its
    heartbeat is three periods old (a driver on this machine: once its process is gone,
    see test_end_to_end's SIGKILL test)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("hb"))
    now = time.time()
    for tag, value in ((DRIVER_TAG, "another-host:4242:99"), (PERIOD_TAG, "30"),
                       (HEARTBEAT_TAG, f"{now - 20:.0f}")):
        client.set_tag(run.info.run_id, tag, value)
    assert gone_since(client.get_run(run.info.run_id)) is None, "20 s: a heartbeat late"
    client.set_tag(run.info.run_id, HEARTBEAT_TAG, f"{now - 100:.0f}")
    assert gone_since(client.get_run(run.info.run_id)) == pytest.approx(now - 100, abs=1)
    client.set_terminated(run.info.run_id, "KILLED")
    assert gone_since(client.get_run(run.info.run_id)) is None, "an ended run is not lost"


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs mounted for the test (the tests run as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_up_ends_the_search_with_every_run_ended(ray_session, small_disk,
                                                                  tmp_path, capsys):
    """No room for the checkpoints: refused before anything is written (exit 2). Room,
    then the disk fills mid-search: the trial whose checkpoint did not fit ends FAILED
    `error: disk full (<its folder>)`, the finished one keeps its record, none is left
    RUNNING (MLflow's store is on the same full disk), exit 1 with one line naming the
    storage root and its free space."""
    storage, name = small_disk / "runs", "full"
    heavy = spec_file(tmp_path, "heavy", fixed={**PACED["fixed"], "ballast_mb": 64})
    assert main(["run", str(heavy), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert f"storage root {storage} (--storage) has " in err and "but the search's checkpoints take up " \
        "to 260.0 MiB (2 trials x 2 kept x 64.0 MiB" in err, err
    assert not (storage / "heavy").exists(), "refused before anything was written"

    # the first trial quick, the second slow (search.cover tries pace 0, then 0.05)
    spec = spec_file(tmp_path, name, search={**PACED["search"], "concurrency": 1,
                                             "cover": ["pace"]},
                     scheduler={"name": "fifo", "max_epochs": 60},
                     space={"pace": {"choice": [0.0, 0.05]}, "lr": PACED["space"]["lr"]},
                     fixed={"optimizer": "sgd", "batch_size": 64, "ballast_mb": 1})
    import threading

    filled = threading.Event()

    def fill_when_the_second_trial_trains():  # another process filling the disk
        wait_for(lambda: len(runs(name, storage)[2]) == 2 and logging_epochs(
            name, storage, n=1)(), 300, "the second trial training")
        with open(small_disk / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(os.urandom(2**20))
                    fh.flush()
            except OSError:
                filled.set()

    filler = threading.Thread(target=fill_when_the_second_trial_trains, daemon=True)
    filler.start()
    code = main(["run", str(spec), "--storage", str(storage)])
    out, err = capsys.readouterr()
    filler.join(timeout=60)
    assert filled.is_set() and code == 1, out[-2000:] + err[-2000:]
    [line] = closing(err, "hpsearch: error:")
    assert line.startswith(f"hpsearch: error: the storage root {storage} is full (") and \
        f"`hpsearch resume {name}` continues it" in line, line
    meta, client, children = runs(name, storage)
    assert client.get_run(meta["parent_run_id"]).info.status == "FAILED"
    done, full = children
    assert (done.info.status, done.data.tags["stop_reason"]) == ("FINISHED", "completed")
    assert len(client.get_metric_history(done.info.run_id, "val_accuracy")) == 60
    assert full.info.status == "FAILED" and full.data.tags["stop_reason"] == \
        f"error: disk full ({storage / name / ('trial_' + full.data.tags['trial_id'])})", \
        full.data.tags
