"""The search, the best model and the comparisons of a hand-in notebook.

What a cell calls to show a search (its spec, space, stop reasons, figures), its
exported model (torchinfo summary, test metrics, confusion matrix, the export's
test-split figures, gradient norms, filters) and several searches side by side
(curves on one plot, the metrics, parameters and MACs table, the batch-norm twins,
an investigated dimension's table). The test split is never evaluated here: test
numbers and test-split figures are the export's (``metrics.json``, ``report/``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hpsearch.results.report._common import histories, plt


def _detached(fig):
    """A figure shown once, where the cell returns it (not again by pyplot)."""
    plt.close(fig)
    return fig


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


# ---------------------------------------------------------------- the search


SPEC_ORDER = ("name", "trainable", "data", "objective", "search", "scheduler", "resources",
              "failure", "health", "space", "fixed")


def spec_yaml(search):
    """The spec the search ran, as YAML (Markdown), with the file it came from."""
    import yaml

    spec = search.meta["spec"]  # in a spec file's order (hpsearch.json sorts its keys)
    order = [k for k in SPEC_ORDER if k in spec] + [k for k in spec if k not in SPEC_ORDER]
    text = yaml.safe_dump({k: spec[k] for k in order}, sort_keys=False, width=100)
    return _markdown(f"Spec `{search.meta.get('spec_file', search.name)}` as it ran:\n\n"
                     f"```yaml\n{text}```")


def space_table(search):
    """The searched parameters (kind, range or options, log scale, condition) and the
    fixed ones, one row each (a DataFrame)."""
    import pandas as pd

    spec = search.spec
    rows = [{"parameter": p.name, "searched as": p.kind,
             "range or options": ", ".join(map(str, p.args)),
             "log scale": "yes" if p.log else "",
             "only when": "; ".join(f"{k} in {list(v)}" for k, v in p.when),
             "tried first (cover)": "yes" if p.name in spec.cover else ""}
            for p in spec.space]
    rows += [{"parameter": k, "searched as": "fixed", "range or options": str(v),
              "log scale": "", "only when": "", "tried first (cover)": ""}
             for k, v in spec.fixed.items()]
    return pd.DataFrame(rows).set_index("parameter")


STOP_REASONS = {
    "completed": "trained to the last epoch (or stopped itself early)",
    "asha_stopped": "stopped by ASHA at a rung: behind the others there",
    "interrupted": "the search was stopped while it ran",
}


def stop_reasons(search):
    """How the trials ended: one row per stop reason, with the trials, the epochs they
    reached and what the reason means (a DataFrame)."""
    import pandas as pd

    frame = search.trials
    if frame.empty:
        return pd.DataFrame(columns=["trials", "epochs reached", "meaning"])
    rows = []
    for reason, group in frame.groupby("stop_reason", sort=False):
        epochs = sorted(set(group["epochs"]))
        meaning = STOP_REASONS.get(reason) or (
            "a health check stopped it inside its epoch" if reason.startswith("unhealthy")
            else "the trial failed" if reason.startswith("error") else "")
        rows.append({"stop reason": reason, "trials": len(group),
                     "epochs reached": ", ".join(map(str, epochs)), "meaning": meaning})
    return pd.DataFrame(rows).set_index("stop reason")


WHY_MISSING = {
    "curves": "no trial reported its objective",
    "optuna_param_importances": "parameter importances need at least 3 complete trials",
}


def show(figures: dict, key: str):
    """``figures[key]`` (from ``search.figures()``), or a line saying why it is missing."""
    value = figures.get(key)
    if value is None:
        return _markdown(f"*No {key.replace('_', ' ')} figure: "
                         f"{WHY_MISSING.get(key, 'the search has no trial to draw')}.*")
    return _detached(value)


# ---------------------------------------------------------------- the best model


def bundle_path(search) -> Path | None:
    """The search's export folder when it holds a bundle, else None."""
    path = search.storage.export_dir(search.name)
    return path if (path / "metrics.json").is_file() else None


def bundle_metrics(search) -> dict:
    """The export's ``metrics.json``: the test split, evaluated once at export."""
    path = bundle_path(search)
    if path is None:
        raise FileNotFoundError(f"search {search.name!r} has no export; run "
                                f"`hpsearch export {search.name}` first")
    return json.loads((path / "metrics.json").read_text())


def exported_trial(search) -> str:
    """The id of the trial the export holds."""
    return json.loads((bundle_path(search) / "config.json").read_text())["trial_id"]


def _trial_row(search, trial_id: str):
    from hpsearch.results.status import trial_rows

    return next(r for r in trial_rows(search.name, search.storage)[1] if r.trial_id == trial_id)


def _report_file(search, name: str) -> Path:
    return bundle_path(search) / "report" / "best_trial" / name


def model_summary(search) -> str:
    """The exported model's torchinfo summary (layers, output shapes, parameters, MACs);
    ``print`` it."""
    return _report_file(search, "model_summary.txt").read_text().rstrip()


def test_metrics(search):
    """The exported trial's metrics on each split (a DataFrame): train and validation
    at its best epoch, test evaluated once at export (``metrics.json``)."""
    import pandas as pd

    m = bundle_metrics(search)
    keys = [k for k in m["test"] if k not in ("seconds", "device")]
    rows = {split: {k: m.get(split, {}).get(k) for k in keys} for split in ("train", "val", "test")}
    return pd.DataFrame(rows).dropna(how="all")


def confusion(search):
    """The exported model's confusion matrix on the test split, drawn from the counts
    the export saved (counts, and row-normalized beside them)."""
    import numpy as np

    from hpsearch.results.report.images import confusion_figure

    path = _report_file(search, "confusion_matrix.csv")
    if not path.is_file():  # a bundle exported before the counts were saved
        return export_figure(search, "confusion_matrix")
    import csv

    with open(path, newline="") as fh:
        header, *body = list(csv.reader(fh))
    cm = np.asarray([[int(v) for v in row[1:]] for row in body])
    return _detached(confusion_figure(cm, header[1:], "test"))


def export_figure(search, stem: str):
    """A figure the export drew from the test split (``misclassified``,
    ``predicted_vs_actual``, ``residuals``, ``error_by_horizon``, ...), as an image."""
    from IPython.display import Image

    return Image(filename=str(_report_file(search, f"{stem}.png")))


def per_class(search):
    """Precision, recall, F1 and support per class on the test split (a DataFrame)."""
    import pandas as pd

    return pd.read_csv(_report_file(search, "per_class.csv")).set_index("class")


def misclassified(search, limit: int = 15):
    """Misclassified test examples: the export's image grid, or for texts the first
    ``limit`` reviews with their true and predicted labels (a DataFrame)."""
    import pandas as pd

    texts = _report_file(search, "misclassified.csv")
    if texts.is_file():
        frame = pd.read_csv(texts)
        return frame.head(limit).set_index("index")
    if _report_file(search, "misclassified.png").is_file():
        return export_figure(search, "misclassified")
    return _markdown("*The exported model misclassified no test example.*")


def has_grad_norms(search) -> bool:
    """Whether the exported trial logged per-layer gradient norms."""
    from hpsearch.results.report._common import GRAD_LAYER, grad_layers

    row = _trial_row(search, exported_trial(search))
    return bool(grad_layers(histories(search.meta, row.run_id, prefixes=(GRAD_LAYER,))))


def grad_norms(search, *, subset: bool = False):
    """The exported trial's gradient norm per conv layer and epoch (all layers, or the
    2nd, 5th, 8th and deepest with ``subset``), log scale."""
    from hpsearch.results.report._common import GRAD_LAYER
    from hpsearch.results.report.images import grad_norms_figure

    row = _trial_row(search, exported_trial(search))
    h = histories(search.meta, row.run_id, prefixes=(GRAD_LAYER,))
    return _detached(grad_norms_figure(h, subset=subset, title=f"{search.name} {row.trial_id}"))


def filters(search):
    """The exported trial's first conv layer's filters as images."""
    from hpsearch.results.report.images import filters_figure

    fig = filters_figure(search.model(exported_trial(search)))
    return _markdown("*The model has no convolution.*") if fig is None else _detached(fig)


# ---------------------------------------------------------------- several searches


def compare_curves(*searches):
    """The best trial of each search, train and validation curves on one plot each."""
    from hpsearch.results.compare import comparison_data, comparison_figure

    curves, _, panels = comparison_data([s.name for s in searches],
                                        storage=searches[0].storage)
    return _detached(comparison_figure(curves, panels))


def compare_table(*searches):
    """One row per search: its best trial, test metrics (from its export), parameters,
    multiply-accumulates per example and seconds per epoch (a DataFrame)."""
    import pandas as pd

    from hpsearch.results.compare import comparison_data

    _, table, _ = comparison_data([s.name for s in searches], storage=searches[0].storage)
    frame = pd.DataFrame(table).set_index("search")
    return frame.dropna(axis=1, how="all")


def batch_norm_twins(*searches):
    """The best trial without and with batch norm over the given searches' trials: the
    first and deepest conv layer's gradient norms and their ratio, or why not."""
    from hpsearch.results.report.search import batch_norm_kinds, one_kind_sentence, twins_figure
    from hpsearch.results.status import trial_rows

    twins, counts = batch_norm_kinds([trial_rows(s.name, s.storage) for s in searches])
    if not twins:
        return _markdown("*No trial of these searches logged gradient norms per layer.*")
    if len(twins) == 1:
        return _markdown(one_kind_sentence(next(iter(twins.values()))[0], twins, counts))
    fig, _ = twins_figure(twins)
    return _detached(fig)


def investigated(search) -> list[str]:
    """The choice parameters whose options the search sets against each other: those it
    tries first (``search.cover``), else the one choice of a one-question spec."""
    spec = search.spec
    if spec.cover:
        return list(spec.cover)
    choices = [p.name for p in spec.space if p.kind == "choice"]
    return choices if len(choices) == 1 else []


def choice_table(search, parameter: str):
    """Per option of ``parameter``: its trials, the best trial's objective, epochs,
    parameters, MACs and seconds per epoch (a DataFrame; validation split)."""
    import pandas as pd

    return pd.DataFrame(choice_rows(search, parameter)).set_index(parameter)


def choice_rows(search, parameter: str) -> list[dict]:
    """:func:`choice_table`'s rows, best option first (options no trial finished last)."""
    from hpsearch.results.mlflow_runs import child_runs
    from hpsearch.results.status import best_row, trial_rows

    meta, rows = trial_rows(search.name, search.storage)
    runs = {r.info.run_id: r.data.metrics for r in child_runs(
        meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"])}
    options = next(p.args for p in search.spec.space if p.name == parameter)
    out = []
    for option in options:
        mine = [r for r in rows if r.params.get(parameter) == str(option)]
        best = best_row(meta, [r for r in mine if r.best is not None and math.isfinite(r.best)])
        metrics = runs.get(best.run_id, {}) if best else {}
        out.append({parameter: option, "trials": len(mine),
                    "best trial": best.trial_id if best else None,
                    f"best {search.metric}": best.best if best else None,
                    "its epochs": best.epochs if best else None,
                    "parameters": metrics.get("num_params"),
                    "MACs per example": metrics.get("macs_per_sample"),
                    "s per epoch": metrics.get("epoch_seconds")})
    sign = 1 if search.mode == "max" else -1
    return sorted(out, key=lambda r: (r[f"best {search.metric}"] is None,
                                      -sign * (r[f"best {search.metric}"] or 0)))
