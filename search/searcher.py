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
        value = (result or {}).get(self.metric)
        if result and not error and isinstance(value, float) and not math.isfinite(value):
            # a diverged trial (NaN loss, a health stop) reports a non-finite objective;
            # OptunaSearch would pass it to study.tell, which refuses it and leaves the
            # trial RUNNING in the study for good: tell Optuna it FAILED instead
            result, error = None, True
        elif result and not error and result.get("trial_finished") is False:
            # OptunaSearch tells a trial without a result PRUNED; Optuna then takes
            # the last intermediate value (reported every epoch) as its value
            result = None
        super().on_trial_complete(trial_id, result, error)
