"""What every report draws with: matplotlib (Agg: files only), ``_save`` (PNG and
SVG), ``_markdown`` (a table), the train vs validation curves, a trial's model
facts, the gradient-norm series helpers, and ``histories`` (one MLflow run's
metrics per epoch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a notebook keeps its inline backend for .figures()
    matplotlib.use("Agg")  # no display: files only (each saved figure is closed)
import matplotlib.pyplot as plt  # noqa: E402

CURVE_PAIRS = (("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy"))


def _save(fig, folder: Path, stem: str, svg: bool = True) -> list[str]:
    fig.tight_layout()
    names = [f"{stem}.png"] + ([f"{stem}.svg"] if svg else [])
    for n in names:
        fig.savefig(folder / n, dpi=120)
    plt.close(fig)
    return names


def _markdown(rows: list[dict], keys: list[str] | None = None) -> str:
    if not rows:
        return "(none)\n"
    keys = keys or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(out) + "\n"


def plot_curves(history: dict, folder: Path, title: str, pairs=CURVE_PAIRS) -> list[str]:
    """Train vs validation loss and accuracy (regression: RMSE) per epoch."""
    return _save(curves_figure(history, title, pairs), folder, "curves")


def curves_figure(history: dict, title: str, pairs=CURVE_PAIRS):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (label, train_key, val_key) in zip(axes, pairs):
        for key, style in ((train_key, "-o"), (val_key, "-s")):
            points = history.get(key, [])
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], style, label=key, ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{title}: {label}")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return fig


def _model_facts(model, x, config, facts, folder: Path) -> list[str]:
    from hpsearch.trainables.loop import model_summary

    macs = None
    try:
        stats = model_summary(model, x)
        text, macs = str(stats), int(stats.total_mult_adds)
    except Exception as e:  # still write the rest
        text = f"torchinfo could not summarize this model: {e}"
    (folder / "model_summary.txt").write_text(text + "\n")
    out = {"num_params": sum(p.numel() for p in model.parameters())
           or sum(b.numel() for b in model.buffers()),  # a fitted NB / tree keeps buffers
           "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "macs_per_sample": macs, "hyperparameters": config, "seed": config.get("seed"), **facts}
    (folder / "facts.json").write_text(json.dumps(out, indent=2, default=str))
    return ["model_summary.txt", "facts.json"]


GRAD_LAYER = "grad_norm/conv"  # grad_norm/conv01 ... in forward order
GRAD_RATIO = "grad_norm_ratio_first_last"


def grad_layers(history: dict) -> list[str]:
    """The per-conv-layer gradient-norm metrics of a history, first layer first."""
    return sorted(k for k in history if k.startswith(GRAD_LAYER))


def _series(ax, points, fmt: str = "-o", **style) -> None:
    """One (epoch, value) series as a line with small markers."""
    ax.plot([s for s, _ in points], [v for _, v in points], fmt, ms=3, **style)


def _grad_axes(ax, title: str, ylabel: str = "mean L2 norm of the weight gradient") -> None:
    """Log-scale axes per epoch, as every gradient-norm figure draws them."""
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)


def histories(meta: dict, run_id: str, keys: list[str] | None = None, *,
              prefixes: tuple[str, ...] = ()) -> dict:
    """{metric: [(epoch, value), ...]} of one MLflow run (all its metrics by default, or
    those whose names start with one of ``prefixes``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(meta["tracking_uri"])
    if keys is None:
        keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(prefixes or "")]
    return {k: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, k),
                                                  key=lambda m: m.step)] for k in keys}
