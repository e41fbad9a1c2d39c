"""Reports a student can hand in: plots and tables for one trial and for a search.

``write_reports`` writes them all under one folder (``best_trial/``, ``search/``,
``summary.md``) and ``attach_to_mlflow`` logs them to the runs. What lives where:

- ``images``: one classification trial's report (``trial_report``), images included;
- ``text``: what a text classifier's report adds (misclassified texts, tokens);
- ``series``: one regression (time-series forecast) trial's report;
- ``search``: the search report, the batch-norm twins and ``summary.md``;
- ``_common``: matplotlib, saving, Markdown tables, curves, model facts, the
  gradient-norm helpers and ``histories`` (one MLflow run's metrics).

Classification plots use the test split only when called from ``export`` (the
one look at test); an on-demand report of any trial uses the validation split
and says so.
"""

from __future__ import annotations

from pathlib import Path

from hpsearch.results.objective import primary
from hpsearch.results.report._common import histories
from hpsearch.results.report.images import trial_report
from hpsearch.results.report.search import (  # noqa: F401  (BATCH_NORM_FIGURE: re-exported)
    BATCH_NORM_FIGURE,
    batch_norm_twins,
    search_report,
    summary_markdown,
)


def write_reports(dest: Path, *, name: str, meta: dict, rows: list, row, model, data,
                  config: dict, split: str, evaluation: dict, facts: dict | None = None,
                  bundle_metrics: dict | None = None) -> dict:
    """Trial report (``best_trial/``), search report (``search/``) and summary.md
    under ``dest``. ``evaluation`` is ``evaluate_split``'s result on ``split``.
    Returns {"trial": summary, "search": files}."""
    metric = primary(meta["spec"]).metric
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


def report_trial(name: str, storage, trial_id: str | None = None, to: Path | None = None) -> Path:
    """``hpsearch report``: plots and tables for any trial (the best unless ``trial_id``)
    on the validation split (the test split is for export only), attached to MLflow.
    Returns the folder (``summary.md`` in it)."""
    from hpsearch.results.export import load_trial
    from hpsearch.trainables.loop import evaluate_split, load_data

    meta, rows, row, state, model = load_trial(name, storage, trial_id)
    config = state["config"]
    data = load_data(config)
    val = evaluate_split(config, model, data, data.val)
    dest = Path(to) if to else storage.root / "reports" / name / row.trial_id
    write_reports(dest, name=name, meta=meta, rows=rows, row=row, model=model, data=data,
                  config=config, split="val", evaluation=val,
                  facts={"versions": meta.get("versions", {})})
    attach_to_mlflow(meta, row, dest)
    return dest
