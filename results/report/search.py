"""Per search (``search_report``): the trials table (CSV and Markdown), Optuna's
optimization history, parameter importances and parallel coordinates (over a
study rebuilt from the MLflow runs), the ASHA rung picture and all trials'
validation curves overlaid, and one ``summary.md`` that links everything. When
the trials tracked gradient norms and differ in ``batch_norm``
(``batch_norm_twins``), the best trial of each kind side by side: the first vs
the deepest conv layer's gradient norm per epoch, and their ratios in a sentence."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from hpsearch.results.objective import primary
from hpsearch.results.report._common import (
    GRAD_LAYER,
    GRAD_RATIO,
    _grad_axes,
    _markdown,
    _save,
    _series,
    grad_layers,
    histories,
    plt,
)


def search_report(folder: Path, *, meta: dict, rows: list, histories: dict) -> list[str]:
    """Trials table, Optuna plots, ASHA rungs, overlaid curves. ``histories`` maps
    trial_id -> {metric: [(step, value)]}."""
    folder.mkdir(parents=True, exist_ok=True)
    metric = primary(meta["spec"]).metric
    table = [{"trial": r.index, "trial_id": r.trial_id, "state": r.state,
              "stop_reason": r.stop_reason, "epochs": r.epochs, f"best_{metric}": r.best,
              **r.params} for r in rows]
    keys = list(dict.fromkeys(k for row in table for k in row))
    with open(folder / "trials.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(table)
    (folder / "trials.md").write_text(_markdown(table, keys))
    files = ["trials.csv", "trials.md"]
    files += _plot_rungs(rows, meta, folder)
    files += _plot_overlay(histories, rows, metric, folder)
    files += _optuna_plots(meta, rows, histories, folder)
    from hpsearch.results.front import picks_front

    if picks_front(meta):  # several objectives, or constraints: the front and its table
        from hpsearch.results.report.front import front_report

        files += front_report(folder, meta=meta, rows=rows)
    return files


def _plot_rungs(rows, meta, folder: Path) -> list[str]:
    return _save(rungs_figure(rows, meta), folder, "asha_rungs") if rows else []


def rungs_figure(rows, meta):
    """Epochs each trial reached, coloured by how it ended, over ASHA's rungs."""
    fig, ax = plt.subplots(figsize=(8, 4))
    colors = {"completed": "tab:green", "asha_stopped": "tab:orange", "interrupted": "tab:gray"}
    ax.bar([str(r.index) for r in rows], [r.epochs for r in rows],
           color=[colors.get(r.stop_reason, "tab:red") for r in rows])
    sched = meta["spec"].get("scheduler", {})
    grace, rf, top = sched.get("grace_period", 1), sched.get("reduction_factor", 3), sched.get("max_epochs")
    rung = grace
    while top and rung < top:
        ax.axhline(rung, color="gray", ls=":", lw=1)
        rung *= rf
    ax.set_xlabel("trial (start order)")
    ax.set_ylabel("epochs reached")
    ax.set_title("ASHA: epochs per trial (green completed, orange stopped, red error)")
    return fig


def _plot_overlay(histories, rows, metric, folder: Path) -> list[str]:
    return _save(overlay_figure(histories, rows, metric), folder, "val_curves_all_trials")


def overlay_figure(histories, rows, metric):
    """The objective per epoch of every trial, overlaid."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        pts = histories.get(r.trial_id, {}).get(metric, [])
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], "-o", ms=2, alpha=0.8,
                    label=f"{r.index}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every trial")
    ax.grid(alpha=0.3)
    if len(rows) <= 20 and ax.lines:
        ax.legend(fontsize=7, ncol=2, title="trial")
    return fig


BATCH_NORM_FIGURE = "grad_norms_batch_norm"


def batch_norm_of(meta: dict, row) -> bool | None:
    """A trial's ``batch_norm``: sampled (its run's params), else fixed by the spec, else
    the trainable's declared default; None when the trainable takes no ``batch_norm``."""
    from hpsearch import trainables

    try:
        declared = trainables.get(meta["spec"]["trainable"]).params.get("batch_norm")
    except KeyError:  # a module-path trainable that no longer imports
        return None
    if declared is None:
        return None
    value = row.params.get("batch_norm", (meta["spec"].get("fixed") or {}).get("batch_norm",
                                                                               declared.default))
    return value if isinstance(value, bool) else str(value).lower() == "true"


def batch_norm_twins(folder: Path, *, meta: dict, rows: list) -> tuple[list[str], str | None]:
    """The best trial without batch norm beside the best with it, when the trials tracked
    gradient norms: the first and the deepest conv layer's norm and their ratio per
    epoch (log scale), and one sentence with each one's ratio at its last epoch.

    Returns (files, sentence); ([], None) when the trainable takes no ``batch_norm`` or
    no trial logged gradient norms; no figure, and a sentence saying so, when the
    finished trials are of one kind only."""
    from hpsearch.results.status import best_row

    kinds: dict[bool, list] = {}
    for r in rows:
        bn = batch_norm_of(meta, r)
        if bn is not None and r.best is not None and math.isfinite(r.best):
            kinds.setdefault(bn, []).append(r)
    twins = {}
    for bn, group in kinds.items():
        best = best_row(meta, group)
        h = histories(meta, best.run_id, prefixes=(GRAD_LAYER, GRAD_RATIO))
        if grad_layers(h):
            twins[bn] = (best, h)
    if not twins:
        return [], None
    metric = primary(meta["spec"]).metric
    if len(twins) == 1:
        bn = next(iter(twins))
        one = f"`batch_norm: {str(bn).lower()}` ({len(kinds[bn])} trial(s))"
        if "batch_norm" in (meta["spec"].get("space") or {}):
            return [], (f"No batch-norm comparison of the gradient norms: `batch_norm` is "
                        f"searched, but every finished trial that logged them drew {one}; "
                        "more samples train both kinds.")
        return [], (f"No batch-norm comparison of the gradient norms: every finished trial "
                    f"that logged them ran with {one}; search `batch_norm: {{choice: [false, "
                    "true]}` to train the plain network and its BatchNorm twin in one search.")
    fig, (norms, ratios) = plt.subplots(1, 2, figsize=(13, 5))
    facts = []
    for bn, color in ((False, "tab:red"), (True, "tab:blue")):
        row, h = twins[bn]
        kind = "with batch norm" if bn else "without batch norm"
        layers = grad_layers(h)
        first, last = h[layers[0]], h[layers[-1]]
        ratio = h.get(GRAD_RATIO) or [(s, a / b) for (s, a), (_, b) in zip(first, last)]
        for key, fmt in ((layers[0], "-o"), (layers[-1], "--s")):
            _series(norms, h[key], fmt, color=color, label=f"{kind}: {key.split('/')[1]}")
        _series(ratios, ratio, color=color, label=f"{kind} (trial {row.trial_id})")
        facts.append(f"{kind} (trial `{row.trial_id}`, {metric} {row.best:.4f}) the first "
                     f"conv layer's gradient norm is {ratio[-1][1]:.3g} times the deepest's "
                     f"at its last epoch (epoch {ratio[-1][0]})")
    _grad_axes(norms, "first (solid) vs deepest (dashed) conv layer")
    ratios.axhline(1, color="gray", lw=1, ls=":")
    _grad_axes(ratios, "first / deepest conv layer", ylabel="gradient-norm ratio")
    fig.suptitle(f"{meta['spec']['trainable']} without and with batch norm: the best trial of "
                 f"each kind by {metric}")
    files = _save(fig, folder, BATCH_NORM_FIGURE)
    return files, f"Gradient norms: {facts[0]}; {facts[1]}."


def rebuild_study(meta: dict, rows: list, histories: dict):
    """An in-memory Optuna study holding the search's trials, for Optuna's plots."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hpsearch.search.spec import parse_spec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = parse_spec(meta["spec"], source=meta.get("spec_file", "spec"))
    dists = {}
    for p in spec.space:
        if p.kind == "choice":
            dists[p.name] = CategoricalDistribution(list(p.args))
        elif p.kind == "int":
            dists[p.name] = IntDistribution(int(p.args[0]), int(p.args[1]), log=p.log,
                                            step=1 if p.log else int(p.step or 1))
        else:
            dists[p.name] = FloatDistribution(float(p.args[0]), float(p.args[1]), log=p.log)
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for r in rows:
        params, used = {}, {}
        for name, dist in dists.items():
            if name not in r.params:
                continue
            raw = r.params[name]
            if isinstance(dist, CategoricalDistribution):
                value = next((c for c in dist.choices if str(c) == raw), None)
                if value is None:
                    continue
            elif isinstance(dist, IntDistribution):
                value = int(float(raw))
            else:
                value = min(max(float(raw), dist.low), dist.high)
            params[name], used[name] = value, dist
        intermediate = {s: v for s, v in histories.get(r.trial_id, {}).get(spec.metric, [])}
        finite = r.best is not None and math.isfinite(r.best)
        state = optuna.trial.TrialState.COMPLETE if finite else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=used, value=r.best if finite else None,
            intermediate_values=intermediate, state=state))
    return study


OPTUNA_PLOTS = {"optuna_history": "plot_optimization_history",
                "optuna_parallel_coordinate": "plot_parallel_coordinate",
                "optuna_param_importances": "plot_param_importances"}


def optuna_figures(meta, rows, histories) -> dict:
    """Optuna's optimization history, parallel coordinates and (from 3 complete trials)
    parameter importances over the search's trials: {stem: figure, or why it is
    missing (a plot Optuna cannot draw, e.g. of one distinct value)}."""
    import warnings

    from optuna.visualization import matplotlib as ov

    study = rebuild_study(meta, rows, histories)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    out: dict = {}
    for stem, fn in OPTUNA_PLOTS.items():
        if stem == "optuna_param_importances" and len(complete) < 3:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib API experimental
                ax = getattr(ov, fn)(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 5)
            out[stem] = fig
        except Exception as e:
            out[stem] = f"Optuna could not draw this plot: {e}"
    return out


def _optuna_plots(meta, rows, histories, folder: Path) -> list[str]:
    files = []
    for stem, fig in optuna_figures(meta, rows, histories).items():
        if isinstance(fig, str):
            (folder / f"{stem}.txt").write_text(fig + "\n")
            files.append(f"{stem}.txt")
        else:
            files += _save(fig, folder, stem)
    return files


def summary_markdown(name: str, meta: dict, rows: list, search_files: list[str],
                     trial: dict | None, bundle_metrics: dict | None,
                     search_dir: str = "search", trial_dir: str = "best_trial",
                     gradients: str | None = None) -> str:
    from hpsearch.results.objective import objectives_of

    first = primary(meta["spec"])
    metric = first.metric
    best = [r for r in rows if r.best is not None]
    goals = ", ".join(f"{o.mode} `{o.metric}`" for o in objectives_of(meta["spec"]))
    lines = [f"# Search `{name}`", "",
             f"- trainable: `{meta['spec']['trainable']}`; objective: {goals}",
             f"- trials: {len(rows)} ({sum(r.stop_reason == 'completed' for r in rows)} completed, "
             f"{sum(r.stop_reason == 'asha_stopped' for r in rows)} stopped by ASHA, "
             f"{sum(r.stop_reason.startswith('error') for r in rows)} errored, "
             f"{sum(r.stop_reason == 'interrupted' for r in rows)} interrupted)",
             f"- versions: {meta.get('versions', {})}", ""]
    if bundle_metrics:
        t = bundle_metrics["test"]
        key = "r2" if bundle_metrics.get("task") == "regression" else "accuracy"
        naive = (f"; naive last-value forecast R² {t['naive_r2']:.4f}" if key == "r2" else "")
        lines += [f"**Best trial `{bundle_metrics.get('trial_id', '')}`**: val {key} "
                  f"{bundle_metrics['val'].get(key, float('nan')):.4f}, **test {key} "
                  f"{t[key]:.4f}**{naive} (n={t['n']}, evaluated once at export"
                  f"{' on the GPU' if t.get('device') == 'cuda' else ''})", ""]
        if bundle_metrics.get("selection"):
            lines += [bundle_metrics["selection"], ""]
    elif best:
        lines += [f"Best {metric}: {first.best(r.best for r in best):.4f}", ""]
    lines += ["## Search", ""] + [f"- [{f}]({search_dir}/{f})" for f in search_files]
    if "front.md" in search_files:  # several objectives: the trade-offs first
        from hpsearch.results.front import front_table

        lines += ["", "## Trade-offs: the Pareto front", "",
                  _markdown(front_table(meta, rows)).rstrip(), "",
                  f"![front]({search_dir}/front.png)", "",
                  f"![hypervolume]({search_dir}/hypervolume.png)"]
    for img in ("optuna_history.png", "optuna_param_importances.png",
                "optuna_parallel_coordinate.png", "asha_rungs.png", "val_curves_all_trials.png"):
        if img in search_files:
            lines += ["", f"![{img}]({search_dir}/{img})"]
    if trial:
        second = ("confusion_matrix.png" if "confusion_matrix.png" in trial["files"]
                  else "predicted_vs_actual.png")
        lines += ["", f"## Trial report ({trial['split']} split)", "",
                  f"See [{trial_dir}/report.md]({trial_dir}/report.md).", "",
                  f"![curves]({trial_dir}/curves.png)", "",
                  f"![{second}]({trial_dir}/{second})"]
    lines += _gradients_markdown(trial, search_files, gradients, search_dir, trial_dir)
    return "\n".join(lines) + "\n"


def _gradients_markdown(trial, search_files, sentence, search_dir, trial_dir) -> list[str]:
    """The best trial's per-layer gradient norms beside the batch-norm twins' figure."""
    own = trial is not None and "grad_norms_subset.png" in trial["files"]
    twins = f"{BATCH_NORM_FIGURE}.png" in search_files
    if not (own or twins or sentence):
        return []
    lines = ["", "## Gradient norms", ""] + ([sentence, ""] if sentence else [])
    if own:
        lines += [f"![best trial: gradient norms per conv layer]({trial_dir}/grad_norms_subset.png)"]
    if twins:
        lines += ["", f"![without and with batch norm]({search_dir}/{BATCH_NORM_FIGURE}.png)"]
    return lines
