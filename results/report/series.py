"""A regression (time-series forecast) trial's report."""

from __future__ import annotations

from pathlib import Path

from hpsearch.results.report._common import _markdown, _model_facts, _save, plot_curves, plt

REGRESSION_PAIRS = (("loss", "train_loss", "val_loss"), ("RMSE", "train_rmse", "val_rmse"))


def regression_report(folder: Path, *, title: str, history: dict, model, data, config: dict,
                      split: str, evaluation: dict, facts: dict | None = None) -> dict:
    """Curves (loss, RMSE), predicted vs actual over the split's period with the naive
    forecast, residual histogram, error by horizon step, metrics beside the naive ones."""
    import numpy as np

    info = data.info
    truth, pred = evaluation["truth"].numpy(), evaluation["predictions"].numpy()
    naive = evaluation["naive"].numpy()
    times = data.times[split]
    files = plot_curves(history, folder, title, REGRESSION_PAIRS)
    fig, axes = plt.subplots(2, 1, figsize=(12, 8))
    tail = max(0, len(times) - 56)  # the whole period, then its last 8 weeks up close
    for ax, start, what in ((axes[0], 0, "whole period"), (axes[1], tail, "last 56 steps")):
        idx = list(range(start, len(times)))
        ax.plot(idx, truth[start:, 0], "-", color="black", lw=1.2, label="actual")
        ax.plot(idx, pred[start:, 0], "-", color="tab:blue", lw=1.0, label="model")
        ax.plot(idx, naive[start:, 0], ":", color="tab:orange", lw=1.0, label="naive (last value)")
        step = max(1, len(idx) // 10)
        ax.set_xticks(idx[::step], [times[i] for i in idx[::step]], rotation=30, ha="right",
                      fontsize=8)
        ax.set_ylabel(info["target"])
        ax.set_title(f"{title}: predicted vs actual, {split} split, {what} (next step)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    files += _save(fig, folder, "predicted_vs_actual")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist((pred - truth).ravel(), bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel(f"residual (predicted - actual), {info['target']}")
    ax.set_ylabel("count")
    ax.set_title("residuals")
    files += _save(fig, folder, "residuals")
    by_h = [{"horizon_step": h + 1,
             "rmse": float(np.sqrt(((pred[:, h] - truth[:, h]) ** 2).mean())),
             "naive_rmse": float(np.sqrt(((naive[:, h] - truth[:, h]) ** 2).mean()))}
            for h in range(truth.shape[1])]
    fig, ax = plt.subplots(figsize=(6, 4))
    hs = np.arange(1, len(by_h) + 1)
    ax.bar(hs - 0.2, [r["rmse"] for r in by_h], 0.4, label="model")
    ax.bar(hs + 0.2, [r["naive_rmse"] for r in by_h], 0.4, label="naive")
    ax.set_xlabel("steps ahead")
    ax.set_ylabel("RMSE")
    ax.set_title("error by horizon")
    ax.legend()
    files += _save(fig, folder, "error_by_horizon")
    x = getattr(data, split)[0]
    files += _model_facts(model, x, config, facts or {}, folder)
    table = [{"forecast": name, **{k: round(float(evaluation[f"{p}{k}"]), 4)
                                   for k in ("rmse", "mae", "r2")}}
             for name, p in (("model", ""), ("naive last value", "naive_"))]
    summary = {"title": title, "split": split, "r2": evaluation["r2"], "rmse": evaluation["rmse"],
               "skill": evaluation["skill"], "files": files, "table": table, "by_horizon": by_h}
    lines = [f"# {title}", "",
             f"{info['target']} on the {split} split ({info['periods'][split][0]} to "
             f"{info['periods'][split][1]}): **R² {evaluation['r2']:.4f}**, RMSE "
             f"{evaluation['rmse']:.4g}; skill over the naive forecast "
             f"(1 - RMSE/RMSE_naive) {evaluation['skill']:.3f}", "",
             _markdown(table), "## Error by horizon", "", _markdown(by_h),
             f"Missing values in the source: {info.get('missing_values') or 'none'} "
             f"(fill: {info.get('fill')}); one-hot columns: {info.get('one_hot') or 'none'}; "
             f"scaler: {info.get('scaler')} fitted on the training period only.", "",
             "## Files", ""] + [f"- [{f}]({f})" for f in files]
    for img in ("curves.png", "predicted_vs_actual.png", "residuals.png", "error_by_horizon.png"):
        lines += ["", f"![{img}]({img})"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    summary["files"].append("report.md")
    return summary
