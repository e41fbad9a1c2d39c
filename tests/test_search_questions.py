"""The questions users ask of a search, through the real engine (Ray, Optuna, MLflow)
on scikit-learn's digits: accuracy against size as a Pareto front with MO-ASHA and a
constraint, more trials for a finished search, a warm start from an earlier one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import hpsearch
from hpsearch.results.front import front
from hpsearch.results.objective import dominates, objectives_of
from hpsearch.results.status import trial_rows
from hpsearch.search.cli import main
from hpsearch.search.history import study_of

pytestmark = pytest.mark.e2e
WIDE = 400_000  # num_params of the width-16 network is above it, widths 4 and 8 below

SPEC = {
    "name": "mo-digits",
    "trainable": "resnet18",
    "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "objective": [{"metric": "val_accuracy", "mode": "max"},
                  {"metric": "num_params", "mode": "min"}],
    "constraints": {"num_params": {"max": WIDE}},
    # cover: the first three trials take each width, so one trial is always infeasible
    "search": {"algorithm": "tpe", "samples": 6, "seed": 0, "concurrency": 2,
               "cover": ["base_width"]},
    "scheduler": {"name": "asha", "max_epochs": 3, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus_per_trial": 1},
    "space": {"lr": {"loguniform": [1e-3, 3e-2]}, "base_width": {"choice": [4, 8, 16]},
              "optimizer": {"choice": ["sgd", "adam"]}},
    "fixed": {"stem": "cifar"},
}


@pytest.fixture(scope="module")
def searched(ray_session, tmp_path_factory):
    """One two-objective search with a constraint, exported (shared by these tests)."""
    storage = tmp_path_factory.mktemp("questions") / "runs"
    search = hpsearch.run(SPEC, storage=storage, export=True, progress=False)
    return storage, search


def test_the_front_is_non_dominated_and_mo_asha_stopped_only_low_ranks(searched, capsys):
    storage, search = searched
    meta, rows = trial_rows("mo-digits", hpsearch.Search("mo-digits", storage=storage).storage)
    objectives = objectives_of(meta["spec"])
    sign = [o.sign for o in objectives]
    point = lambda r: tuple(s * r.values[o.metric] for s, o in zip(sign, objectives))  # noqa: E731
    feasible = [r for r in rows if r.metrics.get("num_params", 1e12) <= WIDE
                and all(r.values.get(o.metric) is not None for o in objectives)]
    on_front = front(meta, rows)
    assert on_front and {r.trial_id for r in on_front} <= {r.trial_id for r in feasible}
    for r in on_front:  # nobody feasible beats a front trial on both objectives
        assert not any(dominates(point(o), point(r)) for o in feasible)
    for r in feasible:  # and every other feasible trial is beaten by one on the front
        if r not in on_front:
            assert any(dominates(point(f), point(r)) for f in on_front)
    # every trial reported what it costs: size and measured latency, from its first result
    assert all(r.metrics.get("infer_ms", 0) > 0 and r.metrics.get("infer_ms_batched", 0) > 0
               for r in rows)
    # MO-ASHA: each stop is a trial ranked below the rung's top 1/reduction_factor, and a
    # stopped trial that no other point dominated was crowded out of a front larger than
    # the quota (the ε-net's spread)
    decisions = [json.loads(line) for line in
                 (storage / "mo-digits" / "moasha.jsonl").read_text().splitlines()]
    stops = [d for d in decisions if d["stop"]]
    assert stops, decisions
    for d in stops:
        assert d["position"] >= d["continue"]
    stopped = {r.trial_id for r in rows if r.stop_reason == "asha_stopped"}
    assert stopped == {d["trial_id"] for d in stops}
    # status marks the front, the parent run holds it as a table
    assert main(["status", "mo-digits", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "Pareto front (*)" in out and "infeasible" in out
    client = MlflowClient(meta["tracking_uri"])
    table = json.loads(Path(client.download_artifacts(meta["parent_run_id"], "front.json"))
                       .read_text())
    assert sorted(row[1] for row in table["data"]) == sorted(r.trial_id for r in on_front)
    # the report: the front and the hypervolume over time
    report = storage / "exports" / "mo-digits" / "report" / "search"
    assert {"front.png", "hypervolume.png", "front.md"} <= {p.name for p in report.iterdir()}


def test_the_constraint_filters_the_export_and_the_pick_says_why(searched):
    storage, search = searched
    metrics = json.loads((storage / "exports" / "mo-digits" / "metrics.json").read_text())
    meta, rows = trial_rows("mo-digits", search.storage)
    exported = next(r for r in rows if r.trial_id == json.loads(
        (storage / "exports" / "mo-digits" / "config.json").read_text())["trial_id"])
    assert exported.metrics["num_params"] <= WIDE  # the width-16 trial is never exported
    best_feasible = max((r for r in front(meta, rows)), key=lambda r: r.values["val_accuracy"])
    assert exported.trial_id == best_feasible.trial_id
    assert "Chosen from the Pareto front" in metrics["selection"]
    # a rule picks another point: the smallest network of the front
    bundle = search.export(pick="num_params", to=storage / "small")
    smallest = min(front(meta, rows), key=lambda r: r.values["num_params"])
    assert bundle.trial_id == smallest.trial_id
    with pytest.raises(hpsearch.SpecError, match="no trial on the front"):
        search.export(where="num_params<=10", to=storage / "none")


def test_more_trials_for_a_finished_search(searched):
    storage, search = searched
    before = search.trials
    more = hpsearch.resume("mo-digits", samples=8, storage=storage, progress=False)
    after = more.trials
    assert list(after["number"]) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert after.iloc[:6][["trial_id", "stop_reason"]].equals(before[["trial_id", "stop_reason"]])
    meta, rows = trial_rows("mo-digits", more.storage)
    client = MlflowClient(meta["tracking_uri"])
    assert client.get_run(meta["parent_run_id"]).info.status == "FINISHED"
    assert {r.data.tags.get("mlflow.parentRunId") for r in client.search_runs(
        [meta["experiment_id"]], filter_string="tags.trial_id != ''")} == {meta["parent_run_id"]}
    # the new sampler's study began with every earlier trial, as TPE saw them
    study = study_of(storage / "mo-digits" / "extend-1")
    old = study.trials[:6]
    # (as a multiset: Optuna numbers trials as Tune asks for them, hpsearch as they
    # start, and under load the second of two concurrent trials can start first)
    assert sorted(t.params["base_width"] for t in old) == sorted(before["base_width"])
    assert sum(t.state.name == "PRUNED" for t in old) == sum(before["stop_reason"] == "asha_stopped")
    assert len(study.trials) == 8
    # so TPE modelled from the first new trial on: more finished trials than its start-up
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in old) >= more.spec.startup_trials


def test_a_warm_start_reuses_the_trials_that_fit_its_space(searched, capsys):
    storage, _ = searched
    meta, rows = trial_rows("mo-digits", hpsearch.Search("mo-digits", storage=storage).storage)
    narrowed = {**SPEC, "name": "warm-digits",
                "search": {**SPEC["search"], "samples": 2, "cover": [],
                           "warm_start": "mo-digits", "warm_start_rerun": 2},
                "space": {**SPEC["space"], "base_width": {"choice": [4, 8]}}}
    fits = sum(r.state == "FINISHED" and r.params["base_width"] in ("4", "8")
               and all(r.values.get(m) is not None for m in ("val_accuracy", "num_params"))
               for r in rows)
    finished = sum(r.state == "FINISHED" for r in rows)
    warm = hpsearch.run(narrowed, storage=storage, progress=False)
    out = capsys.readouterr().out
    assert f"warm start from 'mo-digits': {fits} of its {finished} finished trial(s) reused" in out
    assert "left out: " in out and "with `base_width` outside this space" in out
    parent = MlflowClient(warm.meta["tracking_uri"]).get_run(warm.meta["parent_run_id"])
    assert parent.data.tags["warm_start"] == "mo-digits"
    assert parent.data.tags["warm_start.reused"] == str(fits)
    study = study_of(storage / "warm-digits")
    reused = [t for t in study.trials if t.user_attrs.get("warm_start") == "mo-digits"]
    assert len(reused) == fits
    # as their own study saw them: what ASHA stopped is PRUNED, what completed COMPLETE
    by_id = {r.trial_id: r for r in rows}
    assert all((t.state.name == "PRUNED") == (by_id[t.user_attrs["trial_id"]].stop_reason
                                             == "asha_stopped") for t in reused)
    assert len(warm.trials) == 2  # its own trials only
    # its first trials train the earlier best configurations again (2 asked for, or as
    # many as completed): earlier completed trials that fit, one of them on their front
    goals = objectives_of(SPEC)
    fitting = [r for r in rows if r.stop_reason == "completed" and r.params["base_width"]
               in ("4", "8")]  # widths 4 and 8 keep the constraint: all feasible

    def config(r):
        return (round(float(r.params["lr"]), 12), r.params["base_width"], r.params["optimizer"])

    def point(r):
        return [g.sign * r.values[g.metric] for g in goals]

    k = min(2, len({config(r) for r in fitting}))
    assert out.count(f"its best {k} train again first") == (k > 0)
    assert parent.data.tags["warm_start.rerun"] == str(k)
    _, new = trial_rows("warm-digits", warm.storage)
    again = [r for r in fitting if config(r) in {config(n) for n in new}]
    assert len({config(r) for r in again}) == k, (new, fitting)
    assert k == 0 or any(not any(dominates(point(o), point(r)) for o in fitting) for r in again)
    # more trials for it: the extension starts from its own study (the reused trials and
    # the re-runs in it), and neither warm-starts nor re-runs again
    more = hpsearch.resume("warm-digits", samples=3, storage=storage, progress=False)
    assert len(more.trials) == 3 and list(more.trials["number"]) == [1, 2, 3]
    assert "train again first" not in capsys.readouterr().out
    assert len([t for t in study_of(storage / "warm-digits" / "extend-1").trials
                if t.user_attrs.get("warm_start") == "mo-digits"]) == fits
    with pytest.raises(hpsearch.SpecError, match="`search.warm_start`: no search named 'nope'"):
        hpsearch.run({**narrowed, "name": "cold", "search": {**narrowed["search"],
                                                             "warm_start": "nope"}},
                     storage=storage, progress=False)
