"""Refit: the chosen configuration trained once more before its one test evaluation.

As scikit-learn's ``GridSearchCV(refit=True)``: the search picked a configuration by
its validation score; the exported model is that configuration trained again on the
training and validation splits together, with its own seed, for the number of epochs
at which the chosen trial peaked (or a number given: ``epochs``). The inputs stay as
the trial saw them (normalization, scaler, vocabulary fitted on the training split;
``trainables.loop.with_validation_in_training``). A refit has no validation split
left, so it runs its whole schedule (a cosine anneals over the refit's epochs), never
stops early and reports training metrics only; where the trial's learning rate
followed its validation score (``lr_scheduler: plateau``) the refit replays the
trial's learning rate of each epoch instead.

It runs as a Tune trial on the Ray the search used (a cluster too: ``address``), with
the spec's resources, in ``<storage>/<search>/refit/``; its MLflow run is a child of
the search's parent, tagged ``refit``, ``refit_of`` (the chosen trial), ``seed``,
``fit_on`` and ``epochs``, and is left out of the search's trials. The test split is
not read here: ``results/export.py`` evaluates the refit model on it, once.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from hpsearch.errors import SearchFailed, SpecError
from hpsearch.results.storage import Storage
from hpsearch.search.tracking import MlflowTracker

EXPERIMENT = "refit"  # the refit's Tune experiment, inside the search's folder
# a seed no run of the search used: its trials ran with the spec's seed, the seed
# re-check's with seed + 1000 k
SEED_OFFSET = 999
FIT_ON = "train+val"


class RefitFailed(SearchFailed):
    """The refit's trial ended in an error: nothing was exported."""


@dataclass
class Refit:
    """What a refit trained and where its record is."""
    of: str              # the chosen trial whose configuration was trained again
    trial_id: str        # the refit's own Tune trial
    run_id: str          # its MLflow run (tagged refit)
    epochs: int
    epochs_from: str     # "the chosen trial's peak" | "given"
    peak_epoch: int      # the epoch at which the chosen trial scored best
    seed: int
    fit_size: int        # training rows: the training and validation splits together
    seconds: float       # the refit's wall time, Tune's start-up included
    state: dict          # its last checkpoint's state (weights, config, data facts)

    def facts(self) -> dict:
        """The refit as metrics.json and the report state it."""
        return {"of_trial": self.of, "run_id": self.run_id, "fit_on": FIT_ON,
                "n": self.fit_size, "epochs": self.epochs, "epochs_from": self.epochs_from,
                "chosen_trial_peak_epoch": self.peak_epoch, "seed": self.seed,
                "seconds": self.seconds}


class RefitTracker(MlflowTracker):
    """The search's tracker for the refit: the configuration's params, refit tags, a
    run named refit-<number>-<id>, numbered after every run of the search."""

    run_prefix = "refit"

    def __init__(self, *, first_index: int, tags: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.first_index, self.tags = first_index, tags

    def trial_params(self, trial) -> dict:
        config = trial.config["refit_job"]["config"]
        return {k: config[k] for k in self.param_names if k in config}

    def trial_tags(self, trial) -> dict:
        return self.tags


def refit_config(state: dict, *, epochs: int, lr_by_epoch: list[float] | None) -> dict:
    """The chosen trial's config as its refit runs it."""
    config = state["config"]
    seed = int(config.get("seed", 0)) + SEED_OFFSET
    refit = {"of": "", "fit_on": FIT_ON}
    if config.get("lr_scheduler") == "plateau" and lr_by_epoch:
        refit["lr_by_epoch"] = [float(v) for v in lr_by_epoch]
    return {**config, "max_epochs": int(epochs), "seed": seed, "refit": refit}


def check_epochs(epochs, origin: str = "epochs=") -> int | None:
    """A refit's epoch count as given (None: the chosen trial's peak), or SpecError."""
    if epochs is None:
        return None
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SpecError(f"{origin}: the refit's epochs must be an integer >= 1, got {epochs!r}")
    return epochs


def run_refit(name: str, storage: Storage, *, trial_id: str | None = None,
              epochs: int | None = None, address: str | None = None, echo=print,
              pick: str | None = None, where: str | None = None) -> Refit:
    """Train the chosen trial's configuration (the export's choice: the best, ``trial_id``,
    or the Pareto front's pick by ``pick``/``where``) again on the training and validation
    splits, for ``epochs`` (None: the epoch at which the chosen trial peaked), through Ray
    Tune on the search's Ray (``address``: a cluster's); returns the :class:`Refit` with
    its final state. Raises :class:`RefitFailed`."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from hpsearch.results.export import chosen_state
    from hpsearch.results.report._common import histories
    from hpsearch.results.status import trial_rows
    from hpsearch.search.adapter import load_state, refit_trial
    from hpsearch.search.engine import connect, trial_dirname
    from hpsearch.search.spec import parse_spec

    meta, rows, row, state = chosen_state(name, storage, trial_id, by=pick, where=where)
    peak = int(state["epoch"])
    count = check_epochs(epochs) or peak
    lrs = None
    if state["config"].get("lr_scheduler") == "plateau":
        lrs = [v for _, v in histories(meta, row.run_id, ["lr"]).get("lr", [])]
    config = refit_config(state, epochs=count, lr_by_epoch=lrs)
    config["refit"]["of"] = row.trial_id
    spec = parse_spec(meta["spec"], source=meta.get("spec_file", name))
    spec = connect(spec, storage, address, echo=echo)  # Ray as the search had it
    where = storage.search_dir(name) / EXPERIMENT
    if where.exists():  # one refit per search on disk: the latest (older runs stay in MLflow)
        shutil.rmtree(where)
    others = sum(len(trial_rows(name, storage, recheck=r, refit=f)[1])
                 for r, f in ((False, False), (True, False), (False, True)))
    tags = {"refit": "true", "refit_of": row.trial_id, "seed": str(config["seed"]),
            "fit_on": FIT_ON, "epochs": str(count)}
    tracker = RefitTracker(
        first_index=others + 1, tags=tags, tracking_uri=meta["tracking_uri"],
        experiment_id=meta["experiment_id"], parent_run_id=meta["parent_run_id"],
        param_names=[p.name for p in spec.space], metric=spec.metric, mode=spec.mode,
        max_epochs=count, samples=1, echo=None, verbose=False)
    how = "the epoch its validation peaked" if epochs is None else "as given"
    echo(f"refit: trial {row.trial_id}'s configuration on the training and validation splits, "
         f"{count} epoch(s) ({how}), seed {config['seed']}")
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(refit_trial, resources),
        param_space={"refit_job": {"of": row.trial_id, "config": config}},
        tune_config=tune.TuneConfig(scheduler=FIFOScheduler(), num_samples=1,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=str(storage.search_dir(name)), callbacks=[tracker],
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the last epoch's
            verbose=0),
    )
    t0 = time.perf_counter()
    try:
        grid = tuner.fit()
    except BaseException:  # Ctrl-C, a lost cluster: its run ends KILLED, not RUNNING
        tracker.interrupt()
        raise
    finally:
        tracker.close()
        _end_open_refits(meta)
    seconds = time.perf_counter() - t0
    result = grid[0]
    if result.error is not None or result.checkpoint is None:
        why = f"{type(result.error).__name__}: {result.error}" if result.error else "no checkpoint"
        raise RefitFailed(f"the refit of trial {row.trial_id} of {name!r} failed ({why}); "
                          "nothing was exported")
    with result.checkpoint.as_directory() as d:
        final = load_state(d)
    refit_id = result.metrics.get("trial_id", "")
    run = next(r for r in trial_rows(name, storage, refit=True)[1] if r.trial_id == refit_id)
    echo(f"refit: {final['epoch']} epoch(s) in {seconds:.0f} s (MLflow run {run.run_id}, "
         "tagged refit)")
    return Refit(of=row.trial_id, trial_id=refit_id, run_id=run.run_id, epochs=count,
                 epochs_from="the chosen trial's peak" if epochs is None else "given",
                 peak_epoch=peak, seed=int(config["seed"]),
                 fit_size=int(final["data_info"].get("fit_size", 0)), seconds=seconds,
                 state=final)


def _end_open_refits(meta: dict) -> None:
    """A refit's run still RUNNING once its Tune run is over (interrupted, or its trial
    lost with its node) ends KILLED; the search's other runs ended with the search."""
    from hpsearch.results.mlflow_runs import _client, child_runs

    client = _client(meta["tracking_uri"])
    for run in child_runs(meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"]):
        if run.data.tags.get("refit") == "true" and run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "stop_reason", "interrupted")
            client.set_terminated(run.info.run_id, status="KILLED")
