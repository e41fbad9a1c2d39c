"""Several objectives and warm starts, measured: what they save in epochs trained.

1. **MO-ASHA + multi-objective TPE against multi-objective random search without early
   stopping**, on the same small task (ResNet-18 on scikit-learn's digits: maximize
   ``val_accuracy``, minimize ``num_params``; the width is searched) with the same
   number of trials, over many seeds. Each search's hypervolume is followed trial by
   trial (in the order trials ended) against the epochs trained so far, with one
   reference point per seed for both strategies. Reported: the epochs MO-ASHA + TPE
   needed to reach the hypervolume random search ended with, as a ratio of random's
   epochs (target: <= 0.5), n, median and spread. Where MO-ASHA's search ended below
   it, the search is given more trials (``resume --samples``, 8 at a time) until it
   gets there or has trained as many epochs as random search: the ratio is then
   measured, not bounded by MO-ASHA's own budget (a seed that still misses counts at
   random's epochs, a ratio of 1).
2. **Warm start against a cold start**: a search on a 30 % subset of the data, then on
   the full data twice, cold and warm-started from the subset's search. Reported: the
   epochs the warm search needed to reach the best the cold one ended with, as a ratio
   of the cold search's epochs to its own best (target: <= 0.5).

    python benchmarks/search_questions.py --seeds 8            # both parts
    python benchmarks/search_questions.py --seeds 2 --smoke    # a quick rehearsal

Results go to benchmarks/RESULTS.md (section "Several objectives and warm starts").
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

from benchmarks.common import spread, write_section  # noqa: E402

TASK = {
    "trainable": "resnet18",
    "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "objective": [{"metric": "val_accuracy", "mode": "max"},
                  {"metric": "num_params", "mode": "min"}],
    "search": {"algorithm": "tpe", "samples": 16, "seed": 0, "concurrency": 2},
    "scheduler": {"name": "asha", "max_epochs": 9, "grace_period": 1, "reduction_factor": 3},
    "resources": {"cpus_per_trial": 1},
    "space": {"lr": {"loguniform": [3e-4, 1e-1]}, "base_width": {"choice": [4, 6, 8, 12, 16]},
              "optimizer": {"choice": ["sgd", "adam"]}, "batch_size": {"choice": [32, 64]}},
    "fixed": {"stem": "cifar"},
}


def search(doc: dict, storage, more: int = 0) -> list:
    """Run one search quietly (or, ``more``, give the search of that name ``more`` trials);
    its trial rows (from MLflow) in the order they ended."""
    from hpsearch.results.mlflow_runs import child_runs
    from hpsearch.results.status import trial_rows
    from hpsearch.search.engine import extend_search, run_search
    from hpsearch.search.spec import parse_spec

    if more:
        total = len(trial_rows(doc["name"], storage)[1]) + more
        extend_search(doc["name"], storage=storage, samples=total, echo=lambda *_: None)
    else:
        run_search(parse_spec(doc, source=doc["name"]), storage=storage,
                   echo=lambda *_: None, verbose=False)
    meta, rows = trial_rows(doc["name"], storage)
    ended = {r.info.run_id: r.info.end_time or 0 for r in child_runs(
        meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"])}
    return meta, sorted(rows, key=lambda r: ended.get(r.run_id, 0))


def curve(meta: dict, rows: list, reference) -> list[tuple[int, float]]:
    """(epochs trained so far, hypervolume of the front so far) after each trial."""
    from hpsearch.results.front import point
    from hpsearch.results.objective import hypervolume, objectives_of

    objectives = objectives_of(meta["spec"])
    out, epochs, seen = [], 0, []
    for r in rows:
        epochs += r.epochs
        p = point(r, objectives)
        if p is not None:
            seen.append(p)
        out.append((epochs, hypervolume(seen, reference) if seen else 0.0))
    return out


def epochs_to(curve_: list[tuple[int, float]], target: float) -> tuple[int, bool]:
    """Epochs at which the curve first reaches ``target`` (else its total, False)."""
    for epochs, value in curve_:
        if value >= target - 1e-12:
            return epochs, True
    return curve_[-1][0], False


def mo_asha_vs_random(seeds: int, storage) -> tuple[list[float], list[str]]:
    from hpsearch.results.front import point, reference_point
    from hpsearch.results.objective import objectives_of

    ratios, lines = [], []
    for seed in range(seeds):
        tpe = copy.deepcopy(TASK)
        tpe.update(name=f"moasha-{seed}")
        tpe["search"]["seed"] = seed
        rnd = copy.deepcopy(tpe)
        rnd.update(name=f"random-{seed}")
        rnd["search"]["algorithm"] = "random"
        rnd["scheduler"] = {"name": "fifo", "max_epochs": TASK["scheduler"]["max_epochs"]}
        (meta_t, rows_t), (meta_r, rows_r) = search(tpe, storage), search(rnd, storage)
        objectives = objectives_of(meta_t["spec"])
        points = [p for r in rows_t + rows_r if (p := point(r, objectives))]
        ref = reference_point(points)
        c_t, c_r = curve(meta_t, rows_t, ref), curve(meta_r, rows_r, ref)
        target, own = c_r[-1][1], c_t[-1][0]
        need, reached = epochs_to(c_t, target)
        while not reached and c_t[-1][0] < c_r[-1][0]:  # more trials, the same study
            meta_t, rows_t = search(tpe, storage, more=8)
            c_t = curve(meta_t, rows_t, ref)
            need, reached = epochs_to(c_t, target)
        if not reached:
            need = c_r[-1][0]
        ratios.append(need / c_r[-1][0])
        lines.append(f"| {seed} | {own} | {c_r[-1][0]} | {target:.4g} | {c_t[-1][0]} "
                     f"| {need}{'' if reached else ' (not reached: counted as random)'} "
                     f"| {ratios[-1]:.2f} |")
    return ratios, lines


def warm_vs_cold(seeds: int, storage) -> tuple[list[float], list[str]]:
    from hpsearch.results.objective import Objective

    acc = Objective("val_accuracy", "max")
    single = {**copy.deepcopy(TASK), "objective": {"metric": "val_accuracy", "mode": "max"}}
    ratios, lines = [], []
    for seed in range(seeds):
        subset = copy.deepcopy(single)
        subset.update(name=f"subset-{seed}")
        subset["search"]["seed"] = seed
        subset["data"]["per_class"] = 50  # about 30 % of digits' ~180 images per class
        search(subset, storage)
        cold = copy.deepcopy(single)
        cold.update(name=f"cold-{seed}")
        cold["search"]["seed"] = seed + 100
        warm = copy.deepcopy(cold)
        warm.update(name=f"warm-{seed}")
        warm["search"]["warm_start"] = f"subset-{seed}"
        (_, rows_c), (_, rows_w) = search(cold, storage), search(warm, storage)

        def best_curve(rows):
            out, epochs, best = [], 0, None
            for r in rows:
                epochs += r.epochs
                if acc.better(r.best, best):
                    best = r.best
                out.append((epochs, best if best is not None else float("-inf")))
            return out

        c_c, c_w = best_curve(rows_c), best_curve(rows_w)
        target = c_c[-1][1]
        cold_need, _ = epochs_to(c_c, target)
        need, reached = epochs_to(c_w, target)
        ratios.append(need / cold_need)
        lines.append(f"| {seed} | {target:.4f} | {cold_need} | {need}"
                     f"{'' if reached else ' (not reached)'} | "
                     f"{'' if reached else '≥'}{ratios[-1]:.2f} |")
    return ratios, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--smoke", action="store_true", help="6 trials, 3 epochs: a rehearsal")
    p.add_argument("--part", choices=["both", "moasha", "warm"], default="both")
    p.add_argument("--grace", type=int, default=TASK["scheduler"]["grace_period"],
                   help="ASHA's first rung, in epochs")
    p.add_argument("--samples", type=int, default=TASK["search"]["samples"])
    args = p.parse_args()
    TASK["scheduler"]["grace_period"], TASK["search"]["samples"] = args.grace, args.samples
    if args.smoke:
        TASK["search"]["samples"], TASK["scheduler"]["max_epochs"] = 6, 3
        TASK["scheduler"]["grace_period"] = 1
    from hpsearch._api import environment_defaults

    environment_defaults()  # Tune's snapshot warnings and Ray's INFO lines stay quiet
    import ray

    from hpsearch.results.storage import Storage

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    body = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "runs")
        if args.part in ("both", "moasha"):
            ratios, lines = mo_asha_vs_random(args.seeds, storage)
            body += [
                "### MO-ASHA + multi-objective TPE vs multi-objective random search (no "
                "early stopping)", "",
                f"ResNet-18 on digits, max val_accuracy / min num_params, "
                f"{TASK['search']['samples']} trials of up to {TASK['scheduler']['max_epochs']} "
                f"epochs each (ASHA: grace period {TASK['scheduler']['grace_period']}, "
                f"reduction factor {TASK['scheduler']['reduction_factor']}), concurrency 2. Ratio: epochs MO-ASHA + TPE needed to reach the "
                "hypervolume random search ended with / random's epochs (target <= 0.5).", "",
                "| seed | MO-ASHA's own epochs | random's epochs | random's final HV | MO-ASHA "
                "epochs with extensions | MO-ASHA epochs to random's HV | ratio |",
                "|---|---|---|---|---|---|---|", *lines, "",
                f"**Ratio: {spread(ratios, '{:.2f}')}; mean {statistics.fmean(ratios):.2f}; "
                f"target <= 0.5: {'met' if statistics.median(ratios) <= 0.5 else 'missed'}.**", ""]
        if args.part in ("both", "warm"):
            ratios, lines = warm_vs_cold(args.seeds, storage)
            body += [
                "### Warm start vs cold start", "",
                "The same task, one objective (val_accuracy): a search on 50 images per class, "
                "then on all the data cold and warm-started from it. Ratio: epochs the warm "
                "search needed to reach the cold search's final best / the epochs the cold "
                "search needed to reach it (target <= 0.5).", "",
                "| seed | cold best | cold epochs to it | warm epochs to it | ratio |",
                "|---|---|---|---|---|", *lines, "",
                f"**Ratio: {spread(ratios, '{:.2f}')}; target <= 0.5: "
                f"{'met' if statistics.median(ratios) <= 0.5 else 'missed'}.**", ""]
    write_section("Several objectives and warm starts (benchmarks/search_questions.py)",
                  "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
