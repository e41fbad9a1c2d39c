"""`hpsearch compare`: the best trials of several searches side by side.

One plot each for train accuracy, val accuracy, train loss and val loss vs
epoch (the course's VGG-16 vs ResNet-18 vs VGG-Deep comparison), and a metrics
table: accuracy, macro precision / recall / F1 and loss (test, from each
search's export when there is one, else validation), parameters, epoch seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hpsearch.results.objective import primary
from hpsearch.results.report._common import _markdown, _save, histories, plt
from hpsearch.results.status import best_row, trial_rows
from hpsearch.results.storage import Storage

PANELS = ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
REGRESSION_PANELS = ("train_rmse", "val_rmse", "train_loss", "val_loss")


def compare(names: list[str], *, storage: Storage, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    curves, table = {}, []
    metas = {name: trial_rows(name, storage) for name in names}
    regression = all(primary(m["spec"]).metric in ("val_rmse", "val_mae", "val_r2",
                                                          "val_skill", "val_loss")
                     and m["spec"]["trainable"] == "forecaster" for m, _ in metas.values())
    panels = REGRESSION_PANELS if regression else PANELS
    for name in names:
        meta, rows = metas[name]
        best = best_row(meta, rows)
        if best is None:
            raise LookupError(f"search {name!r} has no finished trial to compare")
        h = histories(meta, best.run_id, [*panels, "val_r2", "epoch_seconds", "num_params"])
        curves[name] = h
        row = {"search": name, "trainable": meta["spec"]["trainable"], "trial": best.trial_id,
               "split": "val", ("r2" if regression else "accuracy"): best.best}
        bundle = storage.export_dir(name)
        if (bundle / "metrics.json").is_file():
            m = json.loads((bundle / "metrics.json").read_text())
            if m.get("test"):
                row.update(split="test", accuracy=m["test"].get("accuracy"), r2=m["test"].get("r2"),
                           loss=m["test"]["loss"])
            per_class = bundle / "report" / "best_trial" / "per_class.csv"
            if per_class.is_file():
                with open(per_class) as fh:
                    pcs = list(csv.DictReader(fh))
                for k in ("precision", "recall", "f1"):
                    row[k] = sum(float(p[k]) for p in pcs) / len(pcs)  # macro average
        if "loss" not in row and h.get("val_loss"):
            row["loss"] = min(v for _, v in h["val_loss"])
        row["params"] = int(h["num_params"][-1][1]) if h.get("num_params") else None
        secs = [v for _, v in h.get("epoch_seconds", [])]
        row["epoch_seconds"] = sum(secs) / len(secs) if secs else None
        table.append(row)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colors = plt.get_cmap("tab10")
    for ax, key in zip(axes.ravel(), panels):
        for i, name in enumerate(names):
            pts = curves[name].get(key, [])
            ax.plot([s for s, _ in pts], [v for _, v in pts], "-o", ms=3, color=colors(i % 10),
                    label=name)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    files = _save(fig, dest, "comparison")
    keys = ["search", "trainable", "trial", "split", "accuracy", "precision", "recall", "f1",
            "r2", "loss", "params", "epoch_seconds"]
    with open(dest / "comparison.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows([{k: r.get(k) for k in keys} for r in table])
    (dest / "comparison.md").write_text(_markdown(table, keys))
    return files + ["comparison.csv", "comparison.md"]
