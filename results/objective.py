"""Which of two results is better: one place for the rule, for one objective or several.

A search has one objective (``val_accuracy``, max) or several (a Pareto front, e.g.
``val_accuracy`` max and ``num_params`` min). Everything that ranks trials (the
scheduler, the tracker, the progress line, the seed re-check, export, status, the
report) asks this module, so "better" means one thing everywhere. Values that are not
finite numbers never rank (a diverged trial's NaN is not a score).

Several objectives are ranked by non-dominated sorting (Deb et al., "A fast and
elitist multiobjective genetic algorithm: NSGA-II", 2002): the first front is the
trials no other trial beats on every objective; within a front, by an ε-net
(Salinas et al., "A multi-objective perspective on jointly tuning hardware and
hyperparameters", NAS workshop at ICLR 2021, the order Syne Tune's MO-ASHA uses):
start at the best point of the first objective, then repeatedly take the point
farthest from those already taken, so the top of the order spreads over the front.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def finite(value) -> bool:
    """A real, finite number (not a bool, not NaN or ±inf)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass(frozen=True)
class Objective:
    """One objective: a metric and the direction in which it is better."""
    metric: str
    mode: str  # "max" | "min"

    @property
    def sign(self) -> int:
        return 1 if self.mode == "max" else -1

    def better(self, a, b) -> bool:
        """``a`` is strictly better than ``b`` (a non-finite ``b`` loses to any finite ``a``)."""
        if not finite(a):
            return False
        return not finite(b) or self.sign * a > self.sign * b

    def key(self, value) -> float:
        """A sort key, larger is better; non-finite values last."""
        return self.sign * value if finite(value) else -math.inf

    def best(self, values: Iterable):
        """The best finite value, or None."""
        scored = [v for v in values if finite(v)]
        return max(scored, key=self.key) if scored else None

    def best_of(self, items: Iterable, value=lambda item: item):
        """The item whose ``value(item)`` is best, or None when no value is finite."""
        scored = [i for i in items if finite(value(i))]
        return max(scored, key=lambda i: self.key(value(i))) if scored else None


def objectives_of(spec_doc: dict) -> list[Objective]:
    """The objectives of a spec document (as stored in hpsearch.json): one or a list."""
    block = spec_doc["objective"]
    return [Objective(o["metric"], o["mode"]) for o in (block if isinstance(block, list)
                                                        else [block])]


def primary(spec_doc: dict) -> Objective:
    """The first (or only) objective of a spec document: what one number ranks by."""
    return objectives_of(spec_doc)[0]


# ---------------------------------------------------------------- several objectives


def signed(values: Sequence, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """A point as "larger is better" on every axis, or None when a value is not finite."""
    if len(values) != len(objectives) or not all(finite(v) for v in values):
        return None
    return tuple(o.sign * float(v) for o, v in zip(objectives, values))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (signed points)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Non-dominated sorting of signed points: lists of indices, the first front first."""
    n = len(points)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(points[j], points[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    out, current = [], [i for i in range(n) if beaten_by[i] == 0]
    while current:
        out.append(current)
        following = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return out


def _eps_net(points: Sequence[Sequence[float]], members: list[int]) -> list[int]:
    """The members of one front ordered as an ε-net: the best of the first objective
    first, then each time the member farthest (in objectives scaled to the front's
    range) from the nearest one already taken."""
    if len(members) <= 2:
        return sorted(members, key=lambda i: (-points[i][0], i))
    dims = len(points[members[0]])
    low = [min(points[i][d] for i in members) for d in range(dims)]
    span = [max(points[i][d] for i in members) - low[d] or 1.0 for d in range(dims)]
    scaled = {i: [(points[i][d] - low[d]) / span[d] for d in range(dims)] for i in members}
    order = [max(members, key=lambda i: (points[i][0], -i))]
    nearest = {i: math.dist(scaled[i], scaled[order[0]]) for i in members if i != order[0]}
    while nearest:
        pick = max(nearest, key=lambda i: (nearest[i], -i))
        order.append(pick)
        del nearest[pick]
        for i in nearest:
            nearest[i] = min(nearest[i], math.dist(scaled[i], scaled[pick]))
    return order


def rank_order(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of signed points, best first: by front, then ε-net within a front."""
    return [i for front in fronts(points) for i in _eps_net(points, front)]


def pareto_mask(points: Sequence[Sequence[float] | None]) -> list[bool]:
    """Which points (signed; None: not scored) no other point dominates."""
    scored = [i for i, p in enumerate(points) if p is not None]
    first = set(fronts([points[i] for i in scored])[0]) if scored else set()
    keep = {scored[i] for i in first}
    return [i in keep for i in range(len(points))]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume that signed points dominate above ``reference`` (a point every one of
    them beats; points that do not are left out). Exact, any dimension (Optuna's WFG)."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    inside = [p for p in points if all(x > r for x, r in zip(p, reference))]
    if not inside:
        return 0.0
    # Optuna's calculator minimizes: negate "larger is better" points and the reference
    return float(compute_hypervolume(-np.asarray(inside, dtype=float),
                                     -np.asarray(reference, dtype=float)))
