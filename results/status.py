"""Trial table of a search, read back from MLflow (the system of record)."""

from __future__ import annotations

from dataclasses import dataclass

from results.storage import Storage


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


def trial_rows(name: str, storage: Storage) -> tuple[dict, list[TrialRow]]:
    """(search metadata, one row per trial in start order)."""
    from results.mlflow_runs import child_runs

    meta = storage.read_meta(name)
    metric = meta["spec"]["objective"]["metric"]
    rows = []
    for run in child_runs(meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"]):
        tags, metrics = run.data.tags, run.data.metrics
        rows.append(TrialRow(
            trial_id=tags.get("trial_id", "?"), index=int(tags.get("trial_index", 0)),
            run_id=run.info.run_id, state=run.info.status,
            stop_reason=tags.get("stop_reason", "running" if run.info.status == "RUNNING" else "-"),
            epochs=int(metrics.get("epochs_reached", 0) or 0),
            best=metrics.get(f"best_{metric}"), params=dict(run.data.params)))
    rows.sort(key=lambda r: r.index)
    return meta, rows


def best_row(meta: dict, rows: list[TrialRow]) -> TrialRow | None:
    mode = meta["spec"]["objective"]["mode"]
    scored = [r for r in rows if r.best is not None]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r.best)


def format_table(meta: dict, rows: list[TrialRow]) -> str:
    metric = meta["spec"]["objective"]["metric"]
    best = best_row(meta, rows)
    param_names = sorted({k for r in rows for k in r.params})
    header = ["#", "trial", "state", "stop_reason", "epochs", f"best {metric}", *param_names]
    body = []
    for r in rows:
        mark = " *" if best is not None and r is best else ""
        body.append([str(r.index), r.trial_id, r.state, r.stop_reason, str(r.epochs),
                     (f"{r.best:.4f}" if r.best is not None else "-") + mark,
                     *[_short(r.params.get(k, "")) for k in param_names]])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    if best is not None:
        lines.append(f"\nbest trial (*): {best.trial_id}  {metric}={best.best:.4f}  "
                     f"after {best.epochs} epoch(s), {best.stop_reason}")
    return "\n".join(lines)


def print_status(name: str, storage: Storage) -> None:
    meta, rows = trial_rows(name, storage)
    print(f"search {name!r}: {len(rows)} trial(s), objective "
          f"{meta['spec']['objective']['mode']} {meta['spec']['objective']['metric']}")
    print(format_table(meta, rows))


def _short(value: str) -> str:
    try:
        f = float(value)
        return value if value.lstrip("-").isdigit() else f"{f:.4g}"
    except ValueError:
        return value
