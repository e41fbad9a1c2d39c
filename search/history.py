"""What a new study knows before its first suggestion: an extended search's own past,
or a warm start's reused trials.

**Extending** a search (``hpsearch resume NAME --samples N``) reads the study its
sampler left in the Tune experiment (Ray saves the Optuna searcher, study included,
as ``searcher-state-*.pkl``): every earlier trial as TPE saw it, PRUNED ones as
PRUNED, with their intermediate values and constraint values. Ray Tune cannot raise
``num_samples`` of a finished experiment (ray-project/ray#20886), so the new trials
run as a second Tune experiment inside the search's folder (``extend-1/``), their
MLflow runs under the same parent, numbered after the old ones.

A **warm start** (``search: {warm_start: OTHER}``) reads another search's finished
trials from MLflow (the system of record: a search of another storage root or an
MLflow experiment of the same store works too) and keeps those whose parameters lie
in this spec's space: each sampled value within its range or among its options, each
parameter this space samples present (unless its ``when`` does not hold), each value
this spec fixes equal to the one the trial had. They join the new study as their own
study saw them: a trial that completed as COMPLETE with its objective values
(``best_<metric>``), one that ASHA stopped as PRUNED with its per-epoch values (with
one objective; TPE ranks it by the rung it reached, not as a finished 1-epoch trial).
The others are counted and said, never silently dropped.

Their values were measured under the earlier search's conditions (a subset of the data,
another space's neighbours), so the warm start can also **train the earlier best
configurations again first** (``search.warm_start_rerun: K``; default 0, since on the
benchmark's task it brought the best no sooner): the initial design of Feurer,
Springenberg and Hutter, "Initializing Bayesian Hyperparameter Optimization via
Meta-Learning" (AAAI 2015), which starts a search from the best configurations of
similar earlier ones. They run as the first trials (Optuna's ``enqueue_trial``, through
Tune's ``points_to_evaluate``), ranked as the export ranks: feasible before infeasible,
then by the first objective (one objective) or by front and spread along it (several,
:func:`~hpsearch.results.objective.rank_order`). Only completed trials count: an
ASHA-stopped one was never trained to the end.
"""

from __future__ import annotations

import glob
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from hpsearch.errors import SpecError
from hpsearch.search.spec import SearchSpec

EXTENSION = "extend-{}"  # Tune experiments of an extended search, inside its folder


def experiments(search_dir: Path) -> list[Path]:
    """The search's Tune experiments, oldest first: its own, then its extensions."""
    extra = sorted((p for p in search_dir.glob(EXTENSION.format("*")) if p.is_dir()),
                   key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return [search_dir, *extra]


def study_of(experiment_dir: Path):
    """The Optuna study the experiment's searcher saved last (None if it saved none)."""
    files = glob.glob(os.path.join(str(experiment_dir), "searcher-state-*.pkl"))
    if not files:
        return None
    with open(max(files, key=os.path.getmtime), "rb") as fh:
        state = pickle.load(fh)  # noqa: S301 - the search's own file, written by its driver
    return state.get("_ot_study") if isinstance(state, dict) else None


def past_trials(search_dir: Path) -> list:
    """Every finished trial of a search's studies, as frozen Optuna trials (the latest
    experiment's study holds the trials of those before it)."""
    from optuna.trial import TrialState

    study = next((s for s in map(study_of, reversed(experiments(search_dir))) if s), None)
    if study is None:
        raise SpecError(f"{search_dir}: no saved sampler state (searcher-state-*.pkl) to "
                        "continue from; the search never reached its first save")
    return [t for t in study.get_trials(deepcopy=True)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]


# ---------------------------------------------------------------- warm start


@dataclass
class WarmStart:
    trials: list        # frozen Optuna trials for the new study
    source: str         # the search (or experiment) they came from
    finished: int       # its finished trials
    outside: dict       # why the others were left out -> how many
    rerun: list         # the params of its best configurations, to train again first

    def line(self) -> str:
        why = "; ".join(f"{n} {reason}" for reason, n in self.outside.items())
        pruned = sum(t.state.name == "PRUNED" for t in self.trials)
        return (f"warm start from {self.source!r}: {len(self.trials)} of its {self.finished} "
                f"finished trial(s) reused ({len(self.trials) - pruned} completed, {pruned} "
                f"stopped early)" + (f"; left out: {why}" if why else "")
                + (f"; its best {len(self.rerun)} train again first" if self.rerun else ""))


def warm_start(spec: SearchSpec, storage, tracking_uri: str) -> WarmStart:
    """The finished trials of ``spec.warm_start`` that lie in ``spec``'s space."""
    import optuna

    from hpsearch.results.mlflow_runs import _client
    from hpsearch.results.objective import finite
    from hpsearch.search.searcher import constraint_values
    from hpsearch.search.space import distribution

    runs, source, uri = _source_runs(spec.warm_start, storage, tracking_uri, spec.source)
    client, many = _client(uri), spec.multi_objective
    dists = {p.name: distribution(p) for p in spec.space}
    params_of = {p.name: p for p in spec.space}
    trials, outside, finished = [], {}, 0
    for run in runs:
        tags = run.data.tags
        if run.info.status != "FINISHED" or "true" in (tags.get("recheck"), tags.get("lost"),
                                                       tags.get("refit")):
            continue  # a seed re-check, refit or lost run repeats a trial, it is not one
        finished += 1
        values = [run.data.metrics.get(f"best_{m}") for m in spec.metrics]
        if not all(finite(v) for v in values):
            outside["without every objective"] = outside.get("without every objective", 0) + 1
            continue
        params, why = _in_space(run.data.params, params_of, spec.fixed)
        if why:
            outside[why] = outside.get(why, 0) + 1
            continue
        stopped = tags.get("stop_reason") == "asha_stopped"
        state = optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE
        steps = _epochs(client, run.info.run_id, spec.metric) if stopped and not many else {}
        trials.append(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params},
            values=None if stopped else values, state=state, intermediate_values=steps,
            user_attrs={"warm_start": source, "trial_id": run.data.tags.get("trial_id", "")},
            system_attrs={f"constraints:{k}": v for k, v in
                          constraint_values(spec.constraints, run.data.metrics).items()}))
    return WarmStart(trials, source, finished, outside,
                     best_configs(trials, spec.objectives, spec.warm_start_rerun))


def best_configs(trials: list, objectives, k: int) -> list[dict]:
    """The params of the ``k`` best completed trials (one per configuration): feasible
    first, then by the first objective, or by front and ε-net with several objectives."""
    from hpsearch.results.objective import Objective, rank_order, signed

    goals = [Objective(m, d) for m, d in objectives]
    done = [(t, p) for t in trials
            if t.state.name == "COMPLETE" and (p := signed(t.values or (), goals))]
    order: list = []
    for feasible in (True, False):
        group = [(t, p) for t, p in done
                 if all(v <= 0 for key, v in t.system_attrs.items()
                        if key.startswith("constraints:")) == feasible]
        order += [group[i][0] for i in rank_order([p for _, p in group])]
    out: list[dict] = []
    for t in order:
        if len(out) < k and t.params not in out:
            out.append(dict(t.params))
    return out


def _epochs(client, run_id: str, metric: str) -> dict[int, float]:
    """A stopped trial's objective per epoch: Optuna ranks PRUNED trials by these."""
    from hpsearch.results.objective import finite

    return {m.step: m.value for m in client.get_metric_history(run_id, metric)
            if finite(m.value)}


def _in_space(logged: dict, params: dict, fixed: dict) -> tuple[dict, str | None]:
    """The run's sampled values typed for this space, or why they do not fit it."""
    out: dict = {}
    for name, p in params.items():  # parents come before children (the spec sorted them)
        if not all(out.get(parent, _NONE) in allowed for parent, allowed in p.when):
            continue  # not sampled here either
        if name not in logged:
            return {}, f"without `{name}`, which this space samples"
        value = _typed(p, logged[name])
        if value is _NONE:
            return {}, f"with `{name}` outside this space"
        out[name] = value
    for name, value in fixed.items():
        if name in logged and _typed_like(value, logged[name]) != value:
            return {}, f"with `{name}` other than the value this spec fixes"
    return out, None


_NONE = object()


def _typed(p, text: str):
    if p.kind == "choice":
        return next((o for o in p.args if str(o) == text), _NONE)
    try:
        value = float(text)
    except ValueError:
        return _NONE
    low, high = p.args
    if p.kind == "int":
        value = int(round(value))
    return value if low <= value <= high else _NONE


def _typed_like(example, text: str):
    if isinstance(example, bool):
        return text == "True"
    if isinstance(example, (int, float)):
        try:
            return type(example)(float(text))
        except ValueError:
            return text
    return text


def check_source(spec: SearchSpec, storage, tracking_uri: str) -> None:
    """Bad input unless ``spec.warm_start`` names a search or MLflow experiment."""
    if spec.warm_start:
        _source_runs(spec.warm_start, storage, tracking_uri, spec.source)


def _source_runs(name: str, storage, tracking_uri: str, where: str = ""
                 ) -> tuple[list, str, str]:
    """(trial runs, name, their tracking URI) of a search under the storage root, else of
    the MLflow experiment of that name in the tracking store."""
    from hpsearch.results.mlflow_runs import _client, child_runs

    meta_file = storage.search_dir(name) / "hpsearch.json"
    if meta_file.is_file():
        import json

        meta = json.loads(meta_file.read_text())
        return list(child_runs(meta["tracking_uri"], meta["experiment_id"],
                               meta["parent_run_id"])), name, meta["tracking_uri"]
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise SpecError(f"{where or 'spec'}: `search.warm_start`: no search named {name!r} "
                        f"under {storage.root} "
                        f"and no MLflow experiment of that name at {tracking_uri}; name an "
                        "earlier search (`hpsearch status` lists them)")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.trial_id != ''",
                              max_results=10000)
    return runs, name, tracking_uri
