"""Space block -> Optuna define-by-run function.

``DefineByRun`` is a plain class in an importable module (never ``__main__``)
so the searcher holding it can be pickled into Tune's experiment state and
restored by ``hpsearch resume``. It returns the spec's constant config, which
``OptunaSearch`` merges into every trial's config beside the sampled values.
"""

from __future__ import annotations

from hpsearch.search.spec import Param, SearchSpec


class DefineByRun:
    def __init__(self, params: tuple[Param, ...], constants: dict) -> None:
        self.params = params  # parents before children (the spec parser sorted them)
        self.constants = constants

    def __call__(self, trial) -> dict:
        sampled: dict = {}
        for p in self.params:
            if all(sampled.get(parent, _MISSING) in allowed for parent, allowed in p.when):
                sampled[p.name] = suggest(trial, p)
        # OptunaSearch merges {**captured suggest_* values, **returned}: returning the
        # sampled values too makes post-processed ones (qloguniform rounding) win
        return {**self.constants, **sampled}


_MISSING = object()


def suggest(trial, p: Param):
    """One Optuna suggest_* call for a spec parameter."""
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.args))
    low, high = p.args
    if p.kind == "int":
        return trial.suggest_int(p.name, int(low), int(high), step=int(p.step or 1), log=p.log)
    if p.kind == "qloguniform":
        # Optuna has no quantized log scale: sample the log scale, then round to q
        value = trial.suggest_float(p.name, float(low), float(high), log=True)
        return round(value / p.step) * p.step
    return trial.suggest_float(p.name, float(low), float(high), log=p.log,
                               step=None if p.log else p.step)


def distribution(p: Param):
    """The Optuna distribution :func:`suggest` samples ``p`` from (an earlier study's
    trials are added to a new one with these: they must be the same)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.kind == "choice":
        return CategoricalDistribution(list(p.args))
    low, high = p.args
    if p.kind == "int":
        return IntDistribution(int(low), int(high), step=int(p.step or 1), log=p.log)
    if p.kind == "qloguniform":
        return FloatDistribution(float(low), float(high), log=True)
    return FloatDistribution(float(low), float(high), log=p.log, step=None if p.log else p.step)


def define_by_run(spec: SearchSpec) -> DefineByRun:
    return DefineByRun(spec.space, spec.base_config())


def sample_configs(spec: SearchSpec, n: int, seed: int = 0) -> list[dict]:
    """Draw ``n`` full trial configs with a seeded random study (no Ray), the
    ``search.cover`` points first as in a search: used by the spec contract tests
    and by ``hpsearch run --dry-run``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for point in spec.cover_points():
        study.enqueue_trial(point)
    fn = define_by_run(spec)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(fn(trial))
        study.tell(trial, 0.0)
    return out
