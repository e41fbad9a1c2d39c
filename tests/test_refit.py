"""Refit (search/refit.py): the chosen configuration trained again on the training and
validation splits, through Ray where the trials ran, then evaluated once on test.
Real Ray, SQLite MLflow, real data; nothing mocked."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

import hpsearch
from hpsearch.results.export import best_checkpoint_state
from hpsearch.results.status import status_text, trial_rows
from hpsearch.search.cli import main
from hpsearch.search.engine import run_search
from hpsearch.search.spec import load_spec

pytestmark = pytest.mark.e2e

DIGITS = {
    "name": "refit-digits", "trainable": "small_vgg", "data": {"source": "digits"},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {"algorithm": "tpe", "samples": 2, "seed": 3, "concurrency": 2},
    "scheduler": {"name": "fifo", "max_epochs": 2},
    "space": {"lr": {"loguniform": [1e-2, 1e-1]}},
    # plateau: the refit replays the trial's learning rate of each epoch
    "fixed": {"width": 8, "batch_size": 32, "lr_scheduler": "plateau", "lr_patience": 0},
    "export": {"refit": True},
}


def _children(meta) -> list:
    return MlflowClient(meta["tracking_uri"]).search_runs(
        [meta["experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{meta['parent_run_id']}'")


def _weights_differ(bundle, storage, name: str, trial_id: str, metric: str, mode: str) -> bool:
    trial = best_checkpoint_state(storage.search_dir(name), trial_id, metric, mode)["model"]
    exported = torch.load(bundle / "weights.pt", weights_only=True)
    assert exported.keys() == trial.keys()
    return any(not torch.equal(exported[k], trial[k]) for k in exported)


def test_the_refit_trains_on_train_and_val_and_is_the_one_model_tested(ray_session, storage):
    search = hpsearch.run(DIGITS, storage=storage.root, export=True, progress=False)
    name = search.name
    meta, rows = trial_rows(name, storage)
    _, refits = trial_rows(name, storage, refit=True)
    assert len(rows) == 2 and len(refits) == 1, "the refit is no trial of the search"
    refit = refits[0]
    bundle = storage.export_dir(name)
    m = json.loads((bundle / "metrics.json").read_text())
    chosen = next(r for r in rows if r.trial_id == m["val"]["trial_id"])
    assert chosen.best == max(r.best for r in rows) and refit.refit_of == chosen.trial_id
    # trained on train + val, for the epoch at which the chosen trial peaked
    sizes = json.loads((bundle / "config.json").read_text())["data"]["sizes"]
    assert m["model"] == "refit" and m["refit"]["fit_on"] == "train+val"
    assert m["refit"]["n"] == m["train"]["n"] == sizes["train"] + sizes["val"]
    assert m["refit"]["epochs"] == m["epoch"] == m["val"]["epoch"] == refit.epochs
    assert m["refit"]["epochs_from"] == "the chosen trial's peak"
    # the chosen trial's validation score beside the refit model's test score
    assert m["val"]["accuracy"] == pytest.approx(chosen.best) and 0 < m["test"]["accuracy"] <= 1
    assert _weights_differ(bundle, storage, name, chosen.trial_id, "val_accuracy", "max")

    # the test split scored once, on the refit's run only
    client = MlflowClient(meta["tracking_uri"])
    tested = [r.info.run_id for r in _children(meta) if "test_accuracy" in r.data.metrics]
    assert tested == [refit.run_id]
    assert len(client.get_metric_history(refit.run_id, "test_accuracy")) == 1
    run = client.get_run(refit.run_id)
    tags = run.data.tags
    assert (tags["refit"], tags["refit_of"], tags["fit_on"], tags["epochs"]) == \
        ("true", chosen.trial_id, "train+val", str(refit.epochs))
    assert tags["seed"] != str(DIGITS["search"]["seed"]), "the refit has a seed of its own"
    assert run.info.run_name.startswith("refit-") and run.info.status == "FINISHED"
    assert "train_accuracy" in run.data.metrics
    assert not [k for k in run.data.metrics if k.startswith("val_")], "no validation left"
    lrs = [[x.value for x in sorted(client.get_metric_history(r, "lr"), key=lambda x: x.step)]
           for r in (refit.run_id, chosen.run_id)]
    assert lrs[0] == lrs[1], "a plateau trial's learning rates, replayed"
    parent = client.get_run(meta["parent_run_id"]).data.tags
    assert (parent["exported_model"], parent["refit_run_id"], parent["best_trial_id"]) == \
        ("refit", refit.run_id, chosen.trial_id)
    version = client.search_model_versions(f"name = '{name}'")[0]
    assert version.run_id == refit.run_id and version.tags["model"] == "refit"

    summary = (bundle / "report" / "summary.md").read_text()
    assert f"**Refit**: the exported model is trial `{chosen.trial_id}`'s configuration" in summary
    assert f"refit [{refit.trial_id}] of trial {chosen.trial_id}: train+val" in \
        status_text(name, storage)

    # epochs without a refit is bad input, in the API and on the command line
    with pytest.raises(hpsearch.SpecError, match="sets the refit's epochs"):
        search.export(refit=False, epochs=3)
    assert main(["export", name, "--no-refit", "--epochs", "3",
                 "--storage", str(storage.root)]) == 2
    with pytest.raises(hpsearch.SpecError, match="refit=: the refit trains the model the export"):
        hpsearch.run(DIGITS, storage=storage.root, refit=True)


@pytest.mark.parametrize("stem,epochs", [("forecast_seattle", 2), ("text_baselines", None)])
def test_a_regression_and_a_text_search_refit_from_the_command_line(stem, epochs, ray_session,
                                                                    storage, fashion_mnist_ready):
    spec = load_spec(f"spaces/{stem}.yaml", smoke=True)
    run_search(spec, storage=storage, echo=lambda *_: None)
    flags = ["--epochs", str(epochs)] if epochs else []
    assert main(["export", spec.name, "--refit", *flags, "--storage", str(storage.root)]) == 0
    bundle = storage.export_dir(spec.name)
    m = json.loads((bundle / "metrics.json").read_text())
    assert m["model"] == "refit" and m["refit"]["fit_on"] == "train+val"
    assert m["refit"]["epochs"] == (epochs or 1)
    assert m["refit"]["epochs_from"] == ("given" if epochs else "the chosen trial's peak")
    assert m["task"] == ("regression" if stem.startswith("forecast") else "classification")
    assert _weights_differ(bundle, storage, spec.name, m["val"]["trial_id"], spec.metric,
                           spec.mode)
    meta, _ = trial_rows(spec.name, storage)
    tested = [r.data.tags.get("refit") for r in _children(meta)
              if any(k.startswith("test_") for k in r.data.metrics)]
    assert tested == ["true"]
