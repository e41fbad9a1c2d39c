"""A text classifier's trial: the misclassified examples, and the most-attended
tokens (attention pooling) or most indicative n-grams (Naive Bayes) per class."""

from __future__ import annotations

import csv
from pathlib import Path

from hpsearch.results.report._common import _markdown, _save, plt


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

    from hpsearch.trainables.loop import model_device

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
