"""Search efficiency: best validation accuracy vs cumulative training epochs.

A fixed real task: small_vgg on a Fashion-MNIST subset (200 images per class),
one fixed budget of training epochs per search. Three strategies, each over
``--seeds`` seeds, all through the product's engine:
    tpe+asha     TPE proposals, ASHA stops weak trials (grace 1, rf 3, max 9 epochs)
    tpe          TPE proposals, every trial trains its 9 epochs
    random       random proposals, every trial trains its 9 epochs
Reports, per strategy, the best accuracy found and the cumulative epochs needed
to come within 0.5 points of the best accuracy any strategy found in that seed.
Run: python benchmarks/search_efficiency.py [--seeds 3] [--budget 54]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from ray import tune  # noqa: E402

MAX_EPOCHS = 9
CAVEAT = ('TPE starts with min(10, samples / 3) random trials drawn like the seeded random sampler\'s; a budget of 6 full trials never leaves that phase, so "tpe" and "random" coincide here and the comparison that this budget measures is ASHA vs full-length trials. A larger budget (or fewer start-up trials) is needed to see TPE itself.')
SPACE = {
    "optimizer": {"choice": ["sgd", "adam"]},
    "lr": {"loguniform": [1e-4, 3e-1]},
    "kernel_size": {"choice": [3, 5, 7]},
    "width": {"choice": [8, 16]},
    "dropout": {"uniform": [0.0, 0.5]},
}


class EpochBudget(tune.Stopper):
    """Stop the whole search once its trials have trained `budget` epochs in all."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0

    def __call__(self, trial_id, result) -> bool:
        self.used += 1
        return False

    def stop_all(self) -> bool:
        return self.used >= self.budget


def run(strategy: str, seed: int, budget: int, root: Path) -> list[tuple[int, float]]:
    """(cumulative epochs, best val_accuracy so far) after every reported epoch."""
    from results.storage import Storage
    from results.tracking import MlflowTracker
    from search.engine import run_search
    from search.spec import parse_spec

    curve: list[tuple[int, float]] = []

    class Recorder(MlflowTracker):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            best = max(curve[-1][1] if curve else -math.inf, result["val_accuracy"])
            curve.append((len(curve) + 1, best))
            super().on_trial_result(iteration, trials, trial, result, **info)

    spec = parse_spec({
        "name": f"eff-{strategy.replace('+', '-')}-{seed}", "trainable": "small_vgg",
        "data": {"source": "fashion-mnist", "per_class": 200, "seed": 0},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random" if strategy == "random" else "tpe", "samples": 100,
                   "seed": seed, "concurrency": 2},
        "scheduler": {"name": "asha" if strategy == "tpe+asha" else "fifo",
                      "max_epochs": MAX_EPOCHS, "grace_period": 1, "reduction_factor": 3},
        "space": SPACE, "fixed": {"batch_size": 64, "blocks": 3},
    }, source="benchmark")
    run_search(spec, storage=Storage(root), echo=lambda *_: None, tracker_class=Recorder,
               stopper=EpochBudget(budget))
    return curve


def epochs_to_reach(curve, target: float) -> float:
    return next((e for e, best in curve if best >= target), math.inf)


def main() -> None:
    import ray

    from benchmarks.common import spread, write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=54, help="training epochs per search")
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    strategies = ("tpe+asha", "tpe", "random")
    best = {s: [] for s in strategies}
    needed = {s: [] for s in strategies}
    for seed in range(args.seeds):
        curves = {}
        for s in strategies:
            with tempfile.TemporaryDirectory() as tmp:
                curves[s] = run(s, seed, args.budget, Path(tmp))
            print(f"seed {seed}: {s}: best {curves[s][-1][1]:.4f} after {curves[s][-1][0]} epochs")
        target = max(c[-1][1] for c in curves.values()) - 0.005
        for s in strategies:
            best[s].append(curves[s][-1][1])
            needed[s].append(epochs_to_reach(curves[s], target))
    ray.shutdown()
    body = ["| strategy | best val accuracy | epochs to within 0.5 pt of the seed's best | "
            "reached (seeds) |", "|---|---|---|---|"]
    for s in strategies:
        reached = [n for n in needed[s] if math.isfinite(n)]
        cell = spread(reached, "{:.0f}") if reached else "never"
        body.append(f"| {s} | {spread(best[s], '{:.4f}')} | {cell} | {len(reached)}/{args.seeds} |")
    ratio = [a / r for a, r in zip(needed["tpe+asha"], needed["random"])
             if math.isfinite(a) and math.isfinite(r)]
    if ratio:
        body.append(f"\nTPE+ASHA epochs / random epochs (seeds where both reached the target): "
                    f"{spread(ratio, '{:.2f}')}; median {statistics.median(ratio):.2f}.")
    body.append(f"\nsmall_vgg on 2,000 Fashion-MNIST images (1,400 train), a budget of "
                f"{args.budget} training epochs per search, trials of up to {MAX_EPOCHS} epochs, "
                "concurrency 2. Target: TPE+ASHA <= 25% of random search's epochs. " + CAVEAT)
    write_section("Search efficiency (benchmarks/search_efficiency.py)", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
