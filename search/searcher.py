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
"""

from __future__ import annotations

import math

from ray.tune.search.optuna import OptunaSearch


class SchedulerAwareOptunaSearch(OptunaSearch):
    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if result and not error and not _finite(result.get(self.metric)):
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


def _finite(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
