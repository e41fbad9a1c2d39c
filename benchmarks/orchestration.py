"""Orchestration overhead: 32 no-op trials x 10 reports, concurrency 2.

    hpsearch      the product's path: OptunaSearch (TPE) + ASHA + MlflowTracker
                  (queue + background writer) + actor reuse, SQLite MLflow
    ray-tune      the same search written directly against Ray Tune with the stock
                  MLflowLoggerCallback (SQLite) and Tune's default fresh actors
    optuna        plain Optuna in-process (TPE, trial.report), no Ray, no MLflow

Reports seconds per trial (wall / 32) and the driver-side logging cost per
reported result (time spent inside the MLflow callback's on_trial_result).
Run: python benchmarks/orchestration.py [--repeats 3] [--trials 32]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

REPORTS = 10


def score(x: float, step: int) -> float:
    return 1.0 - (x - 0.3) ** 2 + 0.01 * step


def noop_trial(config: dict) -> None:
    """Reports like a trial of the shared loop, without training anything."""
    from ray import tune

    for i in range(1, REPORTS + 1):
        tune.report({"val_accuracy": score(config["x"], i), "val_loss": 1 - score(config["x"], i),
                     "train_loss": 0.5, "train_accuracy": 0.5, "epoch_seconds": 0.0,
                     "samples_per_second": 0.0, "lr": 0.01, "trial_finished": i == REPORTS})


def space(trial) -> None:
    """Define-by-run space of the plain Ray Tune variant (module level: Tune pickles it)."""
    trial.suggest_float("x", 0.0, 1.0)


class Timed:
    """Mixin: time spent in on_trial_result on the driver."""

    def on_trial_result(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return super().on_trial_result(*args, **kwargs)
        finally:
            self.result_seconds = getattr(self, "result_seconds", 0.0) + time.perf_counter() - t0
            self.results = getattr(self, "results", 0) + 1


def run_hpsearch(trials: int, root: Path) -> tuple[float, float]:
    from hpsearch.results.storage import Storage
    from hpsearch.search.engine import Instruments, instrumented_search
    from hpsearch.search.spec import parse_spec
    from hpsearch.search.tracking import MlflowTracker

    class TimedTracker(Timed, MlflowTracker):
        pass

    spec = parse_spec({
        "name": "bench-hpsearch", "trainable": "benchmarks.standin",
        "data": {"source": "digits"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"samples": trials, "seed": 0, "concurrency": 2},
        "scheduler": {"name": "asha", "max_epochs": REPORTS, "grace_period": 1, "reduction_factor": 3},
        "space": {"x": {"uniform": [0.0, 1.0]}},
    }, source="benchmark")
    trackers = []

    class Capture(TimedTracker):
        def __init__(self, **kw):
            super().__init__(**kw)
            trackers.append(self)

    t0 = time.perf_counter()
    instrumented_search(spec, Instruments(trainable=noop_trial, tracker_class=Capture),
                        storage=Storage(root), echo=lambda *_: None)
    wall = time.perf_counter() - t0
    t = trackers[0]
    return wall / trials, 1000 * t.result_seconds / max(1, t.results)


def run_ray_tune(trials: int, root: Path) -> tuple[float, float]:
    import optuna
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    class TimedMLflow(Timed, MLflowLoggerCallback):
        pass

    callback = TimedMLflow(tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                           experiment_name="bench-ray-tune", save_artifact=False)
    tuner = tune.Tuner(
        tune.with_resources(noop_trial, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space=space, metric="val_accuracy", mode="max",
                                    sampler=optuna.samplers.TPESampler(seed=0)),
            scheduler=ASHAScheduler(metric="val_accuracy", mode="max", max_t=REPORTS,
                                    grace_period=1, reduction_factor=3),
            num_samples=trials, max_concurrent_trials=2),
        run_config=tune.RunConfig(name="bench-ray-tune", storage_path=str(root), verbose=0,
                                  callbacks=[callback]))
    t0 = time.perf_counter()
    tuner.fit()
    wall = time.perf_counter() - t0
    return wall / trials, 1000 * callback.result_seconds / max(1, callback.results)


def run_optuna(trials: int, root: Path) -> tuple[float, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        for i in range(1, REPORTS + 1):
            trial.report(score(x, i), i)
        return score(x, REPORTS)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - t0) / trials, 0.0


def main() -> None:
    import ray

    from benchmarks.common import spread, write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=32)
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = {"hpsearch": run_hpsearch, "ray-tune + MLflowLoggerCallback": run_ray_tune,
            "optuna in-process": run_optuna}
    rows = {k: ([], []) for k in runs}
    for r in range(args.repeats):
        for name, fn in runs.items():  # interleaved, so drift hits every variant alike
            # Ray's MLflowLoggerCallback calls mlflow.set_tracking_uri, which writes
            # $MLFLOW_TRACKING_URI: reset it so no variant logs into another's store
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            with tempfile.TemporaryDirectory() as tmp:
                per_trial, per_result = fn(args.trials, Path(tmp))
            rows[name][0].append(per_trial)
            rows[name][1].append(per_result)
            print(f"repeat {r + 1}: {name}: {per_trial:.3f} s/trial, {per_result:.2f} ms/result")
    ray.shutdown()
    ref = rows["ray-tune + MLflowLoggerCallback"]
    body = ["| variant | s per trial | driver logging ms per result | s/trial vs ray-tune |",
            "|---|---|---|---|"]
    import statistics

    for name, (per_trial, per_result) in rows.items():
        ratio = statistics.median(per_trial) / statistics.median(ref[0])
        body.append(f"| {name} | {spread(per_trial)} | {spread(per_result)} | {ratio:.2f} |")
    body.append(f"\n{args.trials} no-op trials x {REPORTS} reports, concurrency 2, TPE + ASHA "
                "(rf 3), SQLite MLflow. Targets: hpsearch <= 0.5 s/trial, <= 10 ms per result.")
    write_section("Orchestration overhead (benchmarks/orchestration.py)", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
