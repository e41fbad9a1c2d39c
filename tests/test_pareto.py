"""Several objectives, in pieces: the ranking rule (non-dominated sorting, ε-net), the
hypervolume, MO-ASHA's promotion decisions, the front pick's rules and the spec's
refusals. The search through Ray, Optuna and MLflow: tests/test_search_questions.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from hpsearch.errors import SpecError
from hpsearch.results.front import parse_where
from hpsearch.results.objective import (
    Objective,
    dominates,
    fronts,
    hypervolume,
    pareto_mask,
    rank_order,
    signed,
)
from hpsearch.search.moasha import MultiObjectiveASHA
from hpsearch.search.spec import parse_spec


def test_one_rule_for_better_and_finite():
    acc, loss = Objective("val_accuracy", "max"), Objective("val_loss", "min")
    assert acc.better(0.9, 0.8) and not acc.better(0.8, 0.9) and acc.better(0.1, float("nan"))
    assert loss.better(0.1, 0.2) and not loss.better(float("nan"), 0.2)
    assert acc.best([0.5, float("nan"), 0.7, None]) == 0.7
    assert loss.best([0.5, float("inf"), 0.7]) == 0.5
    assert signed([0.9, 1000], [acc, Objective("num_params", "min")]) == (0.9, -1000.0)
    assert signed([0.9, float("nan")], [acc, acc]) is None


def test_non_dominated_sorting_and_eps_net():
    # signed points (larger is better on both axes)
    points = [(0.9, -5.0), (0.8, -1.0), (0.85, -3.0), (0.7, -6.0), (0.8, -2.0), (0.9, -5.0)]
    assert dominates(points[0], points[3]) and not dominates(points[0], points[5])
    layers = fronts(points)
    assert sorted(layers[0]) == [0, 1, 2, 5]  # nobody beats these on both axes
    assert sorted(layers[1]) == [4] and sorted(layers[2]) == [3]
    order = rank_order(points)
    assert set(order[:4]) == {0, 1, 2, 5} and order[0] == 0  # the first objective's best
    assert order[1] == 1  # then the farthest point of the front from it
    assert pareto_mask([points[0], None, points[3]]) == [True, False, False]


def test_hypervolume_of_a_staircase():
    # minimize both in Optuna's terms = maximize the negated values here
    front = [(-1.0, -3.0), (-2.0, -2.0), (-3.0, -1.0)]
    assert hypervolume(front, (-4.0, -4.0)) == pytest.approx(6.0)
    assert hypervolume(front + [(-3.5, -3.5)], (-4.0, -4.0)) == pytest.approx(6.0)
    assert hypervolume([(-5.0, -5.0)], (-4.0, -4.0)) == 0.0


def _result(epoch: int, acc: float, params: float) -> dict:
    return {"training_iteration": epoch, "val_accuracy": acc, "num_params": params}


def test_mo_asha_promotes_the_top_third_by_non_dominated_rank(tmp_path):
    log = tmp_path / "moasha.jsonl"
    sched = MultiObjectiveASHA(objectives=[Objective("val_accuracy", "max"),
                                           Objective("num_params", "min")],
                               max_t=9, grace_period=1, reduction_factor=3, log_path=str(log))
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(6)]
    for t in trials:
        sched.on_trial_add(None, t)
    decide = lambda i, acc, params: sched.on_trial_result(  # noqa: E731
        None, trials[i], _result(1, acc, params))
    assert decide(0, 0.50, 100) == "CONTINUE"   # first at the rung
    assert decide(1, 0.90, 50) == "CONTINUE"    # dominates the first: ranks first of 2
    assert decide(2, 0.40, 200) == "STOP"       # dominated by both
    assert decide(3, 0.95, 500) == "CONTINUE"   # on the front, best accuracy: top of 4
    assert decide(4, 0.30, 300) == "STOP"       # dominated
    # 6 points, 2 continue: a front point close to a better-placed one (the ε-net takes
    # the far end of the front first) is not among the top two, and stops
    assert decide(5, 0.92, 480) == "STOP"
    stops = [d for d in sched.decisions if d["stop"]]
    assert len(stops) == 3 and all(d["position"] >= d["continue"] for d in stops)
    assert [d["dominated"] for d in stops] == [True, True, False]
    assert len(log.read_text().splitlines()) == 5  # one line per ranked decision
    # a trial without every objective (a NaN) is not ranked, and at max_t every trial stops
    assert sched.on_trial_result(None, trials[0], _result(2, float("nan"), 100)) == "CONTINUE"
    assert sched.on_trial_result(None, trials[1], _result(9, 0.9, 50)) == "STOP"


def test_where_rules_are_parsed_or_refused():
    assert parse_where("num_params<=1e6, infer_ms < 2") == [("num_params", "<=", 1e6),
                                                             ("infer_ms", "<", 2.0)]
    with pytest.raises(SpecError, match="is not METRIC<=NUMBER"):
        parse_where("num_params is small")


BASE = {"name": "mo", "trainable": "resnet18", "data": {"source": "digits"},
        "objective": [{"metric": "val_accuracy", "mode": "max"},
                      {"metric": "num_params", "mode": "min"}],
        "space": {"lr": {"loguniform": [1e-3, 1e-1]}}}


def test_a_spec_of_several_objectives_is_parsed():
    spec = parse_spec({**BASE, "constraints": {"infer_ms": {"max": 2.5}}}, source="mo.yaml")
    assert spec.multi_objective and spec.metrics == ["val_accuracy", "num_params"]
    assert spec.metric == "val_accuracy" and spec.modes == ["max", "min"]
    assert spec.constraints == (("infer_ms", None, 2.5),)
    single = parse_spec({**BASE, "objective": {"metric": "val_loss", "mode": "min"}})
    assert not single.multi_objective and single.metrics == ["val_loss"]


@pytest.mark.parametrize("change, message", [
    ({"objective": [{"metric": "val_acc", "mode": "max"}]},
     "`objective[0].metric`: 'val_acc' is never reported by trainable 'resnet18'"),
    ({"objective": [{"metric": "val_accuracy", "mode": "max"},
                    {"metric": "val_loss", "mode": "max"}]},
     "`objective[1].mode`: val_loss is better when lower"),
    ({"objective": [{"metric": "val_accuracy", "mode": "max"},
                    {"metric": "val_accuracy", "mode": "max"}]},
     "`objective[1].metric`: 'val_accuracy' is already an objective"),
    ({"objective": []}, "`objective`: is an empty list"),
    ({"constraints": {"latency": {"max": 2}}},
     "`constraints.latency`: 'latency' is never reported by trainable 'resnet18'"),
    ({"constraints": {"num_params": {"min": 5, "max": 1}}},
     "`constraints.num_params`: `min <= max` must hold"),
    ({"constraints": {"num_params": {"below": 5}}}, "`constraints.num_params.below`: unknown key"),
    ({"search": {"recheck": {"top": 2, "seeds": 2}}},
     "`search.recheck`: ranks configurations by the mean of one objective"),
    ({"search": {"warm_start_rerun": 1}},
     "`search.warm_start_rerun`: re-runs the best configurations of a warm start; set "
     "`search.warm_start` too"),
    ({"search": {"warm_start": "earlier", "samples": 4, "warm_start_rerun": 5}},
     "`search.warm_start_rerun`: 5 re-runs do not fit in 4 trials; lower it to 4"),
    ({"search": {"warm_start": "earlier", "warm_start_rerun": -1}},
     "`search.warm_start_rerun`: must be"),
])
def test_bad_objectives_and_constraints_are_one_line(change, message):
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **change}, source="mo.yaml")
    assert str(caught.value).startswith("mo.yaml: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cost_metrics_are_objectives_only_where_the_shared_loop_measures_them():
    doc = yaml.safe_load(open("spaces/text_baselines.yaml"))
    doc["objective"] = [{"metric": "val_accuracy", "mode": "max"},
                        {"metric": "infer_ms", "mode": "min"}]
    with pytest.raises(SpecError, match="'infer_ms' is never reported by trainable"):
        parse_spec(doc, source="t.yaml")


def test_a_warm_start_trains_its_best_configurations_again_first():
    """Feasible before infeasible, then the front (several objectives) or the best value
    (one); completed trials only, each configuration once; none by default."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpsearch.search.history import best_configs

    dist = {"lr": FloatDistribution(1e-4, 1.0, log=True)}

    def made(lr, values, state=TrialState.COMPLETE, broken=0.0):
        return create_trial(params={"lr": lr}, distributions=dist, state=state,
                            values=values if state == TrialState.COMPLETE else None,
                            system_attrs={"constraints:num_params.max": broken})

    trials = [made(1e-3, [0.90, 5e5]), made(2e-3, [0.95, 9e5], broken=1.0),
              made(3e-3, [0.80, 1e5]), made(4e-3, None, TrialState.PRUNED),
              made(1e-3, [0.91, 5e5]), made(5e-3, [0.85, 2e5])]
    one = (("val_accuracy", "max"),)
    # one objective: the infeasible 0.95 after every feasible trial, the repeat once
    assert best_configs([made(t.params["lr"], t.values[:1] if t.values else None, t.state,
                              t.system_attrs["constraints:num_params.max"])
                         for t in trials], one, 3) == [{"lr": 1e-3}, {"lr": 5e-3},
                                                        {"lr": 3e-3}]
    two = (("val_accuracy", "max"), ("num_params", "min"))
    # two: the feasible front (0.91/5e5, 0.85/2e5, 0.80/1e5) from its best accuracy on
    front = best_configs(trials, two, 4)
    assert front[0] == {"lr": 1e-3} and {"lr": 2e-3} not in front[:3]
    assert {p["lr"] for p in front[:3]} == {1e-3, 3e-3, 5e-3} and front[3] == {"lr": 2e-3}
    assert best_configs(trials, two, 0) == []
    assert parse_spec({**BASE, "search": {"warm_start": "earlier"}}).warm_start_rerun == 0
    assert parse_spec({**BASE, "search": {"warm_start": "earlier", "warm_start_rerun": 3}},
                      smoke=True).warm_start_rerun == 2  # two smoke trials hold two
    assert parse_spec(BASE).warm_start_rerun == 0
