"""Seed re-check of the top trials: is the best configuration better, or one seed's luck?

After a search, the top ``K`` configurations by the objective are retrained from
scratch at the full epoch budget (no ASHA) with ``N`` new seeds each, on the same
cluster and at the same concurrency. The data split stays the search's (only the
trial seed changes: initialization, data order, dropout, augmentation), so the
re-runs' validation numbers compare with each other and with the search's.
Each re-run is a child MLflow run of the search's parent, tagged ``recheck``,
``recheck_of`` (the search trial whose configuration it re-ran) and ``seed``;
the parent gets the table (mean ± sd per configuration) as ``recheck.md``; the
export then picks the configuration with the best mean (ties: the smaller sd)
and exports its best run. The re-runs' Tune experiment lives in
``<storage>/<search>/recheck/``.
"""

from __future__ import annotations

from hpsearch.results.objective import Objective
from hpsearch.results.storage import Storage
from hpsearch.search.spec import SearchSpec
from hpsearch.search.tracking import MlflowTracker


class RecheckTracker(MlflowTracker):
    """The search's tracker for the re-runs: params from the configuration a re-run
    carries, numbered after the search's trials, tagged with what they re-check."""

    def __init__(self, *, first_index: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.first_index = first_index

    def trial_params(self, trial) -> dict:
        config = trial.config["recheck"]["config"]
        return {k: config[k] for k in self.param_names if k in config}

    def trial_tags(self, trial) -> dict:
        job = trial.config["recheck"]
        return {"recheck": "true", "recheck_of": job["of"], "seed": str(job["config"]["seed"])}


def top_trials(spec: SearchSpec, grid, k: int) -> list[tuple[str, dict, float]]:
    """(trial id, config, best objective) of the ``k`` best trials of a finished search."""
    objective = Objective(spec.metric, spec.mode)
    scored = []
    for result in grid:
        frame = result.metrics_dataframe
        if result.error is not None or frame is None or spec.metric not in frame:
            continue
        best = objective.best(float(v) for v in frame[spec.metric])
        if best is not None:
            scored.append((result.metrics["trial_id"], dict(result.config), best))
    scored.sort(key=lambda t: objective.key(t[2]), reverse=True)
    return scored[:k]


def recheck_seeds(spec: SearchSpec) -> list[int]:
    """New seeds, none of them the search's own (its trials all ran with spec.seed)."""
    return [spec.seed + 1000 * (i + 1) for i in range(spec.recheck[1])]


def run_recheck(spec: SearchSpec, storage: Storage, grid, *, tracking_uri: str,
                experiment_id: str, parent_run_id: str, echo=print,
                outbox: str | None = None) -> int:
    """Re-run the top configurations of ``grid`` (the search's ResultGrid); returns
    the number of re-runs. Their MLflow runs are ended however this ends."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from hpsearch.search.adapter import recheck_trial
    from hpsearch.search.engine import trial_dirname
    from hpsearch.search.progress import SilentReporter

    top, _ = spec.recheck
    chosen = top_trials(spec, grid, top)
    if not chosen:
        echo("seed re-check skipped: no trial reported a finite objective")
        return 0
    jobs = [{"of": tid, "config": {**config, "seed": seed}}
            for tid, config, _ in chosen for seed in recheck_seeds(spec)]
    echo(f"seed re-check: {len(chosen)} configurations x {spec.recheck[1]} new seeds, "
         f"{spec.max_epochs} epochs each, concurrency {spec.concurrency}")
    tracker = RecheckTracker(
        first_index=len(grid) + 1, tracking_uri=tracking_uri, experiment_id=experiment_id,
        parent_run_id=parent_run_id, param_names=[p.name for p in spec.space], metric=spec.metric,
        mode=spec.mode, max_epochs=spec.max_epochs, samples=len(jobs), outbox=outbox,
        echo=(lambda line: echo(line.replace("  trial ", "  re-check ", 1))) if echo else None)
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(recheck_trial, resources),
        param_space={"recheck": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(scheduler=FIFOScheduler(), metric=spec.metric, mode=spec.mode,
                                    max_concurrent_trials=spec.concurrency, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=storage.recheck_dir(spec.name).name, storage_path=str(storage.search_dir(spec.name)),
            callbacks=[tracker],
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode),
            verbose=0, progress_reporter=SilentReporter()),
    )
    try:
        tuner.fit()
    finally:
        tracker.close()
    _log_table(spec, storage, tracking_uri, parent_run_id)
    return len(jobs)


def _log_table(spec: SearchSpec, storage: Storage, tracking_uri: str, parent_run_id: str) -> None:
    """The re-check table, as `hpsearch status` prints it, on the parent run."""
    from mlflow.tracking import MlflowClient

    from hpsearch.results.status import format_recheck, recheck_summary, trial_rows

    meta, rows = trial_rows(spec.name, storage)
    _, rechecks = trial_rows(spec.name, storage, recheck=True)
    checked = recheck_summary(meta, rows, rechecks)
    client = MlflowClient(tracking_uri)
    client.log_text(parent_run_id, "```\n" + format_recheck(meta, checked) + "\n```\n",
                    "recheck.md")
    if checked and checked[0].values:
        client.set_tag(parent_run_id, "recheck_chosen", checked[0].trial_id)
