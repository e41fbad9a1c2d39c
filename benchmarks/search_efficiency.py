"""Search efficiency: best validation accuracy vs cumulative training epochs.

A fixed real task: small_vgg on a Fashion-MNIST subset (400 images per class),
one fixed budget of training epochs per search, and the kind of wide space a
user writes before knowing the problem (learning rates over five decades,
three optimizers, widths, kernels, dropout, weight decay, batch sizes), in
which many configurations train badly. Three strategies, each over
``--seeds`` seeds, all through the product's engine:
    tpe+asha     TPE proposals, ASHA stops weak trials (grace 1, rf 3, max 27 epochs)
    tpe          TPE proposals, every trial trains its 27 epochs
    random       random proposals, every trial trains its 27 epochs
Reports, per strategy, the best accuracy found and the cumulative epochs needed
to come within 0.5 points of the best accuracy any strategy found in that seed.
Every search's curve is kept in search_efficiency_curves.json (keyed by
strategy, seed, budget and space), so ``--rerun tpe+asha`` re-measures one
strategy after a product change and reuses the others' curves.
Run: python benchmarks/search_efficiency.py [--seeds 3] [--budget 540] [--rerun S ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from ray import tune  # noqa: E402

MAX_EPOCHS = 27
CURVES = Path(__file__).resolve().parent / "search_efficiency_curves.json"
PER_CLASS = 400
SPACE = {
    "optimizer": {"choice": ["sgd", "adam", "rmsprop"]},
    "lr": {"loguniform": [1e-5, 1.0]},
    "weight_decay": {"loguniform": [1e-6, 1e-1]},
    "batch_size": {"choice": [32, 64, 128, 256]},
    "kernel_size": {"choice": [3, 5]},
    "width": {"choice": [8, 16, 32]},
    "dropout": {"uniform": [0.0, 0.7]},
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


def run(strategy: str, seed: int, budget: int, root: Path) -> tuple[list, list]:
    """(cumulative epochs, best val_accuracy so far) after every reported epoch,
    and each trial's last val_accuracy."""
    from benchmarks.common import recording_tracker
    from results.storage import Storage
    from search.engine import run_search
    from search.spec import parse_spec

    curve: list[tuple[int, float]] = []
    last: dict[str, float] = {}

    def record(trial, result) -> None:
        best = max(curve[-1][1] if curve else -math.inf, result["val_accuracy"])
        curve.append((len(curve) + 1, best))
        last[trial.trial_id] = result["val_accuracy"]

    spec = parse_spec({
        "name": f"eff-{strategy.replace('+', '-')}-{seed}", "trainable": "small_vgg",
        "data": {"source": "fashion-mnist", "per_class": PER_CLASS, "seed": 0},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random" if strategy == "random" else "tpe", "samples": 100,
                   "seed": seed, "concurrency": 2},
        "scheduler": {"name": "asha" if strategy == "tpe+asha" else "fifo",
                      "max_epochs": MAX_EPOCHS, "grace_period": 1, "reduction_factor": 3},
        "space": SPACE, "fixed": {"blocks": 3},
    }, source="benchmark")
    run_search(spec, storage=Storage(root), echo=lambda *_: None,
               tracker_class=recording_tracker(record),
               stopper=EpochBudget(budget))
    return curve, list(last.values())


def epochs_to_reach(curve, target: float) -> float:
    return next((e for e, best in curve if best >= target), math.inf)


def main() -> None:
    import ray

    from benchmarks.common import spread, write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=540,
                    help="training epochs per search (540 = 20 full-length trials)")
    ap.add_argument("--rerun", nargs="*", default=None, metavar="STRATEGY",
                    help="re-measure only these strategies (tpe+asha, tpe, random) and reuse the "
                         "stored curves of the others; with no names, measure only what is not "
                         "stored yet (resume an interrupted run); without --rerun, measure all")
    args = ap.parse_args()
    strategies = ("tpe+asha", "tpe", "random")
    stored = json.loads(CURVES.read_text()) if CURVES.exists() else {}
    space_id = hashlib.sha256(json.dumps([SPACE, PER_CLASS, MAX_EPOCHS], sort_keys=True)
                              .encode()).hexdigest()[:12]
    best = {s: [] for s in strategies}
    early = {s: [] for s in strategies}  # the best accuracy after a quarter of the budget
    needed = {s: [] for s in strategies}
    trials = {s: [] for s in strategies}
    finals: list[float] = []  # every random trial's final accuracy: how wide the space is
    for seed in range(args.seeds):
        curves = {}
        for s in strategies:
            key = f"{s}/seed{seed}/budget{args.budget}/space{space_id}"
            if args.rerun is not None and s not in args.rerun and key in stored:
                curves[s], last = stored[key]["curve"], stored[key]["last"]
            else:
                if not ray.is_initialized():
                    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                with tempfile.TemporaryDirectory() as tmp:
                    curves[s], last = run(s, seed, args.budget, Path(tmp))
                stored[key] = {"curve": curves[s], "last": last}
                CURVES.write_text(json.dumps(stored, separators=(",", ":")))
            trials[s].append(len(last))
            if s == "random":
                finals += last
            print(f"seed {seed}: {s}: best {curves[s][-1][1]:.4f} after {curves[s][-1][0]} "
                  f"epochs, {len(last)} trials", flush=True)
        target = max(c[-1][1] for c in curves.values()) - 0.005
        for s in strategies:
            best[s].append(curves[s][-1][1])
            early[s].append(max((b for e, b in curves[s] if e <= args.budget // 4), default=0.0))
            needed[s].append(epochs_to_reach(curves[s], target))
            print(f"seed {seed}: {s}: {needed[s][-1]} epochs to reach {target:.4f}", flush=True)
    ray.shutdown()
    body = ["| strategy | trials per search | best val accuracy | best after a quarter of the "
            "budget | epochs to within 0.5 pt of the seed's best | reached (seeds) |",
            "|---|---|---|---|---|---|"]
    for s in strategies:
        reached = [n for n in needed[s] if math.isfinite(n)]
        cell = spread(reached, "{:.0f}") if reached else "never"
        body.append(f"| {s} | {spread(trials[s], '{:.0f}')} | {spread(best[s], '{:.4f}')} | "
                    f"{spread(early[s], '{:.4f}')} | {cell} | {len(reached)}/{args.seeds} |")
    # a strategy that never reached the target counts its whole budget (a lower bound)
    capped = {s: [min(n, args.budget) for n in needed[s]] for s in strategies}
    for s in ("tpe+asha", "tpe"):
        ratio = [a / r for a, r in zip(capped[s], capped["random"])]
        body.append(f"\n{s} epochs / random epochs, per seed: {spread(ratio, '{:.2f}')}; "
                    f"over all seeds (sum / sum): {sum(capped[s]) / sum(capped['random']):.2f}.")
    finals.sort()
    body.append(
        f"\nsmall_vgg (3 blocks) on {PER_CLASS * 10:,} Fashion-MNIST images "
        f"({int(PER_CLASS * 10 * 0.7):,} train, {int(PER_CLASS * 10 * 0.15)} validation), "
        f"a budget of {args.budget} training epochs per search, trials of up to {MAX_EPOCHS} "
        "epochs, concurrency 2, one CPU thread per trial. Space: "
        + ", ".join(f"{k} {next(iter(v))} {next(iter(v.values()))}" for k, v in SPACE.items())
        + f". The random trials' final accuracies (n={len(finals)}): median "
        f"{statistics.median(finals):.3f}, lowest quarter below "
        f"{finals[len(finals) // 4]:.3f}. A seed whose search never reached the target counts "
        "its whole budget. Target: TPE+ASHA <= 25% of random search's epochs.")
    write_section("Search efficiency (benchmarks/search_efficiency.py)", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
