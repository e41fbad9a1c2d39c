"""Multi-objective ASHA: early stopping for a search of several objectives.

Ray Tune's ASHA compares one number per trial; with several objectives (accuracy and
parameter count, say) there is no single cutoff. MO-ASHA (Schmucker, Donini, Zafar,
Salinas, Archambeau, "Multi-objective Asynchronous Successive Halving", 2021;
Syne Tune's ``MOASHA``) keeps ASHA's rungs and its asynchronous promotion rule, and
replaces the percentile cutoff by a ranking of the points recorded at the rung:
non-dominated sorting, then an ε-net within each front (``results.objective``). A
trial reaching a rung continues when its point ranks in the top ``1/reduction_factor``
of the rung's points (itself included; at least the best one continues), and stops
otherwise, as ASHA does with one objective, where the ranking is the plain order.

Every decision is kept (rung, trial, its point, its position, how many points the
rung held, how many continue, whether another point dominated it) and, given a
``log_path``, appended to that file as a JSON line (``moasha.jsonl`` in the search's
folder), so each stop can be checked afterwards.
"""

from __future__ import annotations

import json
import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from hpsearch.results.objective import Objective, dominates, rank_order, signed


class MultiObjectiveASHA(FIFOScheduler):
    """A Ray Tune scheduler: ASHA's rungs, promotion by non-dominated rank."""

    def __init__(self, *, objectives: list[Objective], time_attr: str = "training_iteration",
                 max_t: int = 100, grace_period: int = 1, reduction_factor: float = 3,
                 brackets: int = 1, stop_last_trials: bool = True,
                 log_path: str | None = None) -> None:
        super().__init__()
        if not (0 < grace_period <= max_t) or reduction_factor <= 1 or brackets < 1:
            raise ValueError(f"MultiObjectiveASHA needs 0 < grace_period <= max_t, "
                             f"reduction_factor > 1 and brackets >= 1, got ({grace_period=}, "
                             f"{max_t=}, {reduction_factor=}, {brackets=})")
        self.objectives = list(objectives)
        self.time_attr, self.max_t, self.rf = time_attr, max_t, reduction_factor
        self.stop_last_trials = stop_last_trials
        self._brackets = [self._rungs(grace_period, max_t, reduction_factor, s)
                          for s in range(brackets)]
        self._bracket_of: dict[str, int] = {}
        self._rng = np.random.default_rng(0)
        self.decisions: list[dict] = []
        self.log_path = log_path

    @staticmethod
    def _rungs(min_t: int, max_t: int, rf: float, s: int) -> list[tuple[float, dict]]:
        """(milestone, {trial: signed point}) pairs, the highest milestone first (as Ray's)."""
        count = int(math.log(max_t / min_t) / math.log(rf) - s + 1)
        return [(min_t * rf ** (k + s), {}) for k in reversed(range(count))]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives come from the spec, not from TuneConfig

    def on_trial_add(self, tune_controller, trial) -> None:
        sizes = np.array([len(b) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        self._bracket_of[trial.trial_id] = int(self._rng.choice(len(sizes),
                                                                p=probs / probs.sum()))

    def _point(self, result: dict):
        return signed([result.get(o.metric) for o in self.objectives], self.objectives)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        if result[self.time_attr] >= self.max_t and self.stop_last_trials:
            return TrialScheduler.STOP
        point = self._point(result)
        if point is None:  # a trial still without every objective (or a NaN): not ranked
            return TrialScheduler.CONTINUE
        return self._on_point(trial.trial_id, result[self.time_attr], point)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        point = self._point(result or {})
        if point is not None and self.time_attr in result:
            self._on_point(trial.trial_id, result[self.time_attr], point, record_only=True)
        self._bracket_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._bracket_of.pop(trial.trial_id, None)

    def _on_point(self, tid: str, t: float, point, record_only: bool = False) -> str:
        rungs = self._brackets[self._bracket_of.get(tid, 0)]
        for milestone, recorded in rungs:
            if t < milestone or tid in recorded:
                continue
            others = list(recorded.items())
            recorded[tid] = point
            if record_only or not others:
                return TrialScheduler.CONTINUE
            points = [p for _, p in others] + [point]
            position = rank_order(points).index(len(points) - 1)
            keep = max(1, math.floor(len(points) / self.rf))
            action = TrialScheduler.CONTINUE if position < keep else TrialScheduler.STOP
            decision = {
                "rung": milestone, "trial_id": tid, "point": list(point), "position": position,
                "points": len(points), "continue": keep, "stop": action == TrialScheduler.STOP,
                "dominated": any(dominates(p, point) for _, p in others)}
            self.decisions.append(decision)
            if self.log_path:
                with open(self.log_path, "a") as fh:
                    fh.write(json.dumps(decision) + "\n")
            return action
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        stops = sum(d["stop"] for d in self.decisions)
        return f"Using MultiObjectiveASHA: {stops} stopped of {len(self.decisions)} rung decisions"
