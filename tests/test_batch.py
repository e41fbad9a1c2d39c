"""Several specs in one command (`hpsearch run A.yaml B.yaml ...`): everything is
validated before the first search starts; the searches share one Ray session;
one exit code. The four Part II investigations are the end-to-end case."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hpsearch.results.export import verify_manifest
from hpsearch.results.status import trial_rows
from hpsearch.results.storage import Storage
from hpsearch.search.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIGITS = str(ROOT / "spaces" / "cluster_digits.yaml")  # nothing to fetch
PART_II = [str(ROOT / "spaces" / f"small_vgg_{q}.yaml")
           for q in ("kernel", "1x1", "pool", "activation")]


def _spec_file(tmp_path: Path, name: str, **changes) -> str:
    doc = yaml.safe_load(Path(DIGITS).read_text())
    doc.update(name=name, **changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize("case", ["bad-key", "same-name", "name-taken", "name-flag"])
def test_bad_second_spec_stops_everything_before_the_first_starts(case, tmp_path, capsys):
    storage = tmp_path / "runs"
    first = _spec_file(tmp_path, "first")
    extra: list[str] = []
    if case == "bad-key":
        second = _spec_file(tmp_path, "second", fixed={"stem": "cifar", "base_widht": 8})
        expected = f"{second}: `fixed.base_widht`: trainable 'resnet18' does not take"
    elif case == "same-name":
        second = _spec_file(tmp_path, "first-again")
        doc = yaml.safe_load(Path(second).read_text())
        Path(second).write_text(yaml.safe_dump({**doc, "name": "first"}))
        expected = f"{second}: `name`: 'first' is also the name of {first}"
    elif case == "name-taken":
        second = _spec_file(tmp_path, "second")
        (storage / "second").mkdir(parents=True)
        (storage / "second" / "search.json").write_text("{}")
        expected = f"{second}: `name`: a search named 'second' already exists"
    else:
        second = _spec_file(tmp_path, "second")
        extra = ["--name", "both"]
        expected = "--name: names one search, but 2 spec files were given"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(["run", first, second, "--storage", str(storage), "--export", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and expected in err, err
    # nothing started, nothing written: no MLflow store, no search folder for the first spec
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_gpu_memory_refusal_of_the_second_spec_stops_both_after_ray_starts(
        ray_session, tmp_path, capsys, monkeypatch):
    """The GPU memory checks run in a thread beside Ray's start-up; a refusal of any
    spec still comes before the first search writes anything: exit 2, one line, no
    MLflow store, no search folder. (The check itself measures on a CUDA GPU only, so
    here its result is given: what run does with it is what is tested.)"""
    import ray

    from hpsearch.search import preflight

    checked = []

    def check(spec, log=None):
        checked.append((spec.name, ray.is_initialized()))
        if spec.name == "second":
            raise preflight.SpecError(f"{spec.source}: the largest trial needs 9.0 GiB of GPU "
                                      "memory; 0.25 of the GPU gives 2.0 GiB (raise "
                                      "gpus_per_trial)")
        return None

    monkeypatch.setattr(preflight, "check_plan", check)
    storage = tmp_path / "runs"
    first, second = _spec_file(tmp_path, "first"), _spec_file(tmp_path, "second")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(["run", first, second, "--storage", str(storage)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "needs 9.0 GiB" in err, err
    assert [name for name, _ in checked] == ["first", "second"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_failed_search_does_not_stop_the_next_and_sets_the_exit_code(ray_session, tmp_path,
                                                                       capsys):
    """Every trial of the first search diverges: it fails, the next one still runs,
    the table says which, and the exit code is 1. No MLflow run is left RUNNING."""
    storage = tmp_path / "runs"
    poisoned = {"name": "poisoned", "trainable": "plugins.nan_probe", "data": {"source": "digits"},
                "objective": {"metric": "val_accuracy", "mode": "max"},
                "search": {"samples": 2, "seed": 0, "concurrency": 2},
                "scheduler": {"name": "fifo", "max_epochs": 1},
                "space": {"lr": {"loguniform": [1e-3, 1e-2]}}, "fixed": {"poison": True}}
    bad = tmp_path / "poisoned.yaml"
    bad.write_text(yaml.safe_dump(poisoned))
    clean = tmp_path / "clean.yaml"
    clean.write_text(yaml.safe_dump({**poisoned, "name": "clean", "fixed": {"poison": False}}))
    code = main(["run", str(bad), str(clean), "--smoke", "--storage", str(storage)])
    out = capsys.readouterr().out
    assert code == 1, out[-3000:]
    table = out[out.index("1 of 2 searches ok:"):]
    rows = {line.split()[2]: line for line in table.splitlines()[3:5]}
    assert " ok " in rows["clean-smoke"], table
    assert "failed: no trial reported val_accuracy" in rows["poisoned-smoke"], table
    # the output is not a terminal: each search's progress line ends as a plain line with its
    # final counts; trials' end lines are there, epoch lines only with -v
    # (the epoch budget is live: two trials that ended without an epoch leave none)
    assert "[1/2] search 'poisoned-smoke': 2/2 trials done | 0/0 epochs | " \
           "best val_accuracy - |" in out, out[-3000:]
    final = re.search(r"\[2/2\] search 'clean-smoke': 2/2 trials done \| 2/2 epochs \(100%\) \| "
                      r"best val_accuracy ([0-9.]+) \|", out)
    assert final, out[-3000:]
    best = max(r.best for r in trial_rows("clean-smoke", Storage(storage))[1])
    assert float(final.group(1)) == pytest.approx(best, abs=1e-3)
    assert "completed after 1 epoch(s)" in out and "epoch 1/1" not in out, out[-3000:]
    for name in ("poisoned-smoke", "clean-smoke"):
        meta, runs = trial_rows(name, Storage(storage))
        assert len(runs) == 2 and all(r.state != "RUNNING" for r in runs)
        parent = MlflowClient(meta["tracking_uri"]).get_run(meta["parent_run_id"])
        # no trial of the poisoned search scored: its parent run failed
        assert parent.info.status == ("FAILED" if name == "poisoned-smoke" else "FINISHED")


def test_part_ii_investigations_in_one_command(tmp_path, fashion_mnist_ready):
    """The four small-VGG investigations, --smoke, in one `hpsearch run` with --export:
    one Ray session (every trial on one node), four searches in MLflow, four
    bundles, one summary table, exit 0; then `compare` takes the same spec list."""
    storage = tmp_path / "runs"
    exe = Path(sys.executable).parent / "hpsearch"
    run = subprocess.run([str(exe), "run", *PART_II, "--smoke", "--export", "--storage",
                          str(storage)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    # Ray's INFO lines and its token notice stay out of the progress output (one Ray
    # session for the four: every trial's node_id is the same, checked below)
    assert "Started a local Ray instance" not in log, log[-4000:]
    assert "Token authentication is enabled" not in log, log[-4000:]
    for i, path in enumerate(PART_II, 1):
        assert f"[{i}/4] {path}: search" in log
    table = log[log.index("4 of 4 searches ok:"):]
    names = [f"small-vgg-{q}-smoke" for q in ("kernel", "1x1", "pool", "activation")]
    st = Storage(storage)
    nodes = set()
    for name in names:
        assert name in table
        meta, rows = trial_rows(name, st)
        client = MlflowClient(meta["tracking_uri"])
        assert client.get_run(meta["parent_run_id"]).info.status == "FINISHED"
        assert len(rows) == 2 and all(r.state == "FINISHED" for r in rows), name
        for r in rows:
            run_data = client.get_run(r.run_id).data
            assert run_data.metrics["num_params"] > 0
            nodes.add(run_data.tags["node_id"])
        bundle = st.export_dir(name)
        assert verify_manifest(bundle) == []
        test = json.loads((bundle / "metrics.json").read_text())["test"]
        assert f"accuracy {test['accuracy']:.4f}" in table
    assert len(nodes) == 1, f"the searches ran on {len(nodes)} Ray nodes: one cluster each?"
    experiments = {e.name for e in MlflowClient(meta["tracking_uri"]).search_experiments()}
    assert set(names) <= experiments

    cmp = subprocess.run([str(exe), "compare", *PART_II, "--smoke", "--storage", str(storage)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    assert all(name in cmp.stdout for name in names)


def test_submit_checks_every_spec_before_uploading(tmp_path, capsys):
    """`submit A B -- FLAGS` validates both specs with the run flags here: a bad second
    spec is exit 2 before the Jobs API is even looked for (none runs at this address)."""
    first = _spec_file(tmp_path, "first")
    second = _spec_file(tmp_path, "second", scheduler={"name": "asha", "max_epochs": 2,
                                                         "grace_period": 3})
    code = main(["submit", first, second, "--address", "http://127.0.0.1:9", "--", "--samples", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{second}: `scheduler.grace_period`" in err, err


def test_submit_leaves_an_absolute_file_path_missing_here_to_the_cluster(tmp_path, capsys):
    """Pretrained weights may exist only on the cluster's nodes: `submit` does not refuse
    an absolute `weights:` path that is not on this machine (the job checks it there,
    before its search starts), so it goes on to its upload checks. `run` here, and a
    relative path at submit, still refuse a missing file."""
    import yaml

    doc = yaml.safe_load((ROOT / "spaces" / "transfer.yaml").read_text())
    doc["fixed"]["weights"] = "/nodes-only/shufflenet.pth"
    doc["space"]["backbone"] = {"choice": ["shufflenet_v2"]}
    spec = tmp_path / "transfer.yaml"
    spec.write_text(yaml.safe_dump(doc))
    code = main(["submit", str(spec), "--address", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    # past the spec checks: stopped by the next one, the spec's place (it must travel)
    assert code == 2 and f"{spec} is outside the project folder" in err, err
    code = main(["run", str(spec), "--dry-run", "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "`fixed.weights`: file '/nodes-only/shufflenet.pth' does not exist" in err
    doc["fixed"]["weights"] = "weights/shufflenet.pth"
    spec.write_text(yaml.safe_dump(doc))
    code = main(["submit", str(spec), "--address", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "`fixed.weights`: file 'weights/shufflenet.pth' does not exist" in err


def test_ctrl_c_stops_the_whole_run(tmp_path):
    """Ctrl-C during the first of two searches ends the run (Tune's handler would end
    only that search and go on to the next): exit 130, the table says which search
    was interrupted and which never started, no MLflow run is left RUNNING."""
    from conftest import interrupt_cli

    storage = tmp_path / "runs"
    long = {"scheduler": {"name": "fifo", "max_epochs": 50},
            "search": {"algorithm": "tpe", "samples": 2, "seed": 0, "concurrency": 2}}
    first = _spec_file(tmp_path, "first", **long)
    second = _spec_file(tmp_path, "second")
    code, log = interrupt_cli(["run", first, second, "-v", "--storage", str(storage)],
                             after="epoch 2/50")
    assert code == 130, log[-3000:]
    table = log[log.index("0 of 2 searches ok:"):]
    assert " interrupted " in table and " not started " in table, table
    meta, rows = trial_rows("first", Storage(storage))
    client = MlflowClient(meta["tracking_uri"])
    assert client.get_run(meta["parent_run_id"]).info.status == "KILLED"
    assert rows and all(r.state != "RUNNING" for r in rows)
    assert not storage.joinpath("second").exists()
