"""The :class:`Search` object: one search under a storage root, as a notebook or a
script sees it. What :func:`hpsearch.run` returns and :func:`hpsearch.load` gives
back for any finished, running or interrupted search. Its data come from where
the search keeps them: the trials from MLflow (the system of record), the
checkpoints from the search's Tune folder; nothing is cached, so a search still
running shows its latest state each time.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from hpsearch.results.export import Bundle
    from hpsearch.results.status import TrialRow
    from hpsearch.search.batch import SpecResult
    from hpsearch.search.spec import SearchSpec

# per-epoch metrics a search's history holds by default (those its trials reported)
HISTORY = ("train_loss", "train_accuracy", "train_rmse", "val_loss", "val_accuracy", "val_rmse",
           "val_mae", "val_r2", "epoch_seconds", "lr")


class Search:
    """A search of a storage root (``hpsearch.load(name)``, ``hpsearch.run(spec)``).

    Attributes: ``name``, ``storage`` (its root), ``spec`` (the validated spec it ran),
    ``result`` (how the run that returned it ended, or None when loaded).
    """

    def __init__(self, name: str, *, storage=None, result: SpecResult | None = None) -> None:
        from hpsearch._api import environment_defaults
        from hpsearch.results.storage import Storage

        environment_defaults()
        self.storage = storage if isinstance(storage, Storage) else Storage.resolve(
            str(storage) if storage is not None else None)
        self.meta = self.storage.read_meta(name)  # SearchNotFound names the known ones
        self.name = name
        self.result = result

    # ------------------------------------------------------------ what it is

    @property
    def spec(self) -> SearchSpec:
        from hpsearch.search.spec import parse_spec

        return parse_spec(self.meta["spec"], source=self.meta.get("spec_file", self.name))

    @property
    def metric(self) -> str:
        """The (first) objective's metric."""
        from hpsearch.results.objective import primary

        return primary(self.meta["spec"]).metric

    @property
    def mode(self) -> str:
        from hpsearch.results.objective import primary

        return primary(self.meta["spec"]).mode

    @property
    def state(self) -> str:
        """FINISHED, RUNNING, KILLED (interrupted) or FAILED: its MLflow parent run's."""
        from hpsearch.results.mlflow_runs import _client

        return _client(self.meta["tracking_uri"]).get_run(self.meta["parent_run_id"]).info.status

    def _rows(self) -> tuple[dict, list[TrialRow]]:
        from hpsearch.results.status import trial_rows

        return trial_rows(self.name, self.storage)

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial in start order: its number, id, state, stop reason, epochs
        reached, best objective (column ``best_<metric>``), sampled parameters (typed as
        the spec declares them) and its last value of each per-epoch metric."""
        import pandas as pd

        from hpsearch.results.mlflow_runs import child_runs

        meta, rows = self._rows()
        last = {r.info.run_id: r.data.metrics
                for r in child_runs(meta["tracking_uri"], meta["experiment_id"],
                                    meta["parent_run_id"])}
        names = [p.name for p in self.spec.space]
        records = []
        for r in rows:
            metrics = last.get(r.run_id, {})
            records.append({
                "number": r.index, "trial_id": r.trial_id, "state": r.state,
                "stop_reason": r.stop_reason, "epochs": r.epochs, f"best_{self.metric}": r.best,
                **{n: self._typed(n, r.params[n]) for n in names if n in r.params},
                **{k: metrics[k] for k in HISTORY if k in metrics}})
        columns = ["number", "trial_id", "state", "stop_reason", "epochs", f"best_{self.metric}",
                   *names]
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            return pd.DataFrame(columns=columns)
        return frame[[c for c in columns if c in frame] +
                     [c for c in frame if c not in columns]]

    def _typed(self, name: str, text: str) -> Any:
        """An MLflow param (a string) as the value the trial was given."""
        param = next((p for p in self.spec.space if p.name == name), None)
        if param is not None and param.kind == "choice":
            return next((o for o in param.args if str(o) == text), text)
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if param is not None and param.kind == "int" else number

    @property
    def best(self) -> TrialRow | None:
        """The best trial by the objective (``trial_id``, ``best``, ``params``, ``epochs``,
        ``run_id``), or None while no trial has reported a finite objective."""
        from hpsearch.results.status import best_row

        meta, rows = self._rows()
        return best_row(meta, rows)

    def history(self, metric: str | None = None) -> pd.DataFrame:
        """Per-epoch curves: one row per trial and epoch (``number``, ``trial_id``,
        ``epoch``) with a column per metric (``metric`` alone, or every per-epoch metric
        the trials reported of ``train_loss``, ``val_loss``, ``val_accuracy``, ...)."""
        import pandas as pd

        from hpsearch.results.report._common import histories

        meta, rows = self._rows()
        keys = [metric] if metric else None
        records: dict[tuple, dict] = {}
        for r in rows:
            h = histories(meta, r.run_id, keys)
            for key, points in h.items():
                if keys is None and key not in HISTORY:
                    continue
                for epoch, value in points:
                    records.setdefault((r.index, r.trial_id, epoch), {})[key] = value
        frame = pd.DataFrame([{"number": n, "trial_id": t, "epoch": e, **v}
                              for (n, t, e), v in sorted(records.items())])
        return frame if not frame.empty else pd.DataFrame(columns=["number", "trial_id", "epoch"])

    # ------------------------------------------------------------ what it made

    def model(self, trial: str | None = None) -> torch.nn.Module:
        """The trained network of a trial (the best unless ``trial``) at its best
        checkpoint, in eval mode on the CPU."""
        from hpsearch.results.export import load_trial

        return load_trial(self.name, self.storage, trial)[4]

    def export(self, trial: str | None = None, to: str | Path | None = None, *,
               pick: str | None = None, where: str | None = None, echo=print) -> Bundle:
        """Evaluate a trial (the best unless ``trial``) ONCE on the held-out test split
        and write its bundle (``weights.pt``, ``config.json``, ``metrics.json``,
        ``model.pt2``, ``model.onnx``, ``report/``, a sha256 manifest) to ``to`` (default
        ``<storage>/exports/<name>``); registered in MLflow's Model Registry.

        A search of several objectives (or with constraints) exports a trial of its
        Pareto front: the best by ``pick`` (default: the first objective) among those
        meeting ``where`` (e.g. ``"num_params<=1e6, infer_ms<2"``); which one and why is
        printed and kept in ``metrics.json`` (``selection``)."""
        from hpsearch.search.batch import export_and_print
        from hpsearch.search.preflight import check_destination

        check_destination(to, self.storage)
        return export_and_print(self.name, self.storage, trial, Path(to) if to else None,
                                echo=echo, pick=pick, where=where)

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto-optimal trials (feasible, not dominated on every objective), with
        their objective values; one objective: the best trial."""
        import pandas as pd

        from hpsearch.results.front import front_table

        meta, rows = self._rows()
        return pd.DataFrame(front_table(meta, rows))

    def report(self, trial: str | None = None, to: str | Path | None = None) -> Path:
        """Plots and tables for a trial (the best unless ``trial``; validation split)
        and for the search, attached to MLflow; returns their folder (``summary.md``)."""
        from hpsearch.results.report import report_trial
        from hpsearch.search.preflight import check_destination

        check_destination(to, self.storage)
        return report_trial(self.name, self.storage, trial, Path(to) if to else None)

    def figures(self) -> dict:
        """The search at a glance, as matplotlib figures (shown inline in a notebook):
        ``curves`` (the best trial's train and validation curves), ``trials`` (every
        trial's objective per epoch), ``rungs`` (epochs each trial reached under ASHA)
        and Optuna's ``optuna_history``, ``optuna_parallel_coordinate`` and, from three
        complete trials, ``optuna_param_importances``."""
        from hpsearch.results.report._common import CURVE_PAIRS, curves_figure, histories
        from hpsearch.results.report.search import optuna_figures, overlay_figure, rungs_figure
        from hpsearch.results.report.series import REGRESSION_PAIRS

        meta, rows = self._rows()
        out: dict = {}
        best = self.best
        if best is not None:
            pairs = REGRESSION_PAIRS if "val_rmse" in self.spec_metrics() else CURVE_PAIRS
            out["curves"] = curves_figure(histories(meta, best.run_id),
                                          f"{self.name} trial {best.trial_id}", pairs)
        if rows:
            every = {r.trial_id: histories(meta, r.run_id, [self.metric]) for r in rows}
            out["trials"] = overlay_figure(every, rows, self.metric)
            out["rungs"] = rungs_figure(rows, meta)
            out.update({k: v for k, v in optuna_figures(meta, rows, every).items()
                        if not isinstance(v, str)})
        return out

    def spec_metrics(self) -> tuple[str, ...]:
        from hpsearch import trainables

        return trainables.get(self.meta["spec"]["trainable"]).metrics

    def compare(self, *others: Search | str, to: str | Path | None = None) -> pd.DataFrame:
        """This search's best trial beside the best trials of ``others`` (searches or
        names): the curves in one figure per metric and the metrics table (test from
        each export where there is one), written to ``to``; returns the table."""
        import pandas as pd

        from hpsearch.results.compare import compare
        from hpsearch.search.preflight import check_destination

        names = [self.name, *[o.name if isinstance(o, Search) else str(o) for o in others]]
        check_destination(to, self.storage)
        dest = Path(to) if to else self.storage.root / "reports" / ("compare-" + "-vs-".join(names))
        compare(names, storage=self.storage, dest=dest)
        return pd.read_csv(dest / "comparison.csv")

    # ------------------------------------------------------------ how it shows

    def __repr__(self) -> str:
        return f"<Search {self.name!r} ({self.meta['spec']['trainable']}) in {self.storage.root}>"

    def _headline(self) -> str:
        best = self.best
        rows = self._rows()[1]
        text = (f"search {self.name!r}: {len(rows)} trial(s) of "
                f"{self.meta['spec']['trainable']}, objective {self.mode} {self.metric}")
        if best is not None and best.best is not None and math.isfinite(best.best):
            text += f"; best trial {best.trial_id}: {self.metric}={best.best:.4f}"
        return text

    def _repr_html_(self) -> str:
        """A notebook shows a search as its headline and its trials table."""
        frame = self.trials
        table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-",
                              border=0)
        return f"<p><b>{html.escape(self._headline())}</b></p>{table}"
