"""The Optuna searcher, told which trials the scheduler stopped.

Ray Tune's ``OptunaSearch`` reports every epoch to Optuna as an intermediate
value, then tells Optuna that a finished trial is COMPLETE with its last value,
including a trial that ASHA stopped after one epoch. TPE then ranks a 1-epoch
accuracy against 27-epoch ones as equals. Optuna has a state for exactly this
case: PRUNED. TPE ranks every COMPLETE trial above every PRUNED one, and pruned
trials among themselves by the deepest step they reached, then by their value
there (optuna/samplers/_tpe/sampler.py, ``_split_trials`` and
``_get_pruned_trial_score``), which is ASHA's own order of rungs. The loop's
``trial_finished`` flag tells the two cases apart: it is False on the last
result of a trial that something other than the trial itself ended.

A trial that diverged reports a non-finite objective. ``OptunaSearch`` hands it
to ``study.tell`` as COMPLETE, Optuna refuses the value, and Ray only logs the
refusal ("The value nan is not acceptable"): the trial stays RUNNING in the
study for the rest of the search. Here it is told FAIL.

Two additions: ``history`` (trials of an earlier study, added before the first
suggestion: an extended search's own past, or a warm start's reused trials, so
TPE models them at once instead of sampling its random start-up trials), and
``constraints`` (each bound's value set on the finished trial with Optuna 5's
``Trial.set_constraint``: TPE ranks an infeasible trial after every feasible one,
``_split_trials`` in optuna/samplers/_tpe/sampler.py).
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

from hpsearch.results.objective import finite


class SchedulerAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, history: list | None = None,
                 constraints: tuple = (), **kwargs) -> None:
        self._history = list(history or [])
        self._constraints = tuple(constraints)
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode) -> None:
        # the history first, so it is numbered before the points to evaluate (enqueued
        # trials take their numbers when enqueued) and the new trials. The points are
        # enqueued here as Tune would (hpsearch never passes evaluated_rewards, and the
        # spec already checked every point against the space)
        points, self._points_to_evaluate = self._points_to_evaluate, None
        try:
            super()._setup_study(mode)
        finally:
            self._points_to_evaluate = points
        if self._history:  # before any suggestion
            self._ot_study.add_trials(self._history)
            self._history = []
        for point in points or []:  # Tune's own enqueueing, after the history
            self._ot_study.enqueue_trial(point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if self._constraints and result and trial_id in self._ot_trials:
            for key, value in constraint_values(self._constraints, result).items():
                self._ot_trials[trial_id].set_constraint(key, value)
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if result and not error and not all(finite(result.get(m)) for m in metrics):
            # a trial that ended itself (a divergence, OutOfMemory) reports
            # a NaN objective; OptunaSearch would tell it COMPLETE with that value, which
            # Optuna refuses ("The value nan is not acceptable"; Ray only logs it), and the
            # trial would stay RUNNING in the study. Told without a result and with an
            # error, it is FAIL, which TPE leaves out of its model.
            result, error = None, True
        elif result and not error and result.get("trial_finished") is False:
            # OptunaSearch tells a trial without a result PRUNED; Optuna then takes
            # the last intermediate value (reported every epoch) as its value
            result = None
        super().on_trial_complete(trial_id, result, error)


def constraint_values(constraints: tuple, metrics: dict) -> dict[str, float]:
    """Optuna's convention, one value per bound (``num_params.max``): <= 0 where the
    trial keeps it. A metric the trial lacks (or a NaN) counts as broken."""
    out = {}
    for metric, low, high in constraints:
        v = metrics.get(metric)
        for bound, sign, name in ((high, 1.0, "max"), (low, -1.0, "min")):
            if bound is not None:
                out[f"{metric}.{name}"] = sign * (float(v) - bound) if finite(v) else 1.0
    return out
