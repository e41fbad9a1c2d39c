"""Reports a student can hand in: plots and tables for one trial and for a search.

Per trial (``trial_report``): train vs validation curves (PNG and SVG), the
confusion matrix (counts and row-normalized), per-class precision / recall /
F1 / support, the most-confused pairs, a grid of misclassified images, model
facts (torchinfo summary, parameters, MACs, hyperparameters, seed, versions),
gradient-norm plots when tracked, and the first conv layer's filters.

Per search (``search_report``): the trials table (CSV and Markdown), Optuna's
optimization history, parameter importances and parallel coordinates (over a
study rebuilt from the MLflow runs), the ASHA rung picture and all trials'
validation curves overlaid, and one ``summary.md`` that links everything. When
the trials tracked gradient norms and differ in ``batch_norm``
(``batch_norm_twins``), the best trial of each kind side by side: the first vs
the deepest conv layer's gradient norm per epoch, and their ratios in a sentence.

Classification plots use the test split only when called from ``export`` (the
one look at test); an on-demand report of any trial uses the validation split
and says so.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

CURVE_PAIRS = (("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy"))
REGRESSION_PAIRS = (("loss", "train_loss", "val_loss"), ("RMSE", "train_rmse", "val_rmse"))


def _save(fig, folder: Path, stem: str, svg: bool = True) -> list[str]:
    fig.tight_layout()
    names = [f"{stem}.png"] + ([f"{stem}.svg"] if svg else [])
    for n in names:
        fig.savefig(folder / n, dpi=120)
    plt.close(fig)
    return names


# ---------------------------------------------------------------- per trial


def plot_curves(history: dict, folder: Path, title: str, pairs=CURVE_PAIRS) -> list[str]:
    """Train vs validation loss and accuracy (regression: RMSE) per epoch."""
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
        ax.legend()
    return _save(fig, folder, "curves")


def confusion(y_true, y_pred, classes: list[str]):
    import numpy as np

    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[int(t), int(p)] += 1
    return cm


def plot_confusion(cm, classes: list[str], folder: Path, split: str) -> list[str]:
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
    return _save(fig, folder, "confusion_matrix")


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
    """The first conv layer's filters as an image grid."""
    import torch

    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None:
        return []
    w = conv.weight.detach().float().cpu().numpy()[:64]
    fig, axes = _grid(len(w), cell=(1.1, 1.1))
    for ax, f in zip(axes, w):
        _show(ax, (f - f.min()) / (f.max() - f.min() + 1e-8))
    fig.suptitle(f"first conv layer: {conv.out_channels} filters of "
                 f"{conv.in_channels}x{conv.kernel_size[0]}x{conv.kernel_size[1]}")
    return _save(fig, folder, "first_layer_filters", svg=False)


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


def plot_grad_norms(history: dict, folder: Path) -> list[str]:
    layers = grad_layers(history)
    if not layers:
        return []
    names = []
    for stem, chosen in (("grad_norms_all", layers),
                         ("grad_norms_subset", _subset(layers))):
        fig, ax = plt.subplots(figsize=(8, 5))
        cmap = plt.get_cmap("viridis", len(chosen))
        for i, key in enumerate(chosen):
            _series(ax, history[key], color=cmap(i), label=key.split("/")[1])
        _grad_axes(ax, "gradient norms per conv layer" + (" (2nd, 5th, 8th, deepest)"
                                                          if stem.endswith("subset") else ""))
        names += _save(fig, folder, stem)
    return names


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


def _model_facts(model, x, config, facts, folder: Path) -> list[str]:
    from trainables.loop import model_summary

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


# ---------------------------------------------------------------- text and regression


def misclassified_texts(texts, y_true, y_pred, classes, folder: Path, limit: int = 50) -> list[str]:
    """The misclassified examples with true and predicted labels (CSV and Markdown)."""
    wrong = [i for i in range(len(y_true)) if int(y_true[i]) != int(y_pred[i])]
    rows = [{"index": i, "true": classes[int(y_true[i])], "predicted": classes[int(y_pred[i])],
             "text": " ".join(texts[i].split())} for i in wrong]
    with open(folder / "misclassified.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["index", "true", "predicted", "text"])
        w.writeheader()
        w.writerows(rows)
    short = [{**r, "text": r["text"][:240].replace("|", "/") + ("…" if len(r["text"]) > 240 else "")}
             for r in rows[:limit]]
    (folder / "misclassified.md").write_text(
        f"# Misclassified examples ({len(rows)} of {len(y_true)}; first {len(short)} shown)\n\n"
        + _markdown(short, ["index", "true", "predicted", "text"]))
    return ["misclassified.csv", "misclassified.md"]


def text_analysis(model, x, y_true, info: dict, folder: Path, top: int = 15):
    """Most-attended tokens per class (attention pooling), or the most indicative
    n-grams per class (Naive Bayes). Returns (files, summary lines)."""
    import numpy as np
    import torch

    from trainables.loop import model_device

    classes = info["classes"]
    if hasattr(model, "log_prob") and "vectorizer" in info:  # Naive Bayes: log P(w|c) contrasts
        vocab = info["vectorizer"]["vocabulary"]
        lp = model.log_prob.cpu().numpy()
        rows = []
        for c, name in enumerate(classes):
            contrast = lp[c] - np.delete(lp, c, axis=0).max(0)
            for rank, j in enumerate(np.argsort(-contrast)[:top]):
                rows.append({"class": name, "rank": rank + 1, "ngram": vocab[j],
                             "log_ratio": round(float(contrast[j]), 3)})
        (folder / "indicative_ngrams.md").write_text("# Most indicative n-grams per class\n\n"
                                                     + _markdown(rows))
        return ["indicative_ngrams.md"], []
    if getattr(model, "pooling", None) != "attention" or "vocab" not in info:
        return [], []
    vocab = info["vocab"]
    mass = [dict() for _ in classes]
    counts = [dict() for _ in classes]
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), 256):
            xb = x[i:i + 256]
            _, weights, lengths = model.attend(xb.to(model_device(model)))
            for row, w, n, label in zip(xb, weights.cpu(), lengths.cpu(), y_true[i:i + 256]):
                for tok, a in zip(row[:n].tolist(), w[:n].tolist()):
                    if tok > 1:  # not <pad> / <unk>
                        mass[int(label)][tok] = mass[int(label)].get(tok, 0.0) + a
                        counts[int(label)][tok] = counts[int(label)].get(tok, 0) + 1
    rows, lines = [], []
    fig, axes = plt.subplots(1, len(classes), figsize=(5 * len(classes), 5))
    for c, (name, ax) in enumerate(zip(classes, np.atleast_1d(axes))):
        best = sorted(mass[c].items(), key=lambda kv: -kv[1])[:top]
        for rank, (tok, m) in enumerate(best):
            rows.append({"class": name, "rank": rank + 1, "token": vocab[tok],
                         "attention_mass": round(m, 3), "occurrences": counts[c][tok],
                         "mean_weight": round(m / counts[c][tok], 4)})
        ax.barh([vocab[t] for t, _ in best][::-1], [m for _, m in best][::-1], color="tab:blue")
        ax.set_title(f"true class {name!r}: total attention")
        lines.append(f"Most-attended tokens for {name!r}: "
                     + ", ".join(vocab[t] for t, _ in best[:8]))
    files = _save(fig, folder, "attention_tokens")
    (folder / "attention_tokens.md").write_text(
        "# Most-attended tokens per true class (attention weight summed over the split)\n\n"
        + _markdown(rows))
    return files + ["attention_tokens.md"], lines


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


# ---------------------------------------------------------------- per search


def search_report(folder: Path, *, meta: dict, rows: list, histories: dict) -> list[str]:
    """Trials table, Optuna plots, ASHA rungs, overlaid curves. ``histories`` maps
    trial_id -> {metric: [(step, value)]}."""
    folder.mkdir(parents=True, exist_ok=True)
    metric = meta["spec"]["objective"]["metric"]
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
    return files


def _plot_rungs(rows, meta, folder: Path) -> list[str]:
    if not rows:
        return []
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
    return _save(fig, folder, "asha_rungs")


def _plot_overlay(histories, rows, metric, folder: Path) -> list[str]:
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
    if len(rows) <= 20:
        ax.legend(fontsize=7, ncol=2, title="trial")
    return _save(fig, folder, "val_curves_all_trials")


BATCH_NORM_FIGURE = "grad_norms_batch_norm"


def batch_norm_of(meta: dict, row) -> bool | None:
    """A trial's ``batch_norm``: sampled (its run's params), else fixed by the spec, else
    the trainable's declared default; None when the trainable takes no ``batch_norm``."""
    import trainables

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
    from results.status import best_row

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
    metric = meta["spec"]["objective"]["metric"]
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

    from search.spec import parse_spec

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


def _optuna_plots(meta, rows, histories, folder: Path) -> list[str]:
    import warnings

    from optuna.visualization import matplotlib as ov

    study = rebuild_study(meta, rows, histories)
    files = []
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    plots = [("optuna_history", ov.plot_optimization_history),
             ("optuna_parallel_coordinate", ov.plot_parallel_coordinate)]
    if len(complete) >= 3:
        plots.append(("optuna_param_importances", ov.plot_param_importances))
    for stem, fn in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib API experimental
                ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 5)
            files += _save(fig, folder, stem)
        except Exception as e:  # a plot Optuna cannot draw (e.g. one distinct value)
            (folder / f"{stem}.txt").write_text(f"Optuna could not draw this plot: {e}\n")
            files.append(f"{stem}.txt")
    return files


def summary_markdown(name: str, meta: dict, rows: list, search_files: list[str],
                     trial: dict | None, bundle_metrics: dict | None,
                     search_dir: str = "search", trial_dir: str = "best_trial",
                     gradients: str | None = None) -> str:
    metric = meta["spec"]["objective"]["metric"]
    best = [r for r in rows if r.best is not None]
    lines = [f"# Search `{name}`", "",
             f"- trainable: `{meta['spec']['trainable']}`; objective: {meta['spec']['objective']['mode']} "
             f"`{metric}`",
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
        lines += [f"Best {metric}: {max(r.best for r in best):.4f}", ""]
    lines += ["## Search", ""] + [f"- [{f}]({search_dir}/{f})" for f in search_files]
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


def _markdown(rows: list[dict], keys: list[str] | None = None) -> str:
    if not rows:
        return "(none)\n"
    keys = keys or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- assembly


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


def write_reports(dest: Path, *, name: str, meta: dict, rows: list, row, model, data,
                  config: dict, split: str, evaluation: dict, facts: dict | None = None,
                  bundle_metrics: dict | None = None) -> dict:
    """Trial report (``best_trial/``), search report (``search/``) and summary.md
    under ``dest``. ``evaluation`` is ``evaluate_split``'s result on ``split``.
    Returns {"trial": summary, "search": files}."""
    metric = meta["spec"]["objective"]["metric"]
    trial = trial_report(dest / "best_trial", title=f"{name} trial {row.trial_id}",
                         history=histories(meta, row.run_id), model=model, data=data,
                         config=config, split=split, evaluation=evaluation, facts=facts)
    all_h = {r.trial_id: histories(meta, r.run_id, [metric]) for r in rows}
    search_files = search_report(dest / "search", meta=meta, rows=rows, histories=all_h)
    twin_files, gradients = batch_norm_twins(dest / "search", meta=meta, rows=rows)
    search_files += twin_files
    (dest / "summary.md").write_text(summary_markdown(name, meta, rows, search_files, trial,
                                                      bundle_metrics, gradients=gradients))
    return {"trial": trial, "search": search_files, "gradients": gradients}


def attach_to_mlflow(meta: dict, row, dest: Path) -> None:
    """Trial files to the trial's run, search files and summary.md to the parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(meta["tracking_uri"])
    client.log_artifacts(row.run_id, str(dest / "best_trial"), artifact_path="report")
    client.log_artifacts(meta["parent_run_id"], str(dest / "search"), artifact_path="report/search")
    client.log_artifact(meta["parent_run_id"], str(dest / "summary.md"), artifact_path="report")
