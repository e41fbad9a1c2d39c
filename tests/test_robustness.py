"""Runtime faults, on real parts (local Ray, real MLflow, real data): a trial out of
GPU memory, a search stopped by SIGTERM, a tracking server that goes away and
comes back (or never does), two searches at once on one SQLite store.

Waits poll for a condition with a generous bound and never sleep a fixed time
hoping the machine was fast enough: CI machines are busy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from results.status import trial_rows
from results.storage import Storage
from search.engine import run_search
from search.spec import parse_spec

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


def wait_for(condition, timeout: float, what: str, proc=None, every: float = 1.0):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` s
    (or as soon as ``proc`` exits, when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:g} s" +
                (f" (the process exited {proc.returncode})" if proc is not None and
                 proc.poll() is not None else ""))


def write_spec(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**DIGITS, **changes}))
    return path


def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=ROOT,
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
