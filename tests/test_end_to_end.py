"""End to end on real parts: local Ray, SQLite MLflow, real Fashion-MNIST.

Asserted through ``mlflow.MlflowClient`` (what a user sees), the Tune
experiment folder and the exported bundle. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from hpsearch.results.export import export_best, verify_manifest
from hpsearch.results.status import format_table, trial_rows
from hpsearch.search.engine import SearchExists, run_search
from hpsearch.search.spec import parse_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent

SEARCH = {
    "name": "e2e-fashion",
    "trainable": "resnet18",
    "data": {"source": "fashion-mnist", "per_class": 40, "val_fraction": 0.2,
             "test_fraction": 0.2},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    # one trial at a time: ASHA's decisions depend on the order results reach a rung,
    # and with two at once that order is the machine's timing (on a busy CI machine
    # all six once completed); in sequence the seeded search is the same every run
    "search": {"algorithm": "tpe", "samples": 6, "seed": 0, "concurrency": 1},
    "scheduler": {"name": "asha", "max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus_per_trial": 1},
    "space": {
        "optimizer": {"choice": ["sgd", "adam"]},
        # the top of this range diverges: ASHA has weak trials to stop
        "lr": {"loguniform": [1e-3, 1.0]},
        "momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}},
        "batch_size": {"choice": [32, 64]},
    },
    "fixed": {"base_width": 8, "stem": "imagenet"},
}


def children(meta) -> list:
    client = MlflowClient(meta["tracking_uri"])
    return client.search_runs([meta["experiment_id"]],
                              filter_string=f"tags.`mlflow.parentRunId` = '{meta['parent_run_id']}'")


def test_search_tracks_every_trial_and_exports_the_best(ray_session, storage, fashion_mnist_ready,
                                                        capsys, monkeypatch):
    spec = parse_spec(SEARCH, source="e2e")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_trials == 6 and outcome.num_errors == 0

    meta, rows = trial_rows(spec.name, storage)
    client = MlflowClient(meta["tracking_uri"])
    # one parent run, finished, holding the spec
    parents = client.search_runs([meta["experiment_id"]], filter_string="tags.`hpsearch.role` = 'search'")
    assert [p.info.run_id for p in parents] == [meta["parent_run_id"]]
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.params["search.samples"] == "6"
    assert "spec.yaml" in [a.path for a in client.list_artifacts(meta["parent_run_id"])]
    # >= 6 child runs, one per trial, none left RUNNING
    runs = children(meta)
    assert len(runs) == 6
    assert len({r.data.tags["trial_id"] for r in runs}) == 6
    assert all(r.info.status != "RUNNING" for r in runs)
    reasons = [r.data.tags["stop_reason"] for r in runs]
    assert set(reasons) <= {"completed", "asha_stopped"}
    assert "asha_stopped" in reasons and "completed" in reasons, reasons
    for r in runs:  # sampled params, per-epoch contract metrics
        assert {"optimizer", "lr", "batch_size"} <= set(r.data.params)
        assert ("momentum" in r.data.params) == (r.data.params["optimizer"] == "sgd")
        history = client.get_metric_history(r.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, int(r.data.tags["epochs_reached"]) + 1))
        assert {"train_loss", "val_loss", "epoch_seconds", "samples_per_second", "lr"} <= set(r.data.metrics)
    # ASHA-stopped trials stopped before max_epochs, completed ones reached it
    for r in runs:
        epochs = int(r.data.tags["epochs_reached"])
        assert epochs < 4 if r.data.tags["stop_reason"] == "asha_stopped" else epochs == 4

    table = format_table(meta, rows)
    assert "best trial (*)" in table and table.count("\n") >= 8

    # export: the best trial by the objective, test split evaluated once
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    bundle = export_best(spec.name, storage=storage)
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before, "export leaked its tracking URI"
    best = max(rows, key=lambda r: r.best)
    assert bundle.trial_id == best.trial_id
    assert sorted(p.name for p in bundle.path.iterdir()) == [
        "MANIFEST.sha256", "config.json", "metrics.json", "model.onnx", "model.pt2", "report",
        "weights.pt"]
    assert verify_manifest(bundle.path) == []
    metrics = json.loads((bundle.path / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] == pytest.approx(best.best)
    assert metrics["test"]["n"] == 80
    # `hpsearch status` without a name: this search's row among the storage root's searches
    from hpsearch.search.cli import main as cli

    capsys.readouterr()
    assert cli(["status", "--storage", str(storage.root)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(spec.name + " "))
    assert line.split()[1:2] == ["resnet18"] and " 6/6 " in line
    assert f"val_accuracy {best.best:.4f}" in line
    assert line.endswith(f"accuracy {metrics['test']['accuracy']:.4f} (n = 80)"), line

    # rebuild inputs and model from the bundle alone; reproduce the test accuracy
    from hpsearch.trainables import data as data_sources
    from hpsearch.trainables.loop import build_model, evaluate

    config = json.loads((bundle.path / "config.json").read_text())
    state = torch.load(bundle.path / "weights.pt", weights_only=True)
    model = build_model(config["hyperparameters"], config["data"])
    model.load_state_dict(state)
    x_test, y_test = data_sources.load(config["hyperparameters"]["data"]).test
    again = evaluate(model, x_test, y_test)
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    # the portable program predicts what weights.pt predicts
    program = torch.export.load(str(bundle.path / "model.pt2")).module()
    assert torch.equal(program(x_test[:16]).argmax(1), again["predictions"][:16])
    _onnx_matches(bundle.path, model, x_test[:16])
    # the export is recorded on the trial's run and the parent
    run = client.get_run(best.run_id)
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert client.get_run(meta["parent_run_id"]).data.tags["best_trial_id"] == best.trial_id

    # the report: best trial on the test split, the search, one summary; all in MLflow
    report = bundle.path / "report"
    trial_files = {p.name for p in (report / "best_trial").iterdir()}
    assert {"curves.png", "curves.svg", "confusion_matrix.png", "confusion_matrix.svg",
            "per_class.csv", "misclassified.png", "first_layer_filters.png",
            "model_summary.txt", "facts.json", "report.md"} <= trial_files
    assert {"trials.csv", "trials.md", "optuna_history.png", "optuna_parallel_coordinate.png",
            "asha_rungs.png", "val_curves_all_trials.png"} <= {p.name for p in (report / "search").iterdir()}
    assert f"**{metrics['test']['accuracy']:.4f}**" in (report / "best_trial" / "report.md").read_text()
    import csv

    with open(report / "best_trial" / "per_class.csv") as fh:
        per_class = list(csv.DictReader(fh))
    assert sum(int(r["support"]) for r in per_class) == 80 and len(per_class) == 10
    with open(report / "search" / "trials.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert "(test split)" in (report / "summary.md").read_text()
    trial_artifacts = {a.path for a in client.list_artifacts(best.run_id, "report")}
    assert "report/curves.png" in trial_artifacts and "report/confusion_matrix.svg" in trial_artifacts
    assert "report/summary.md" in {a.path for a in client.list_artifacts(meta["parent_run_id"], "report")}

    # registered in the Model Registry under the search name, tagged with test metrics
    version = client.search_model_versions(f"name = '{spec.name}'")[0]
    assert version.run_id == best.run_id
    assert float(version.tags["test_accuracy"]) == pytest.approx(metrics["test"]["accuracy"])

    # `hpsearch predict` on image files: the portable program agrees with weights.pt
    import numpy as np
    from PIL import Image

    from hpsearch.results.predict import predict

    mean, std = config["data"]["mean"][0], config["data"]["std"][0]
    images = []
    (storage.root / "images").mkdir()
    for i in range(6):
        pixels = ((x_test[i, 0].numpy() * std + mean) * 255).round().clip(0, 255).astype(np.uint8)
        images.append(storage.root / "images" / f"img{i}.png")
        Image.fromarray(pixels).save(images[-1])
    portable = predict(bundle.path, images)
    # a folder stands for its images, in name order (and in batches of predict.BATCH)
    from hpsearch.results import predict as predict_module

    monkeypatch.setattr(predict_module, "BATCH", 4)
    assert predict(bundle.path, [storage.root / "images"]) == portable
    reference = predict(bundle.path, images, use_weights=True)
    assert [r["class"] for r in portable] == [r["class"] for r in reference]
    assert [r["probability"] for r in portable] == pytest.approx([r["probability"] for r in reference], abs=1e-5)
    # PNG round trip of the pixels keeps the model's answers on these test images
    assert [r["index"] for r in portable] == again["predictions"][:6].tolist()

    # on demand, any trial: the validation split
    from hpsearch.search.cli import main

    other = next(r for r in rows if r.trial_id != best.trial_id)
    dest = storage.root / "other-report"
    assert main(["report", spec.name, "--trial", other.trial_id, "--storage", str(storage.root),
                 "--to", str(dest)]) == 0
    assert "(val split)" in (dest / "summary.md").read_text()
    assert (dest / "best_trial" / "confusion_matrix.png").is_file()

    # the same name again is refused before anything starts
    with pytest.raises(SearchExists, match="already exists"):
        run_search(spec, storage=storage, echo=lambda *_: None)


def test_nonfinite_trial_is_a_divergence_stop_and_the_search_goes_on(ray_session, storage):
    spec = parse_spec({
        "name": "nan-probe", "trainable": "plugins.nan_probe", "data": {"source": "digits"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"samples": 6, "seed": 3, "concurrency": 2},
        "scheduler": {"name": "fifo", "max_epochs": 2},
        "space": {"poison": {"choice": [True, False]}, "lr": {"loguniform": [1e-3, 1e-2]}},
    }, source="nan-probe")
    run_search(spec, storage=storage, echo=lambda *_: None)
    meta, _ = trial_rows(spec.name, storage)
    runs = children(meta)
    assert len(runs) == 6 and all(r.info.status != "RUNNING" for r in runs)
    poisoned = [r for r in runs if r.data.params["poison"] == "True"]
    clean = [r for r in runs if r.data.params["poison"] == "False"]
    assert poisoned and clean, "the seeded draw must produce both kinds"
    for r in poisoned:
        assert r.info.status == "FAILED", r.data.tags
        assert re.fullmatch(r"unhealthy: divergence \(loss nan at step \d+\)",
                            r.data.tags["stop_reason"]), r.data.tags
    for r in clean:
        assert r.info.status == "FINISHED" and r.data.tags["stop_reason"] == "completed"


def test_cover_tries_every_option_first(ray_session, storage):
    """`search: {cover: [kernel_size]}` (the Part II specs' option): a real search of
    options + 1 trials tries 3, 5 and 7 in its first three trials, TPE samples the
    learning rate there and proposes the last trial freely."""
    spec = parse_spec({
        "name": "cover", "trainable": "small_vgg", "data": {"source": "digits"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"samples": 4, "seed": 0, "concurrency": 2, "cover": ["kernel_size"]},
        "scheduler": {"name": "fifo", "max_epochs": 1},
        "space": {"kernel_size": {"choice": [3, 5, 7]}, "lr": {"loguniform": [1e-3, 1e-2]}},
        "fixed": {"blocks": 2, "width": 8, "batch_size": 64},
    }, source="cover")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_trials == 4 and outcome.num_errors == 0
    meta, rows = trial_rows(spec.name, storage)
    assert len(rows) == 4 and all(r.stop_reason == "completed" for r in rows)
    assert {r.params["kernel_size"] for r in rows[:3]} == {"3", "5", "7"}, \
        [r.params for r in rows]
    assert len({r.params["lr"] for r in rows}) == 4, "the learning rate is sampled in each"


def test_health_stops_reach_mlflow_and_optuna(ray_session, storage):
    """A diverging trial ends FAILED (Optuna FAIL), one stuck at chance is pruned in
    its first epoch (Optuna PRUNED), a healthy one completes; none is retried."""
    from optuna.trial import TrialState

    from hpsearch.search.searcher import SchedulerAwareOptunaSearch

    spec = parse_spec({
        "name": "health-probe", "trainable": "plugins.health_probe",
        "data": {"source": "digits"}, "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random", "samples": 6, "seed": 1, "concurrency": 2},
        "scheduler": {"name": "fifo", "max_epochs": 2},
        "failure": {"max_failures": 2}, "health": {"check_every": 10},
        "space": {"mode": {"choice": ["diverge", "chance", "healthy"]}},
        "fixed": {"optimizer": "sgd", "lr": 0.05, "batch_size": 8},
    }, source="health-probe")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_trials == 6 and outcome.num_errors == 0
    meta, _ = trial_rows(spec.name, storage)
    by_mode: dict[str, list] = {}
    for r in children(meta):
        by_mode.setdefault(r.data.params["mode"], []).append(r)
    assert set(by_mode) == {"diverge", "chance", "healthy"}, "the seeded draw has all three"
    for r in by_mode["diverge"]:
        assert r.info.status == "FAILED", r.data.tags
        assert r.data.tags["stop_reason"].startswith("unhealthy: divergence (loss ")
    for r in by_mode["chance"]:
        assert r.info.status == "FINISHED"
        assert r.data.tags["stop_reason"].startswith("unhealthy: accuracy at chance (")
        assert r.data.tags["epochs_reached"] == "1"
    for r in by_mode["healthy"]:
        assert r.data.tags["stop_reason"] == "completed"
    searcher = SchedulerAwareOptunaSearch(metric="val_accuracy", mode="max")
    searcher.restore_from_dir(str(outcome.experiment_dir))
    states = {t.params["mode"]: t.state for t in searcher._ot_study.trials}
    assert states == {"diverge": TrialState.FAIL, "chance": TrialState.PRUNED,
                      "healthy": TrialState.COMPLETE}
    assert len(searcher._ot_study.trials) == 6, "no trial was retried"


def test_seed_recheck_retrains_the_top_configurations_and_export_takes_the_best_mean(
        ray_session, storage, capsys):
    from hpsearch.results.status import print_status, recheck_summary

    spec = parse_spec({
        "name": "recheck", "trainable": "plugins.health_probe", "data": {"source": "digits"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"samples": 3, "seed": 5, "concurrency": 2, "recheck": {"top": 2, "seeds": 2}},
        "scheduler": {"name": "fifo", "max_epochs": 1},
        "space": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "fixed": {"optimizer": "sgd", "batch_size": 64},
    }, source="recheck")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_errors == 0
    meta, rows = trial_rows(spec.name, storage)
    _, rechecks = trial_rows(spec.name, storage, recheck=True)
    assert len(rows) == 3, "the search's own table holds its trials only"
    top2 = {r.trial_id for r in sorted(rows, key=lambda r: -r.best)[:2]}
    assert len(rechecks) == 4 and {r.recheck_of for r in rechecks} == top2
    for tid in top2:  # two new seeds per configuration, neither the search's
        assert sorted(r.seed for r in rechecks if r.recheck_of == tid) == ["1005", "2005"]
    runs = {r.info.run_id: r for r in children(meta)}
    for r in rechecks:
        assert r.state == "FINISHED" and r.stop_reason == "completed" and r.epochs == 1
        assert runs[r.run_id].data.params["lr"] == next(
            x.params["lr"] for x in rows if x.trial_id == r.recheck_of), "same configuration"
    checked = recheck_summary(meta, rows, rechecks)
    assert len(checked) == 2 and all(len(c.values) == 2 for c in checked)
    assert checked[0].mean >= checked[1].mean
    client = MlflowClient(meta["tracking_uri"])
    parent = client.get_run(meta["parent_run_id"])
    assert parent.data.tags["recheck_chosen"] == checked[0].trial_id
    table = client.download_artifacts(meta["parent_run_id"], "recheck.md")
    assert "re-check mean ± sd" in Path(table).read_text()
    capsys.readouterr()
    print_status(spec.name, storage)
    out = capsys.readouterr().out
    assert "seed re-check: the top 2 configurations" in out and " * " in out
    bundle = export_best(spec.name, storage=storage, register=False)
    winners = {checked[0].trial_id} | {r.trial_id for r in checked[0].runs}
    assert bundle.trial_id in winners, "the export comes from the best-mean configuration"
    summary = (bundle.path / "report" / "summary.md").read_text()
    assert f"Chosen by the seed re-check: the configuration of trial `{checked[0].trial_id}`" in summary


def test_vgg_deep_and_its_batch_norm_twin_side_by_side_in_the_export_report(ray_session,
                                                                              storage):
    """One search trains VGG-Deep with and without batch norm (tiny: width 1/8, 16 px
    digits, 2 epochs); the export's report draws the best of each kind's first vs
    deepest conv gradient norms, and says their ratios, as logged in MLflow."""
    from hpsearch.results.report import BATCH_NORM_FIGURE, batch_norm_twins

    spec = parse_spec({
        "name": "vgg-deep-twins", "trainable": "vgg_deep",
        "data": {"source": "digits", "per_class": 20, "image_size": 16},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random", "samples": 2, "seed": 0, "concurrency": 2},
        "scheduler": {"name": "fifo", "max_epochs": 2}, "health": False,
        "space": {"batch_norm": {"choice": [False, True]}},
        "fixed": {"width_mult": 0.125, "fc_width": 32, "optimizer": "sgd", "momentum": 0.0,
                  "lr": 0.05, "batch_size": 16, "track_grad_norms": True, "grad_norm_every": 2},
    }, source="vgg-deep-twins")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_trials == 2 and outcome.num_errors == 0
    meta, rows = trial_rows(spec.name, storage)
    kinds = {r.params["batch_norm"]: r for r in rows}
    assert set(kinds) == {"False", "True"}, "the seeded draw must produce both kinds"
    bundle = export_best(spec.name, storage=storage, register=False)
    report = bundle.path / "report"
    assert {f"{BATCH_NORM_FIGURE}.png", f"{BATCH_NORM_FIGURE}.svg"} <= \
        {p.name for p in (report / "search").iterdir()}
    summary = (report / "summary.md").read_text()
    assert f"![without and with batch norm](search/{BATCH_NORM_FIGURE}.png)" in summary
    assert "(best_trial/grad_norms_subset.png)" in summary
    client = MlflowClient(meta["tracking_uri"])
    for bn, kind in (("False", "without batch norm"), ("True", "with batch norm")):
        row = kinds[bn]
        ratio = client.get_metric_history(row.run_id, "grad_norm_ratio_first_last")
        last = max(ratio, key=lambda m: m.step)
        assert last.step == 2
        assert (f"{kind} (trial `{row.trial_id}`, val_accuracy {row.best:.4f}) the first conv "
                f"layer's gradient norm is {last.value:.3g} times the deepest's at its last "
                f"epoch (epoch 2)") in summary, summary
    # trials of one kind only: a sentence that says so, and no empty figure
    alone = storage.root / "alone"
    alone.mkdir()
    files, sentence = batch_norm_twins(alone, meta=meta, rows=[kinds["True"]])
    assert files == [] and not any(alone.iterdir())
    assert "`batch_norm` is searched, but every finished trial that logged them drew " \
        "`batch_norm: true` (1 trial(s))" in sentence
    fixed = {**meta, "spec": {**meta["spec"], "space": {},
                              "fixed": {**meta["spec"]["fixed"], "batch_norm": False}}}
    files, sentence = batch_norm_twins(alone, meta=fixed, rows=[kinds["False"]])
    assert files == [] and not any(alone.iterdir())
    assert "ran with `batch_norm: false` (1 trial(s)); search `batch_norm: {choice: " \
        "[false, true]}`" in sentence


def test_ctrl_c_leaves_no_run_running(tmp_path, fashion_mnist_ready):
    doc = {**SEARCH, "name": "interrupted",
           "search": {**SEARCH["search"], "samples": 4, "concurrency": 2},
           "scheduler": {"name": "fifo", "max_epochs": 50}}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(doc))
    storage = tmp_path / "runs"
    from conftest import interrupt_cli

    code, log = interrupt_cli(["run", str(spec_file), "-v", "--storage", str(storage)],
                              after="epoch 2/50")
    assert "epoch 2/50" in log, log[-3000:]
    from hpsearch.results.storage import Storage

    meta, _ = trial_rows("interrupted", Storage(storage))
    client = MlflowClient(meta["tracking_uri"])
    assert client.get_run(meta["parent_run_id"]).info.status != "RUNNING"
    runs = children(meta)
    assert runs, log[-3000:]
    assert all(r.info.status != "RUNNING" for r in runs), [(r.info.status, r.data.tags) for r in runs]
    # stopped, not broken: KILLED / interrupted, and the exit code says SIGINT
    assert code == 130, log[-3000:]
    assert all((r.info.status, r.data.tags.get("stop_reason")) == ("KILLED", "interrupted")
               for r in runs), [(r.info.status, r.data.tags) for r in runs]


def test_smoke_run_and_export_of_every_shipped_spec(ray_session, storage, fashion_mnist_ready):
    """`--smoke` proves each spec in spaces/ runs end to end (2 trials, 1 epoch),
    and its best trial exports to a bundle whose program loads without our code.
    The four small-VGG specs run in tests/test_batch.py, as one command."""
    from hpsearch.search.spec import load_spec

    timings = {}
    for path in sorted((ROOT / "spaces").glob("*.yaml")):
        if path.name.startswith("small_vgg_"):
            continue
        spec = load_spec(path, smoke=True)
        t0 = time.time()
        outcome = run_search(spec, storage=storage, echo=lambda *_: None)
        timings[path.name] = time.time() - t0
        assert outcome.num_trials == 2 and outcome.num_errors == 0, path
        meta, rows = trial_rows(spec.name, storage)
        assert len(rows) == 2 and all(r.stop_reason == "completed" for r in rows), path
        # the Model Registry takes a second torch.export trace: checked for an image model in
        # test_search_tracks_every_trial_and_exports_the_best, here for the sequence models
        # (the text RNNs register their trace-friendly twin)
        sequence = spec.trainable in ("forecaster", "sentiment", "sentiment_lstm", "text_baseline")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bundle = export_best(spec.name, storage=storage, register=sequence)
        # torch.export's developer notes (an RNN's flat weights, deprecations) stay out of
        # the user's terminal
        noise = [str(w.message)[:120] for w in caught
                 if "during export" in str(w.message) or "_check_is_size" in str(w.message)]
        assert noise == [], (path, noise)
        assert verify_manifest(bundle.path) == [] and (bundle.path / "model.pt2").is_file()
        if sequence:
            client = MlflowClient(meta["tracking_uri"])
            assert client.search_model_versions(f"name = '{spec.name}'")[0].run_id in \
                {r.run_id for r in rows}
        if spec.trainable == "vgg_deep":  # Part II: per-layer gradient norms reach MLflow
            run = MlflowClient(meta["tracking_uri"]).get_run(rows[0].run_id)
            names = sorted(k for k in run.data.metrics if k.startswith("grad_norm/conv"))
            assert names == [f"grad_norm/conv{i:02d}" for i in range(1, 18)]
            assert run.data.metrics["grad_norm_ratio_first_last"] > 0
        if sequence:
            _check_sequence_bundle(spec, bundle, meta, rows)
    print("\n".join(f"{k}: smoke run {v:.1f} s" for k, v in timings.items()))
    deep_report = storage.export_dir("vgg-deep-fashion-smoke") / "report" / "best_trial"
    assert (deep_report / "grad_norms_all.png").is_file()
    assert (deep_report / "grad_norms_subset.svg").is_file()
    assert "gradient-norm ratio" in (deep_report / "report.md").read_text()
    # the batch-norm twin: a figure when the smoke trials drew both kinds, else a sentence
    deep_summary = (deep_report.parent / "summary.md").read_text()
    assert "## Gradient norms" in deep_summary
    assert ("search/grad_norms_batch_norm.png" in deep_summary) != \
        ("No batch-norm comparison" in deep_summary), deep_summary

    # the course's comparison: VGG-16 vs ResNet-18 vs VGG-Deep, best trials side by side
    from hpsearch.results.compare import compare

    names = ["vgg16-fashion-smoke", "resnet18-fashion-smoke", "vgg-deep-fashion-smoke"]
    files = compare(names, storage=storage, dest=storage.root / "cmp")
    assert {"comparison.png", "comparison.svg", "comparison.csv", "comparison.md"} == set(files)
    import csv

    with open(storage.root / "cmp" / "comparison.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["search"] for r in table] == names
    assert all(r["split"] == "test" and float(r["params"]) > 0 and r["f1"] for r in table)

    # Part II's figure and numbers, as the GPU campaign writes them (labelled a rehearsal)
    sys.path.insert(0, str(ROOT))
    from benchmarks.model_quality import write_part_ii

    part2 = storage.root / "part-ii"
    facts = write_part_ii(storage, part2, smoke=True)
    assert {"part2_gradients.png", "part2_all_layers.png", "part2.json", "part2.md"} <= \
        {p.name for p in part2.iterdir()}
    assert (part2 / "compare" / "comparison.png").is_file()
    assert set(facts["compared"]) == set(names)
    for kind in facts["kinds"].values():  # one epoch per smoke trial: n = 1
        assert kind["conv_layers"] == 17 and kind["ratio_first_last"]["n"] == 1
    assert "CPU smoke rehearsal" in (part2 / "part2.md").read_text()


def _onnx_matches(path, model, x):
    """model.onnx (onnxruntime, no torch) computes what weights.pt computes."""
    import onnxruntime as ort

    assert json.loads((path / "config.json").read_text())["onnx"] == "model.onnx"
    session = ort.InferenceSession(str(path / "model.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model.eval()(x).float().numpy()
    assert out.shape == ref.shape and abs(out - ref).max() < 1e-3


def _check_sequence_bundle(spec, bundle, meta, rows):
    """Parts III/IV: task metrics reach MLflow, the report has the task's plots, and
    `predict` through the portable program equals predict through weights.pt."""
    from hpsearch.results.predict import predict

    metrics = json.loads((bundle.path / "metrics.json").read_text())
    report = bundle.path / "report" / "best_trial"
    run = MlflowClient(meta["tracking_uri"]).get_run(rows[0].run_id)
    if spec.trainable == "forecaster":
        assert {"val_rmse", "val_mae", "val_r2", "val_naive_rmse", "train_rmse"} <= set(run.data.metrics)
        assert {"r2", "rmse", "mae", "naive_r2", "skill"} <= set(metrics["test"])
        for f in ("predicted_vs_actual.svg", "residuals.png", "error_by_horizon.png", "curves.svg"):
            assert (report / f).is_file(), f
        info = json.loads((bundle.path / "config.json").read_text())["data"]
        window = bundle.path.parent / f"{spec.name}-window.csv"
        if spec.data["source"] == "seattle-weather":
            from vega_datasets import local_data

            local_data.seattle_weather().tail(60).to_csv(window, index=False)
        else:
            from hpsearch.trainables.data import modeldata

            df = modeldata.read("Chicago").tail(60).copy()
            df["date"] = pd.to_datetime(df["date"], unit="D").dt.strftime("%Y-%m-%d")
            df.to_csv(window, index=False)
        a = predict(bundle.path, [window])
        b = predict(bundle.path, [window], use_weights=True)
        assert len(a) == info["horizon"] and a[0]["target"] == info["target"]
        assert a[0]["forecast"] == pytest.approx(b[0]["forecast"], rel=1e-4, abs=1e-4)
        _onnx_matches(bundle.path, _bundle_model(bundle.path), _bundle_test_inputs(bundle.path))
        return
    assert {"val_f1", "val_precision", "val_recall", "val_f1_macro"} <= set(run.data.metrics)
    assert {"accuracy", "f1", "precision", "recall"} <= set(metrics["test"])
    assert (report / "misclassified.md").is_file() and (report / "confusion_matrix.png").is_file()
    texts = ["Great coffee, I would buy it again!", "stale, bland and overpriced",
             "meh", "The dog loves these treats " * 40]
    a = predict(bundle.path, texts)
    b = predict(bundle.path, texts, use_weights=True)
    assert [r["class"] for r in a] == [r["class"] for r in b]
    assert [r["probability"] for r in a] == pytest.approx([r["probability"] for r in b], abs=1e-4)
    from hpsearch.results import predict as predict_module  # texts in batches: same answers

    saved, predict_module.BATCH = predict_module.BATCH, 3
    try:
        batched = predict(bundle.path, texts)
    finally:
        predict_module.BATCH = saved
    assert [r["probability"] for r in batched] == pytest.approx([r["probability"] for r in a],
                                                                abs=1e-5)
    _onnx_matches(bundle.path, _bundle_model(bundle.path), _bundle_test_inputs(bundle.path))


def _bundle_model(path):
    from hpsearch.trainables.loop import build_model

    config = json.loads((path / "config.json").read_text())
    model = build_model(config["hyperparameters"], config["data"])
    model.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
    return model.eval()


def _bundle_test_inputs(path):
    from hpsearch.trainables.loop import load_data

    config = json.loads((path / "config.json").read_text())
    return load_data(config["hyperparameters"]).test[0][:8]


def test_driver_sigkill_then_resume_finishes_the_search(tmp_path):
    """The driver dies by SIGKILL mid-search; `hpsearch resume` finishes it: finished
    trials are not re-run, the trial count is the spec's, the TPE study keeps its
    history, one MLflow run per trial and none left RUNNING."""
    spec = {**SEARCH, "name": "resume-probe", "data": {"source": "digits", "val_fraction": 0.2,
                                                        "test_fraction": 0.2},
            "search": {"algorithm": "tpe", "samples": 6, "seed": 0, "concurrency": 2},
            "scheduler": {"name": "fifo", "max_epochs": 6, "grace_period": 1,
                          "reduction_factor": 2},
            "space": {"lr": {"loguniform": [1e-3, 3e-2]}, "batch_size": {"choice": [32, 64]}},
            "fixed": {"stem": "cifar", "base_width": 8, "optimizer": "adam"}}
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "run", str(path), "--storage",
                             str(storage)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from hpsearch.results.storage import Storage

    st = Storage(storage)
    deadline = time.time() + 240
    finished_before = {}
    try:
        while time.time() < deadline:
            time.sleep(2)
            try:
                meta, rows = trial_rows("resume-probe", st)
            except Exception:
                continue
            done = [r for r in rows if r.state == "FINISHED"]
            if len(done) >= 2 and len(rows) < 6:
                finished_before = {r.trial_id: r.epochs for r in done}
                break
        assert finished_before, "the search never reached two finished trials"
        time.sleep(4)  # let Tune snapshot the experiment state with them
    finally:
        # the driver (the local Ray's daemons, in sessions of their own, die with it)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    r = subprocess.run([sys.executable, "-m", "hpsearch", "resume", "resume-probe", "--storage",
                        str(storage)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    meta, rows = trial_rows("resume-probe", st)
    assert len(rows) == 6 and len({x.trial_id for x in rows}) == 6  # one run per trial
    assert all(x.state != "RUNNING" for x in rows)
    client = MlflowClient(meta["tracking_uri"])
    for row in rows:
        if row.trial_id in finished_before:  # not re-run: its history is what it was
            steps = [m.step for m in client.get_metric_history(row.run_id, "val_accuracy")]
            assert steps == sorted(set(steps)) and len(steps) == finished_before[row.trial_id]
    assert client.get_run(meta["parent_run_id"]).info.status == "FINISHED"
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    searcher.restore_from_dir(str(st.search_dir("resume-probe")))
    assert len(searcher._ot_study.trials) == 6  # TPE's study spans the crash
