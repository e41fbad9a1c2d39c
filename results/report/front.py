"""The report of a search of several objectives: the front over all trials (dominated
ones faded, infeasible ones crossed), the hypervolume as trials finished, and the
trade-off table of the front."""

from __future__ import annotations

from pathlib import Path

from hpsearch.results.front import (
    constraints_of,
    feasible,
    front,
    front_table,
    hypervolume_history,
)
from hpsearch.results.objective import objectives_of
from hpsearch.results.report._common import _markdown, _save, plt


def front_figure(meta: dict, rows: list):
    """The first objective against each other one, every trial a point: the front's
    trials joined and labelled, dominated ones faded, infeasible ones as crosses."""
    objectives, constraints = objectives_of(meta["spec"]), constraints_of(meta["spec"])
    first, others = objectives[0], objectives[1:] or objectives[:1]
    on_front = {r.trial_id for r in front(meta, rows)}
    scored = [r for r in rows if all(r.values.get(o.metric) is not None for o in objectives)]
    fig, axes = plt.subplots(1, len(others), figsize=(6 * len(others), 4.5), squeeze=False)
    for ax, other in zip(axes[0], others):
        for r in scored:
            x, y = r.values[other.metric], r.values[first.metric]
            if constraints and not feasible(r, constraints):
                ax.plot(x, y, "x", color="tab:red", alpha=0.6)
            elif r.trial_id in on_front:
                ax.plot(x, y, "o", color="tab:blue")
                ax.annotate(str(r.index), (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
            else:
                ax.plot(x, y, "o", color="tab:gray", alpha=0.3)
        line = sorted((r.values[other.metric], r.values[first.metric])
                      for r in scored if r.trial_id in on_front)
        if len(line) > 1:
            ax.plot(*zip(*line), "-", color="tab:blue", alpha=0.5, drawstyle="steps-post"
                    if other.mode == "min" and first.mode == "max" else "default")
        ax.set_xlabel(f"{other.metric} ({other.mode})")
        ax.set_ylabel(f"{first.metric} ({first.mode})")
        ax.set_title("Pareto front (blue), dominated (grey), infeasible (x)")
        ax.grid(alpha=0.3)
    return fig


def hypervolume_figure(meta: dict, rows: list):
    history = hypervolume_history(meta, rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    if history:
        ax.plot([i for i, _ in history], [v for _, v in history], "-o", ms=3)
    ax.set_xlabel("trial (start order)")
    ax.set_ylabel("hypervolume of the front")
    ax.set_title("Hypervolume as trials finish (feasible trials)")
    ax.grid(alpha=0.3)
    return fig


def front_report(folder: Path, *, meta: dict, rows: list) -> list[str]:
    """front.png/svg, hypervolume.png/svg and front.md (the trade-off table)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = _save(front_figure(meta, rows), folder, "front")
    files += _save(hypervolume_figure(meta, rows), folder, "hypervolume")
    (folder / "front.md").write_text(_markdown(front_table(meta, rows)))
    return files + ["front.md"]
