"""One classification trial's report (``trial_report``): train vs validation
curves (PNG and SVG), the confusion matrix (counts and row-normalized), per-class
precision / recall / F1 / support, the most-confused pairs, a grid of
misclassified images, model facts (torchinfo summary, parameters, MACs,
hyperparameters, seed, versions), gradient-norm plots when tracked, and the first
conv layer's filters.

A text classifier's trial adds ``results.report.text``'s files in place of the
images; a regression trial's report is ``results.report.series``'s."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from hpsearch.results.report._common import (
    _grad_axes,
    _markdown,
    _model_facts,
    _save,
    _series,
    grad_layers,
    plot_curves,
    plt,
)
from hpsearch.results.report.series import regression_report
from hpsearch.results.report.text import misclassified_texts, text_analysis


def confusion(y_true, y_pred, classes: list[str]):
    import numpy as np

    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[int(t), int(p)] += 1
    return cm


def plot_confusion(cm, classes: list[str], folder: Path, split: str) -> list[str]:
    """The confusion matrix as PNG and SVG, and its counts as CSV (a notebook redraws
    it from them without looking at the test split again)."""
    with open(folder / "confusion_matrix.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["true / predicted", *classes],
                                  *[[c, *map(int, row)] for c, row in zip(classes, cm)]])
    return [*_save(confusion_figure(cm, classes, split), folder, "confusion_matrix"),
            "confusion_matrix.csv"]


def confusion_figure(cm, classes: list[str], split: str):
    """Counts and row-normalized confusion matrix side by side."""
    import numpy as np

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax, data, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "row-normalized", ".2f")):
        im = ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix ({split}, {title})")
        if len(classes) <= 20:
            for i in range(len(classes)):
                for j in range(len(classes)):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] > data.max() / 2 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def per_class_table(y_true, y_pred, classes: list[str], folder: Path) -> tuple[list[str], list[dict]]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(classes))),
                                                 zero_division=0)
    rows = [{"class": c, "precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
             "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(classes)]
    with open(folder / "per_class.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (folder / "per_class.md").write_text(_markdown(rows))
    return ["per_class.csv", "per_class.md"], rows


def most_confused(cm, classes: list[str], top: int = 3) -> list[tuple[str, str, int]]:
    pairs = [(classes[i], classes[j], int(cm[i, j])) for i in range(len(classes))
             for j in range(len(classes)) if i != j and cm[i, j] > 0]
    return sorted(pairs, key=lambda t: -t[2])[:top]


def plot_misclassified(x, y_true, y_pred, classes, data_info, folder: Path, limit: int = 32):
    import numpy as np

    wrong = [i for i in range(len(y_true)) if int(y_true[i]) != int(y_pred[i])][:limit]
    if not wrong:
        return []
    mean = np.asarray(data_info["mean"])[:, None, None]
    std = np.asarray(data_info["std"])[:, None, None]
    fig, axes = _grid(len(wrong), cell=(1.6, 1.9))
    for ax, i in zip(axes, wrong):
        _show(ax, (x[i].numpy() * std + mean).clip(0, 1))  # undo the normalization
        ax.set_title(f"T:{classes[int(y_true[i])][:10]}\nP:{classes[int(y_pred[i])][:10]}",
                     fontsize=7, color="crimson")
    return _save(fig, folder, "misclassified", svg=False)


def _grid(n: int, *, cell: tuple[float, float], cols: int = 8):
    """A figure of n image cells, 8 per row, axes off; returns (fig, flat axes)."""
    import numpy as np

    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell[0], rows * cell[1]))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, axes


def _show(ax, chw) -> None:
    """A [C, H, W] array in [0, 1]: RGB when it has three channels, else its first in gray."""
    if chw.shape[0] == 3:
        ax.imshow(chw.transpose(1, 2, 0))
    else:
        ax.imshow(chw[0], cmap="gray")


def plot_filters(model, folder: Path) -> list[str]:
    """The first conv layer's filters as an image grid (PNG)."""
    fig = filters_figure(model)
    return [] if fig is None else _save(fig, folder, "first_layer_filters", svg=False)


def filters_figure(model):
    """The first conv layer's filters (up to 64) as an image grid; None without a conv."""
    import torch

    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None:
        return None
    w = conv.weight.detach().float().cpu().numpy()[:64]
    fig, axes = _grid(len(w), cell=(1.1, 1.1))
    for ax, f in zip(axes, w):
        _show(ax, (f - f.min()) / (f.max() - f.min() + 1e-8))
    fig.suptitle(f"first conv layer: {conv.out_channels} filters of "
                 f"{conv.in_channels}x{conv.kernel_size[0]}x{conv.kernel_size[1]}")
    return fig


def plot_grad_norms(history: dict, folder: Path) -> list[str]:
    layers = grad_layers(history)
    if not layers:
        return []
    names = []
    for stem, subset in (("grad_norms_all", False), ("grad_norms_subset", True)):
        names += _save(grad_norms_figure(history, subset=subset), folder, stem)
    return names


def grad_norms_figure(history: dict, *, subset: bool = False, title: str = ""):
    """Per-epoch gradient norm of every conv layer (or of the 2nd, 5th, 8th and deepest
    with ``subset``), log scale; ``history`` holds the ``grad_norm/convNN`` series."""
    layers = grad_layers(history)
    chosen = _subset(layers) if subset else layers
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("viridis", max(1, len(chosen)))
    for i, key in enumerate(chosen):
        _series(ax, history[key], color=cmap(i), label=key.split("/")[1])
    _grad_axes(ax, (f"{title}: " if title else "") + "gradient norms per conv layer"
               + (" (2nd, 5th, 8th, deepest)" if subset else ""))
    return fig


def _subset(layers: list[str]) -> list[str]:
    picks = [i for i in (1, 4, 7) if i < len(layers) - 1] + [len(layers) - 1]
    return [layers[i] for i in dict.fromkeys(picks)]


def trial_report(folder: Path, *, title: str, history: dict, model, data, config: dict,
                 split: str, evaluation: dict, facts: dict | None = None) -> dict:
    """Write one trial's report into ``folder``; return a summary for summary.md."""
    folder.mkdir(parents=True, exist_ok=True)
    if data.info.get("task") == "regression":
        return regression_report(folder, title=title, history=history, model=model, data=data,
                                 config=config, split=split, evaluation=evaluation, facts=facts)
    x, y = getattr(data, split)
    y_true, y_pred = y.numpy(), evaluation["predictions"].numpy()
    classes = data.info["classes"]
    files = plot_curves(history, folder, title)
    cm = confusion(y_true, y_pred, classes)
    files += plot_confusion(cm, classes, folder, split)
    table_files, per_class = per_class_table(y_true, y_pred, classes, folder)
    files += table_files
    text_notes: list[str] = []
    if data.info.get("kind") == "text":
        files += misclassified_texts(data.texts[split], y_true, y_pred, classes, folder)
        more, text_notes = text_analysis(model, x, y_true, data.info, folder)
        files += more
    elif x.dim() == 4:
        files += plot_misclassified(x, y_true, y_pred, classes, data.info, folder)
    files += plot_grad_norms(history, folder)
    files += plot_filters(model, folder)
    files += _model_facts(model, x, config, facts or {}, folder)
    confused = most_confused(cm, classes)
    accuracy = float((cm.trace()) / max(1, cm.sum()))
    ratio = history.get("grad_norm_ratio_first_last")
    summary = {
        "title": title, "split": split, "accuracy": accuracy, "files": files,
        "most_confused": confused, "per_class": per_class,
        "grad_norm_ratio_first_last": ratio[-1][1] if ratio else None, "notes": text_notes,
    }
    (folder / "report.md").write_text(_trial_markdown(summary))
    summary["files"].append("report.md")
    return summary


def _trial_markdown(s: dict) -> str:
    lines = [f"# {s['title']}", "", f"Accuracy on the {s['split']} split: **{s['accuracy']:.4f}**", ""]
    lines += [n + "\n" for n in s.get("notes", [])]
    if s["most_confused"]:
        pairs = "; ".join(f"{t} → {p} ({n}×)" for t, p, n in s["most_confused"])
        lines += [f"Most confused (true → predicted): {pairs}", ""]
    if s.get("grad_norm_ratio_first_last"):
        lines += [f"First / deepest conv layer gradient-norm ratio (last epoch): "
                  f"{s['grad_norm_ratio_first_last']:.3g}", ""]
    lines += ["## Per class", "", _markdown(s["per_class"]), "## Files", ""]
    lines += [f"- [{f}]({f})" for f in s["files"]]
    for img in ("curves.png", "confusion_matrix.png", "misclassified.png", "grad_norms_subset.png",
                "attention_tokens.png",
                "first_layer_filters.png"):
        if img in s["files"]:
            lines += ["", f"![{img}]({img})"]
    return "\n".join(lines) + "\n"
