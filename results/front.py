"""A search's trials as points: feasibility, the Pareto front, the pick for export,
the hypervolume over time.

A trial's point is its ``best_<metric>`` of every objective (for the objectives after
the first: their values at the epoch where the first was best, the exported
checkpoint's epoch). A trial is feasible when its latest value of every
``constraints`` metric lies within its bounds. The front is the feasible scored
trials that no other feasible trial dominates (with one objective: the best trial).
"""

from __future__ import annotations

import math
import operator
import re

from hpsearch.errors import SpecError
from hpsearch.results.objective import (
    Objective,
    finite,
    hypervolume,
    objectives_of,
    pareto_mask,
    signed,
)

COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
           "==": operator.eq}


def picks_front(meta: dict) -> bool:
    """The search ranks its trials as a front: several objectives, or constraints."""
    spec = meta["spec"]
    return isinstance(spec["objective"], list) or bool(spec.get("constraints"))


def constraints_of(spec_doc: dict) -> list[tuple[str, float | None, float | None]]:
    """The spec document's ``constraints`` as (metric, lower, upper)."""
    return [(m, b.get("min"), b.get("max")) for m, b in (spec_doc.get("constraints") or {}).items()]


def point(row, objectives: list[Objective]):
    """The row's signed point (larger is better on every axis), or None if not scored."""
    return signed([row.values.get(o.metric) for o in objectives], objectives)


def feasible(row, constraints) -> bool:
    for metric, low, high in constraints:
        v = row.metrics.get(metric)
        if not finite(v) or (low is not None and v < low) or (high is not None and v > high):
            return False
    return True


def front(meta: dict, rows: list) -> list:
    """The Pareto-optimal rows among the feasible scored ones, in trial order."""
    objectives, constraints = objectives_of(meta["spec"]), constraints_of(meta["spec"])
    candidates = [r for r in rows if feasible(r, constraints) and point(r, objectives)]
    mask = pareto_mask([point(r, objectives) for r in candidates])
    return [r for r, keep in zip(candidates, mask) if keep]


def parse_where(text: str | None) -> list[tuple[str, str, float]]:
    """``"num_params<=1e6, infer_ms<2"`` -> [(metric, op, bound)]; bad text: SpecError."""
    if not text:
        return []
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"([A-Za-z_][\w/.]*)\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)", part)
        try:
            bound = float(m.group(3)) if m else math.nan
        except ValueError:
            bound = math.nan
        if not m or not math.isfinite(bound):
            raise SpecError(f"--where: {part!r} is not METRIC<=NUMBER (or <, >=, >, ==); e.g. "
                            "--where 'num_params<=1e6, infer_ms<2'")
        out.append((m.group(1), m.group(2), bound))
    return out


def pick(meta: dict, rows: list, *, by: str | None = None, where: str | None = None):
    """The trial to export and why: from the front (feasible, non-dominated), those that
    meet ``where``, the best by ``by`` (default: the first objective). Returns (row, why);
    raises SpecError when nothing qualifies (saying what was asked and what exists)."""
    objectives = objectives_of(meta["spec"])
    by_objective = next((o for o in objectives if o.metric == (by or objectives[0].metric)),
                        None)
    if by_objective is None:
        raise SpecError(f"--pick: {by!r} is not an objective of this search; pick one of "
                        f"{[o.metric for o in objectives]}")
    conditions = parse_where(where)
    for metric, _, _ in conditions:
        if not any(metric in r.metrics for r in rows):
            raise SpecError(f"--where: no trial of this search reports {metric!r}")
    candidates = front(meta, rows)
    met = [r for r in candidates
           if all(finite(r.metrics.get(m)) and COMPARE[op](r.metrics[m], bound)
                  for m, op, bound in conditions)]
    if not met:
        raise SpecError(f"no trial on the front ({len(candidates)} trial(s)) meets "
                        f"{where or 'the constraints'}; `hpsearch status NAME` shows the front")
    row = by_objective.best_of(met, lambda r: r.values.get(by_objective.metric))
    why = (f"the best {by_objective.metric} ({row.values[by_objective.metric]:.4g}) of "
           f"{len(met)} trial(s) on the front of {len(candidates)}"
           + (f" meeting {where}" if where else "")
           + (" (feasible under the constraints)" if constraints_of(meta["spec"]) else ""))
    return row, why


def reference_point(points: list) -> tuple[float, ...] | None:
    """A point every scored trial beats: each axis's worst value, less a tenth of its range
    (the same for the whole history, so the hypervolume only grows)."""
    if not points:
        return None
    dims = len(points[0])
    out = []
    for d in range(dims):
        values = [p[d] for p in points]
        span = max(values) - min(values)
        out.append(min(values) - 0.1 * (span or abs(min(values)) or 1.0))
    return tuple(out)


def hypervolume_history(meta: dict, rows: list) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the feasible front after it) in trial order."""
    objectives, constraints = objectives_of(meta["spec"]), constraints_of(meta["spec"])
    scored = [(r.index, point(r, objectives)) for r in rows
              if feasible(r, constraints) and point(r, objectives)]
    ref = reference_point([p for _, p in scored])
    out, seen = [], []
    for index, p in scored:
        seen.append(p)
        out.append((index, hypervolume(seen, ref)))
    return out


def front_table(meta: dict, rows: list) -> list[dict]:
    """The front as table rows: trial, id and each objective's value (the parent run's
    ``front.json``, the report's trade-off table)."""
    objectives = objectives_of(meta["spec"])
    return [{"trial": r.index, "trial_id": r.trial_id,
             **{o.metric: r.values.get(o.metric) for o in objectives}}
            for r in front(meta, rows)]


def log_front(meta: dict, rows: list) -> list[dict]:
    """The front as a table artifact of the search's parent run (``front.json``: trial
    ids and objective values, shown as a table in MLflow's UI); returns it."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    table = front_table(meta, rows)
    columns = ["trial", "trial_id", *[o.metric for o in objectives_of(meta["spec"])]]
    MlflowClient(meta["tracking_uri"]).log_table(
        meta["parent_run_id"], data=pd.DataFrame(table, columns=columns), artifact_file="front.json")
    return table
