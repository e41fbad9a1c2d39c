"""Trial table of a search, read back from MLflow (the system of record)."""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field

from hpsearch.results.heartbeat import when
from hpsearch.results.objective import finite, primary
from hpsearch.results.storage import Storage


@dataclass
class TrialRow:
    trial_id: str
    index: int
    run_id: str
    state: str
    stop_reason: str
    epochs: int
    best: float | None
    params: dict
    recheck_of: str | None = None  # a seed re-check run: the trial whose configuration it re-ran
    seed: str | None = None
    refit_of: str | None = None  # a refit run: the trial whose configuration it trained again
    values: dict = field(default_factory=dict)   # best_<metric> of every objective
    metrics: dict = field(default_factory=dict)  # the run's latest value of each metric


def run_kind(tags: dict) -> str:
    """A child run of a search: one of its trials, a seed re-check or a refit."""
    if tags.get("refit") == "true":
        return "refit"
    return "recheck" if tags.get("recheck") == "true" else "trial"


def trial_rows(name: str, storage: Storage, *, recheck: bool = False, refit: bool = False
               ) -> tuple[dict, list[TrialRow]]:
    """(search metadata, one row per trial in start order); with ``recheck``, the
    rows of the seed re-check runs instead of the search's own trials; with ``refit``,
    those of its refits (``search/refit.py``). A run left RUNNING by a driver that is
    gone (:mod:`results.heartbeat`) has the stop_reason ``lost (driver gone since <its
    last heartbeat>)``."""
    from hpsearch.results.mlflow_runs import child_runs
    from hpsearch.results.objective import objectives_of

    meta = storage.read_meta(name)
    objectives = objectives_of(meta["spec"])
    metric = objectives[0].metric
    wanted = "refit" if refit else "recheck" if recheck else "trial"
    rows = []
    for run in child_runs(meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"]):
        tags, metrics = run.data.tags, run.data.metrics
        if run_kind(tags) != wanted or tags.get("lost") == "true":
            continue  # a lost run: see results.mlflow_runs.settle_lost_runs
        rows.append(TrialRow(
            trial_id=tags.get("trial_id", "?"), index=int(tags.get("trial_index", 0)),
            run_id=run.info.run_id, state=run.info.status,
            stop_reason=tags.get("stop_reason", "running" if run.info.status == "RUNNING" else "-"),
            epochs=int(metrics.get("epochs_reached", 0) or 0),
            best=metrics.get(f"best_{metric}"), params=dict(run.data.params),
            recheck_of=tags.get("recheck_of"), seed=tags.get("seed"),
            refit_of=tags.get("refit_of"),
            values={o.metric: metrics.get(f"best_{o.metric}") for o in objectives},
            metrics=dict(metrics)))
    rows.sort(key=lambda r: r.index)
    gone = driver_gone(meta) if any(r.state == "RUNNING" for r in rows) else None
    if gone is not None:
        for r in rows:
            if r.state == "RUNNING":
                r.stop_reason = f"lost (driver gone since {when(gone)})"
    return meta, rows


def driver_gone(meta: dict) -> float | None:
    """When the search's driver was last known alive, if it is gone (else None)."""
    from hpsearch.results.heartbeat import gone_since
    from hpsearch.results.mlflow_runs import _client

    try:
        return gone_since(_client(meta["tracking_uri"]).get_run(meta["parent_run_id"]))
    except Exception:  # noqa: BLE001 - no parent run to read: nothing to tell
        return None


@dataclass
class Recheck:
    """One re-checked configuration: its search trial and its re-runs' objectives."""
    trial_id: str
    search_best: float | None
    values: list[float]
    runs: list[TrialRow]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan


def recheck_summary(meta: dict, rows: list[TrialRow], rechecks: list[TrialRow]) -> list[Recheck]:
    """Re-checked configurations, the best first: by mean objective over the new
    seeds, ties broken by the smaller standard deviation."""
    by_id = {r.trial_id: r for r in rows}
    groups: dict[str, list[TrialRow]] = {}
    for r in rechecks:
        groups.setdefault(r.recheck_of or "?", []).append(r)
    out = [Recheck(tid, by_id[tid].best if tid in by_id else None,
                   [r.best for r in runs if finite(r.best)], runs)
           for tid, runs in groups.items()]
    objective = primary(meta["spec"])
    out.sort(key=lambda c: (not c.values, -objective.key(c.mean) if c.values else 0,
                            c.sd if math.isfinite(c.sd) else math.inf))
    return out


def format_recheck(meta: dict, checked: list[Recheck]) -> str:
    metric = primary(meta["spec"]).metric
    lines = [f"seed re-check: the top {len(checked)} configurations retrained from scratch "
             f"with new seeds (chosen: *)",
             f"{'trial':<10}  {'search best':>11}  {'re-check mean ± sd':>20}  n  {metric} per seed"]
    for i, c in enumerate(checked):
        per_seed = ", ".join(f"{r.seed}: {r.best:.4f}" if r.best is not None else f"{r.seed}: -"
                             for r in sorted(c.runs, key=lambda r: str(r.seed)))
        mark = " *" if i == 0 and c.values else ""
        search = f"{c.search_best:.4f}" if c.search_best is not None else "-"
        lines.append(f"{c.trial_id:<10}  {search:>11}  {c.mean:>11.4f} ± {c.sd:<6.4f}{mark:<2}  "
                     f"{len(c.values)}  {per_seed}")
    return "\n".join(lines)


def best_row(meta: dict, rows: list[TrialRow]) -> TrialRow | None:
    """The row with the best (finite) objective, or None."""
    return primary(meta["spec"]).best_of(rows, lambda r: r.best)


def format_table(meta: dict, rows: list[TrialRow]) -> str:
    from hpsearch.results.front import picks_front

    if picks_front(meta):
        return format_front_table(meta, rows)
    metric = primary(meta["spec"]).metric
    best = best_row(meta, rows)
    param_names = sorted({k for r in rows for k in r.params})
    header = ["#", "trial", "state", "stop_reason", "epochs", f"best {metric}", *param_names]
    body = []
    for r in rows:
        mark = " *" if best is not None and r is best else ""
        body.append([str(r.index), r.trial_id, r.state, r.stop_reason, str(r.epochs),
                     (f"{r.best:.4f}" if r.best is not None else "-") + mark,
                     *[_short(r.params.get(k, "")) for k in param_names]])
    lines = aligned(header, body)
    if best is not None:
        lines.append(f"\nbest trial (*): {best.trial_id}  {metric}={best.best:.4f}  "
                     f"after {best.epochs} epoch(s), {best.stop_reason}")
    return "\n".join(lines)


def format_front_table(meta: dict, rows: list[TrialRow]) -> str:
    """The trial table of a search of several objectives (or with constraints): each
    objective's value, the Pareto-optimal trials marked *, infeasible ones said so."""
    from hpsearch.results.front import constraints_of, feasible, front
    from hpsearch.results.objective import objectives_of

    objectives, constraints = objectives_of(meta["spec"]), constraints_of(meta["spec"])
    on_front = {r.trial_id for r in front(meta, rows)}
    param_names = sorted({k for r in rows for k in r.params})
    header = ["#", "trial", "state", "stop_reason", "epochs",
              *[f"{o.mode} {o.metric}" for o in objectives], "front", *param_names]
    body = []
    for r in rows:
        mark = ("*" if r.trial_id in on_front else
                "infeasible" if constraints and not feasible(r, constraints) else "")
        body.append([str(r.index), r.trial_id, r.state, r.stop_reason, str(r.epochs),
                     *[_short(str(r.values[o.metric])) if r.values.get(o.metric) is not None
                       else "-" for o in objectives], mark,
                     *[_short(r.params.get(k, "")) for k in param_names]])
    lines = aligned(header, body)
    bounds = ", ".join(f"{m} in [{'-inf' if lo is None else f'{lo:g}'}, "
                       f"{'inf' if hi is None else f'{hi:g}'}]" for m, lo, hi in constraints)
    lines.append(f"\nPareto front (*): {len(on_front)} trial(s) not dominated on "
                 f"{', '.join(o.metric for o in objectives)}"
                 + (f" among those keeping {bounds}" if constraints else ""))
    return "\n".join(lines)


def aligned(header: list[str], body: list[list[str]]) -> list[str]:
    """A plain-text table: columns padded to their widest cell, a dashed rule under the header."""
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return lines


def status_text(name: str, storage: Storage) -> str:
    """``hpsearch status NAME``: the search's trial table (and its seed re-check)."""
    meta, rows = trial_rows(name, storage)
    from hpsearch.results.objective import objectives_of

    lines = [f"search {name!r}: {len(rows)} trial(s), objective "
             + ", ".join(f"{o.mode} {o.metric}" for o in objectives_of(meta["spec"])),
             format_table(meta, rows)]
    lost = [r for r in rows if r.stop_reason.startswith("lost (driver gone")]
    if lost:
        lines.append(f"\n{len(lost)} run(s) {lost[0].stop_reason}: the process that ran the "
                     f"search ended without ending them; `hpsearch resume {name}` continues "
                     "the search and settles them")
    _, rechecks = trial_rows(name, storage, recheck=True)
    if rechecks:
        lines.append("\n" + format_recheck(meta, recheck_summary(meta, rows, rechecks)))
    _, refits = trial_rows(name, storage, refit=True)
    for r in refits:  # the chosen configuration trained again on train+val (search/refit.py)
        lines.append(f"\nrefit [{r.trial_id}] of trial {r.refit_of}: train+val, {r.epochs} "
                     f"epoch(s), seed {r.seed}; {r.state}, {r.stop_reason} (run {r.run_id})")
    return "\n".join(lines)


def print_status(name: str, storage: Storage) -> None:
    print(status_text(name, storage))


def _short(value: str) -> str:
    try:
        f = float(value)
        return value if value.lstrip("-").isdigit() else f"{f:.4g}"
    except ValueError:
        return value


def overview(storage: Storage) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per search under the storage root, oldest first."""
    from hpsearch.results.storage import META_FILE

    metas = []
    for path in storage.root.glob(f"*/{META_FILE}"):
        try:
            metas.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being written, or not ours
    header = ["search", "trainable", "started", "trials", "running", "best", "exported (test)"]
    body = []
    for meta in sorted(metas, key=lambda m: m.get("created", 0)):
        name, spec = meta["name"], meta["spec"]
        metric = primary(spec).metric
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.get("created", 0)))
        try:
            _, rows = trial_rows(name, storage)
        except Exception as e:  # a tracking server that does not answer: say so, go on
            body.append([name, spec.get("trainable", "?"), started,
                         f"? ({type(e).__name__}: tracking store unreachable)", "", "", ""])
            continue
        best = best_row(meta, rows)
        ended = sum(r.state != "RUNNING" for r in rows)
        lost = sum(r.stop_reason.startswith("lost (") for r in rows)
        body.append([name, spec.get("trainable", "?"), started,
                     f"{ended}/{spec.get('search', {}).get('samples', len(rows))}",
                     f"{len(rows) - ended} lost" if lost else str(len(rows) - ended),
                     f"{metric} {best.best:.4f}" if best is not None else "-",
                     _exported(storage, name)])
    return header, body


def print_overview(storage: Storage) -> int:
    """``hpsearch status`` without a name: one row per search under the storage root
    (oldest first), so a user finds a search's name, how far it got and whether it was
    exported without remembering anything. Returns the number of searches."""
    header, body = overview(storage)
    if not body:
        print(f"no searches under {storage.root} (use --storage to look elsewhere)")
        return 0
    print("\n".join(aligned(header, body)))
    print(f"\n{len(body)} search(es) under {storage.root}; one in full: hpsearch status NAME")
    return len(body)


def _exported(storage: Storage, name: str) -> str:
    try:
        metrics = json.loads((storage.export_dir(name) / "metrics.json").read_text())
    except (OSError, ValueError):
        return "-"
    test = metrics.get("test", {})
    key = metrics.get("objective", {}).get("metric", "").removeprefix("val_")
    value = test.get(key)
    if not isinstance(value, (int, float)):
        return "yes"
    return f"{key} {value:.4f} (n = {test.get('n', '?')})"
