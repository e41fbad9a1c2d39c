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
3. **Warm start after a space change** (``--part warm-space``): the
   other case the warm start is for. A search on all the data over a narrower space
   (fewer widths, a narrower learning-rate range), then the task's wider space cold and
   warm-started from it; every earlier trial lies in the new space. The same ratio.

   In parts 2 and 3 a warm search or control that ended below the cold best is given
   more trials (``resume --samples``, 8 at a time) until it gets there or has trained as
   many epochs as the cold search, so that its ratio is measured, not bounded.

``--task fashion`` runs the warm parts on search_efficiency.py's Fashion-MNIST task and
space (30 trials of up to 27 epochs), where a cold search needs far more epochs to its
best than on digits; ``--from-seed N`` measures another sample of seeds in a section of
its own.

    python benchmarks/search_questions.py --seeds 8            # both parts
    python benchmarks/search_questions.py --seeds 2 --smoke    # a quick rehearsal
    python benchmarks/search_questions.py --task fashion --part warm --seeds 10 --rerun 2

Each part writes its own section of benchmarks/RESULTS.md. Parts 2 and 3 run a control
beside the warm search: a second cold search with another seed, measured the same way
(what "no better than a cold start" reads as on this noisy measure).
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


def extended(doc: dict, storage, rows: list, curve_of, target: float, budget: int) -> list:
    """``rows`` of ``doc``'s search, given more trials (``resume --samples``, 8 at a time,
    the same study) until ``curve_of(rows)`` reaches ``target`` or has trained ``budget``
    epochs: a ratio then measured, not bounded by the search's own budget."""
    while not epochs_to(curve_of(rows), target)[1] and curve_of(rows)[-1][0] < budget:
        _, rows = search(doc, storage, more=8)
    return rows


def mo_asha_vs_random(seeds: int, storage):
    """The ratios, the table's rows and the control's ratios: random search again with
    another seed, measured (and given more trials) the same way as MO-ASHA."""
    from hpsearch.results.front import point, reference_point
    from hpsearch.results.objective import objectives_of

    ratios, lines, controls = [], [], []
    for seed in range(seeds):
        tpe = copy.deepcopy(TASK)
        tpe.update(name=f"moasha-{seed}")
        tpe["search"]["seed"] = seed
        rnd = copy.deepcopy(tpe)
        rnd.update(name=f"random-{seed}")
        rnd["search"]["algorithm"] = "random"
        rnd["scheduler"] = {"name": "fifo", "max_epochs": TASK["scheduler"]["max_epochs"]}
        again = copy.deepcopy(rnd)  # the control: random search again, another seed
        again.update(name=f"again-random-{seed}")
        again["search"]["seed"] = seed + 200
        (meta_t, rows_t), (meta_r, rows_r), (meta_a, rows_a) = (
            search(tpe, storage), search(rnd, storage), search(again, storage))
        objectives = objectives_of(meta_t["spec"])
        points = [p for r in rows_t + rows_r + rows_a if (p := point(r, objectives))]
        ref = reference_point(points)
        c_r = curve(meta_r, rows_r, ref)
        target, budget = c_r[-1][1], c_r[-1][0]
        cells = []
        for doc, meta, rows in ((tpe, meta_t, rows_t), (again, meta_a, rows_a)):
            own = curve(meta, rows, ref)[-1][0]
            rows = extended(doc, storage, rows, lambda rs, m=meta, r=ref: curve(m, rs, r), target,
                            budget)
            c = curve(meta, rows, ref)
            need, reached = epochs_to(c, target)
            if not reached:
                need = budget
            cells.append((own, c[-1][0], need, reached, need / budget))
        ratios.append(cells[0][4])
        controls.append(cells[1][4])
        (own, total, need, reached, ratio), control = cells
        lines.append(f"| {seed} | {own} | {budget} | {target:.4g} | {total} "
                     f"| {need}{'' if reached else ' (not reached: counted as random)'} "
                     f"| {ratio:.2f} | {control[2]}{'' if control[3] else ' (not reached)'} "
                     f"| {control[4]:.2f} |")
    return ratios, lines, controls


# --wide: learning rates over five decades and weight decay up to 0.3, so that many
# configurations train badly (as in search_efficiency.py's task, where TPE + ASHA met its
# target); the first space's trials nearly all end within a few images of the best
WIDE = {"lr": {"loguniform": [1e-5, 1.0]}, "weight_decay": {"loguniform": [1e-6, 0.3]}}

# --rerun: the warm search's search.warm_start_rerun (the spec's default: 0)
RERUN = 0

# the earlier search of part 3: the task's space, narrower (a subset of it)
NARROW = {"lr": {"loguniform": [1e-3, 3e-2]}, "base_width": {"choice": [4, 8, 16]}}


# --task fashion: search_efficiency.py's task (fixed there 2026-11-23, where TPE + ASHA met
# its target), for the warm start: a training curve of up to 27 epochs and a space in which
# most configurations train badly, so that a cold search needs many epochs to its best and
# an earlier search has something to teach. Chosen after the digits task missed (see
# RESULTS.md): on digits a cold search often reached its best within its first 2-3 trials.
FASHION_SAMPLES = 30
LABEL = {"digits": "ResNet-18 on digits", "fashion": "small_vgg (2 blocks) on 3,000 "
         "Fashion-MNIST images at 14 px (search_efficiency.py's task and space)"}
SUBSET = {"digits": 50, "fashion": 100}  # images per class of the earlier search: ~30 %
TASK_NAME = "digits"
FIRST_SEED = 0  # --from-seed: the warm parts' first seed (a second sample of seeds)


def use_fashion() -> None:
    """Make TASK search_efficiency.py's task (its data, space and 27-epoch trials)."""
    global TASK_NAME
    from benchmarks import search_efficiency as eff

    TASK.clear()
    TASK.update({
        "trainable": "small_vgg", "data": copy.deepcopy(eff.DATA),
        "objective": [{"metric": "val_accuracy", "mode": "max"},
                      {"metric": "num_params", "mode": "min"}],
        "search": {"algorithm": "tpe", "samples": FASHION_SAMPLES, "seed": 0,
                   "concurrency": eff.CONCURRENCY},
        "scheduler": {"name": "asha", "max_epochs": eff.MAX_EPOCHS, "grace_period": 1,
                      "reduction_factor": 3},
        "resources": {"cpus_per_trial": 1},
        "space": copy.deepcopy(eff.SPACE), "fixed": dict(eff.FIXED)})
    TASK_NAME = "fashion"
    NARROW.clear()  # part 3's earlier space: learning rates and weight decay that train
    NARROW.update({"lr": {"loguniform": [1e-4, 1e-1]},
                   "weight_decay": {"loguniform": [1e-6, 1e-2]}})

def warm_vs_cold(seeds: int, storage, change: str = "subset"):
    """``change``: what differs between the earlier search and the new one, ``subset``
    (its data: SUBSET images per class) or ``space`` (its space: NARROW). Returns the warm
    search's ratios, the table's rows and the control's ratios: a second cold search
    (another seed) measured the same way. Reaching the best another search ended with is
    harder than reaching one's own (that best is the maximum of the other search's noisy
    path): the control is what "no better than a cold start" reads as."""
    from hpsearch.results.notebook.discuss import standard_error
    from hpsearch.results.objective import Objective

    acc = Objective("val_accuracy", "max")
    near, near_controls = [], []
    single = {**copy.deepcopy(TASK), "objective": {"metric": "val_accuracy", "mode": "max"}}
    ratios, lines, controls = [], [], []
    for seed in range(FIRST_SEED, FIRST_SEED + seeds):
        earlier = copy.deepcopy(single)
        earlier.update(name=f"{change}-{seed}")
        earlier["search"]["seed"] = seed
        if change == "subset":
            earlier["data"]["per_class"] = SUBSET[TASK_NAME]
        else:
            earlier["space"].update(copy.deepcopy(NARROW))
        search(earlier, storage)
        cold = copy.deepcopy(single)
        cold.update(name=f"cold-{change}-{seed}")
        cold["search"]["seed"] = seed + 100
        warm = copy.deepcopy(cold)
        warm.update(name=f"warm-{change}-{seed}")
        warm["search"]["warm_start"] = f"{change}-{seed}"
        warm["search"]["warm_start_rerun"] = RERUN
        again = copy.deepcopy(cold)  # the control: a second cold search, another seed
        again.update(name=f"again-{change}-{seed}")
        again["search"]["seed"] = seed + 200
        (_, rows_c), (_, rows_w), (_, rows_a) = (search(cold, storage), search(warm, storage),
                                                 search(again, storage))

        def best_curve(rows):
            out, epochs, best = [], 0, None
            for r in rows:
                epochs += r.epochs
                if acc.better(r.best, best):
                    best = r.best
                out.append((epochs, best if best is not None else float("-inf")))
            return out

        c_c = best_curve(rows_c)
        target = c_c[-1][1]
        # one that ended below the cold best: more trials, up to the cold search's epochs
        rows_w = extended(warm, storage, rows_w, best_curve, target, c_c[-1][0])
        rows_a = extended(again, storage, rows_a, best_curve, target, c_c[-1][0])
        # the second reading: the cold best less one binomial standard error of the
        # validation split (what the split cannot tell apart from it)
        level = target - standard_error(target, val_size(cold["data"]))
        cells = []
        for goal in (target, level):
            cold_need, _ = epochs_to(c_c, goal)
            for rows in (rows_w, rows_a):
                need, reached = epochs_to(best_curve(rows), goal)
                cells.append((need, reached, need / cold_need))
            cells.append(cold_need)
        ratios.append(cells[0][2])
        controls.append(cells[1][2])
        near.append(cells[3][2])
        near_controls.append(cells[4][2])
        lines.append(f"| {seed} | {target:.4f} | {cells[2]} | " + " | ".join(
            f"{need}{'' if reached else ' (not reached)'} | {'' if reached else '≥'}{r:.2f}"
            for need, reached, r in cells[:2]) + f" | {level:.4f} | {cells[5]} | " + " | ".join(
            f"{'' if reached else '≥'}{r:.2f}" for need, reached, r in cells[3:5]) + " |")
    return ratios, lines, controls, near, near_controls


def val_size(data: dict) -> int:
    """The validation split's size of a data block."""
    from hpsearch.trainables.data import load

    return load(data).info["sizes"]["val"]


WARM_HEAD = ["| seed | cold best | cold epochs to it | warm epochs to it | ratio | control "
             "(cold, another seed) epochs to it | control ratio | cold best - 1 SE | cold "
             "epochs to it | warm ratio to it | control ratio to it |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]


def warm_summary(ratios: list[float], controls: list[float], near: list[float],
                 near_controls: list[float]) -> list[str]:
    return [f"**Ratio: {spread(ratios, '{:.2f}')}; target <= 0.5: "
            f"{'met' if statistics.median(ratios) <= 0.5 else 'missed'}.** The control's "
            f"ratio: {spread(controls, '{:.2f}')}.", "",
            f"To within one standard error of the cold best: warm {spread(near, '{:.2f}')}, "
            f"control {spread(near_controls, '{:.2f}')}.", ""]


def main() -> None:
    global RERUN, FIRST_SEED
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--smoke", action="store_true", help="6 trials, 3 epochs: a rehearsal")
    p.add_argument("--part", choices=["both", "moasha", "warm", "warm-space"], default="both",
                   help="both: MO-ASHA and the warm start from a subset; warm-space: the "
                        "warm start after a space change (each part its own section)")
    p.add_argument("--grace", type=int, default=TASK["scheduler"]["grace_period"],
                   help="ASHA's first rung, in epochs")
    p.add_argument("--samples", type=int, default=TASK["search"]["samples"])
    p.add_argument("--wide", action="store_true",
                   help=f"the task over a wider space ({WIDE}), where many configurations "
                        "train badly; its own sections")
    p.add_argument("--task", choices=["digits", "fashion"], default="digits",
                   help="fashion: search_efficiency.py's Fashion-MNIST task and space, "
                        f"{FASHION_SAMPLES} trials of up to 27 epochs (warm parts only); "
                        "its own sections")
    p.add_argument("--from-seed", type=int, default=0,
                   help="the warm parts' first seed: another sample of seeds in its own "
                        "section")
    p.add_argument("--rerun", type=int, default=RERUN,
                   help="the warm searches' search.warm_start_rerun (0, the spec's default: "
                        "the earlier trials seed the sampler only); its own sections")
    args = p.parse_args()
    RERUN, FIRST_SEED = args.rerun, args.from_seed
    if args.task == "fashion":
        if args.wide or args.part in ("both", "moasha"):
            p.error("--task fashion measures the warm parts only (--part warm or warm-space), "
                    "over its own space (no --wide)")
        use_fashion()
        args.samples = TASK["search"]["samples"]
    if args.wide:
        TASK["space"].update(copy.deepcopy(WIDE))
    TASK["scheduler"]["grace_period"], TASK["search"]["samples"] = args.grace, args.samples
    if args.smoke:
        TASK["search"]["samples"], TASK["scheduler"]["max_epochs"] = 6, 3
        TASK["scheduler"]["grace_period"] = 1
    from hpsearch._api import environment_defaults

    environment_defaults()  # Tune's snapshot warnings and Ray's INFO lines stay quiet
    import ray

    from hpsearch.results.storage import Storage

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    parts = {"both": ["moasha", "warm"]}.get(args.part, [args.part])
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "runs")
        for part in parts:
            section, body = PARTS[part](args.seeds, storage)
            if part != "moasha":
                section += f", warm_start_rerun {args.rerun}"
            if args.task != "digits":
                section += ", Fashion-MNIST"
            if args.from_seed and part != "moasha":
                section += f", seeds {args.from_seed}-{args.from_seed + args.seeds - 1}"
            if args.wide:
                section += ", wide space"
                body = [f"The space widened: {WIDE} (chosen after the first task's misses, "
                        "to see whether they are the task's: on digits nearly every "
                        "configuration of the first space ends within a few images of the "
                        "best).", "", *body]
            write_section(f"{section} (benchmarks/search_questions.py)", "\n".join(body))
            print("\n".join(body))


def moasha_part(seeds: int, storage) -> tuple[str, list[str]]:
    ratios, lines, controls = mo_asha_vs_random(seeds, storage)
    grace = TASK["scheduler"]["grace_period"]
    return f"Several objectives: MO-ASHA, grace period {grace}", [
        f"ResNet-18 on digits, max val_accuracy / min num_params, "
        f"{TASK['search']['samples']} trials of up to {TASK['scheduler']['max_epochs']} "
        f"epochs each (ASHA: grace period {grace}, reduction factor "
        f"{TASK['scheduler']['reduction_factor']}), concurrency 2. MO-ASHA + multi-objective "
        "TPE against multi-objective random search without early stopping. Ratio: epochs "
        "MO-ASHA + TPE needed to reach the hypervolume random search ended with / random's "
        "epochs (target <= 0.5). The control: random search again with another seed, "
        "measured and extended the same way.", "",
        "| seed | MO-ASHA's own epochs | random's epochs | random's final HV | MO-ASHA "
        "epochs with extensions | MO-ASHA epochs to random's HV | ratio | control epochs "
        "to random's HV | control ratio |",
        "|---|---|---|---|---|---|---|---|---|", *lines, "",
        f"**Ratio: {spread(ratios, '{:.2f}')}; mean {statistics.fmean(ratios):.2f}; "
        f"target <= 0.5: {'met' if statistics.median(ratios) <= 0.5 else 'missed'}.** "
        f"The control's ratio: {spread(controls, '{:.2f}')}.", ""]


def warm_part(seeds: int, storage, change: str = "subset") -> tuple[str, list[str]]:
    ratios, lines, controls, near, near_controls = warm_vs_cold(seeds, storage, change=change)
    task = (f"{LABEL[TASK_NAME]}, one objective (val_accuracy), {TASK['search']['samples']} "
            f"trials of up to {TASK['scheduler']['max_epochs']} epochs each (ASHA), "
            "concurrency 2: ")
    if change == "subset":
        title = "Warm start from a subset"
        task += (f"a search on {SUBSET[TASK_NAME]} images per class (about 30 % of the data), "
                 "then on all the data cold and warm-started from it.")
    else:
        title = "Warm start after a space change"
        space = {k: v for k, v in TASK["space"].items() if k in NARROW}
        task += (f"a search on all the data over a narrower space (`{NARROW}`), then over the "
                 f"task's space (`{space}`) cold and warm-started from it; every earlier trial "
                 "lies in the new space.")
    task += (" A warm search or control that ended below the cold best was given more "
             "trials, 8 at a time (`resume --samples`), until it reached it or had trained "
             "as many epochs as the cold search.")
    task += (f" The warm search trains the earlier search's best {RERUN} configuration(s) "
             "again first (`search.warm_start_rerun`)." if RERUN else
             " The earlier trials seed the sampler only (`search.warm_start_rerun: 0`, the "
             "default).")
    return title, [
        task + " Ratio: epochs the warm search needed to reach the cold search's final best "
        "/ the epochs the cold search needed to reach it (target <= 0.5). The control: a "
        "second cold search (another seed) measured the same way. The second reading asks "
        "for the cold best less one binomial standard error of the validation split, a "
        "level the split cannot tell apart from it (the cold search's own epochs to that "
        "level below the ratio).", "",
        *WARM_HEAD, *lines, "", *warm_summary(ratios, controls, near, near_controls)]


PARTS = {"moasha": moasha_part, "warm": warm_part,
         "warm-space": lambda seeds, storage: warm_part(seeds, storage, change="space")}


if __name__ == "__main__":
    main()
