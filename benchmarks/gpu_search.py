"""A whole search on a GPU: a shipped spec end to end through ``run_search`` + export.

Reports, per setting (trials packed per GPU x GPU share): the wall time of the
search and of the export, the seconds from the script's start to the first GPU
kernel and to the first trial result, the fraction of the search's wall time
the GPU was busy (NVML utilization sampled every 0.5 s: the share of each
sample period in which a kernel ran), trials started and finished, epochs
trained, the best validation accuracy and the exported bundle's test accuracy.
By default on the full data set (the spec's ``per_class`` subset removed).

On a machine without CUDA it runs a tiny version (``--smoke`` of the spec, CPU
trials) so the script stays runnable everywhere, and says what it skipped.
Run: python benchmarks/gpu_search.py [--spec spaces/resnet18.yaml]
     [--settings 4x0.25,8x0.125] [--time-budget 420] [--samples N] [--keep-subset]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # before Ray, MLflow and torch are imported: the user's wait
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


class GpuSampler(threading.Thread):
    """NVML utilization every ``period`` seconds, in a thread of this process."""

    def __init__(self, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.period = pynvml, period
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self.samples: list[tuple[float, int]] = []  # (seconds since STARTED, percent busy)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            self.samples.append((time.perf_counter() - STARTED, int(util)))
            self.stop_event.wait(self.period)

    def busy(self, start: float, end: float) -> float:
        window = [u for t, u in self.samples if start <= t <= end]
        return sum(window) / (100 * len(window)) if window else 0.0

    def first_kernel(self) -> float | None:
        return next((t for t, u in self.samples if u > 0), None)


def search_once(spec, root: Path, *, time_budget: float | None, sampler) -> dict:
    """One search + export; the numbers of one row."""
    from ray.tune.stopper import TimeoutStopper

    from benchmarks.common import recording_tracker
    from hpsearch.results.export import export_best
    from hpsearch.results.storage import Storage
    from hpsearch.search.engine import run_search

    epochs: dict[str, int] = {}
    best = [0.0]
    first_result = [None]

    def record(trial, result) -> None:
        epochs[trial.trial_id] = epochs.get(trial.trial_id, 0) + 1
        if first_result[0] is None:
            first_result[0] = time.perf_counter() - t0
        value = result.get(spec.metric)
        if isinstance(value, float) and value == value:
            best[0] = max(best[0], value)

    storage = Storage(root)
    t0 = time.perf_counter()  # first_result counts from here: the search's own start-up
    outcome = run_search(spec, storage=storage, echo=lambda *_: None,
                         tracker_class=recording_tracker(record),
                         stopper=TimeoutStopper(time_budget) if time_budget else None)
    t1 = time.perf_counter()
    bundle = export_best(spec.name, storage=storage)
    t2 = time.perf_counter()
    reasons = stop_reasons(storage, spec.name)
    row = {"search_s": t1 - t0, "export_s": t2 - t1, "started": len(epochs),
           "completed": reasons.count("completed"), "asha": reasons.count("asha_stopped"),
           "epochs": sum(epochs.values()), "best_val": best[0],
           "test": bundle.metrics["test"].get("accuracy"), "first_result_s": first_result[0],
           "trials": outcome.num_trials, "errors": outcome.num_errors}
    if sampler is not None:
        row["busy"] = sampler.busy(t0 - STARTED, t1 - STARTED)
    return row


def stop_reasons(storage, name: str) -> list[str]:
    """The stop_reason of every trial run of a search (from MLflow)."""
    from hpsearch.results.status import trial_rows

    return [r.stop_reason for r in trial_rows(name, storage)[1]]


def main() -> None:
    import torch

    from benchmarks.common import write_section
    from hpsearch.search.spec import load_spec

    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="spaces/resnet18.yaml")
    ap.add_argument("--settings", default="4x0.25",
                    help="comma-separated TRIALSxGPU_SHARE, e.g. 4x0.25,8x0.125")
    ap.add_argument("--samples", type=int, help="override the spec's trial count")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="stop each search after this many seconds (the export still runs)")
    ap.add_argument("--keep-subset", action="store_true",
                    help="keep the spec's per_class subset instead of the full data set")
    ap.add_argument("--section", default="",
                    help="a suffix for this run's RESULTS.md section (e.g. packing), so runs "
                         "with different settings keep separate sections")
    args = ap.parse_args()

    sampler = None
    if cuda:
        sampler = GpuSampler()
        sampler.start()
    rows, skipped = [], []
    for setting in args.settings.split(","):
        k, share = setting.split("x")
        overrides = {"search.concurrency": (int(k), "--settings"),
                     "resources.gpus_per_trial": (float(share) if cuda else 0.0, "--settings"),
                     "search.samples": (args.samples, "--samples")}
        spec = load_spec(args.spec, overrides, smoke=not cuda)
        if cuda and not args.keep_subset:
            import dataclasses

            data = {k2: v for k2, v in spec.data.items() if k2 != "per_class"}
            spec = dataclasses.replace(spec, data=data, raw={**spec.raw, "data": data})
        with tempfile.TemporaryDirectory(prefix="hpsearch-gpu-search-") as tmp:
            row = search_once(spec, Path(tmp), time_budget=args.time_budget, sampler=sampler)
        row["setting"] = f"{k} x {share}" if cuda else f"{k} CPU trials (smoke)"
        rows.append(row)
        print(row, flush=True)
    first_kernel = sampler.first_kernel() if sampler else None
    if sampler:
        sampler.stop_event.set()
    data_note = ("the spec's subset" if args.keep_subset or not cuda
                 else "the full data set (per_class removed)")
    body = [f"`{args.spec}` on {data_note}, samples {spec.samples}, "
            f"max {spec.max_epochs} epochs"
            + (f", each search stopped after {args.time_budget:.0f} s" if args.time_budget else "")
            + ".", "",
            "| trials x GPU share | search s | export s | search start to first result s | GPU busy | trials "
            "started | ran to the end | stopped by ASHA | epochs | best val_accuracy | "
            "exported test accuracy |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        busy = f"{r['busy']:.0%}" if "busy" in r else "n/a"
        body.append(f"| {r['setting']} | {r['search_s']:.0f} | {r['export_s']:.0f} | "
                    f"{r['first_result_s'] or float('nan'):.1f} | {busy} | {r['started']} | "
                    f"{r['completed']} | {r['asha']} | {r['epochs']} | {r['best_val']:.4f} | {r['test']:.4f} |")
    if first_kernel is not None:
        body.append(f"\nFirst GPU kernel {first_kernel:.1f} s after the script started "
                    "(Python, Ray and MLflow start-up, data loading).")
    if not cuda:
        skipped.append("no CUDA device: ran the spec's --smoke version on CPU; GPU busy "
                       "fraction, first-kernel time and the full data set were skipped")
        body.append("\n" + "; ".join(skipped) + ".")
    title = "Whole search on a GPU" if cuda else "Whole search, CPU smoke"
    suffix = f": {args.section}" if args.section else ""
    write_section(f"{title}{suffix} (benchmarks/gpu_search.py)", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
