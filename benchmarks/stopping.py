"""How fast a search ends when it is stopped from outside, and what it leaves behind.

Runs `hpsearch run` as a user does (its own session, a new storage root each time)
on a small real search (ResNet-18, width 8, on digits; two trials of 300 epochs),
waits until both trials have logged an epoch, then stops it one way:
- group TERM: `kill -TERM -- -PGID`, what `scancel` and a terminal's job control send;
- timeout: `timeout 900 hpsearch run ...` expiring (SIGALRM to `timeout`, its timer);
- GCS killed: `kill -9` of the local Ray's GCS server;
- raylet killed: `kill -9` of the local raylet;
and reports the seconds from the stop to the process's exit, its exit code, and the
MLflow runs it left RUNNING. ``--baseline DIR`` first runs another checkout (the
commit before a change, unpacked with `git archive COMMIT | tar -x -C DIR`) for
comparison; a run that has not exited ``--limit`` seconds after the stop is killed
and counted as not exiting.
Also times `hpsearch plan spaces/resnet18.yaml` (on a machine without a GPU: the
bounded CPU measurement). Section "Stopping a search" of RESULTS.md.

Run: python benchmarks/stopping.py [--repeats 3] [--baseline DIR] [--limit 90] [--plan]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import yaml  # noqa: E402

from benchmarks.common import spread, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"name": "stop-bench", "trainable": "resnet18",
        "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random", "samples": 2, "seed": 0, "concurrency": 2},
        "scheduler": {"name": "fifo", "max_epochs": 300},
        "space": {"lr": {"loguniform": [1e-3, 3e-2]}},
        "fixed": {"stem": "cifar", "base_width": 8, "optimizer": "adam"}}
WAYS = ("group TERM", "timeout", "GCS killed", "raylet killed")


def runs_of(storage: Path) -> list:
    from mlflow.tracking import MlflowClient

    from hpsearch.results.storage import Storage

    meta = Storage(storage).read_meta(SPEC["name"])
    client = MlflowClient(meta["tracking_uri"])
    return client.search_runs([meta["experiment_id"]])


def once(way: str, code: Path, root: Path, limit: float) -> dict:
    spec, storage = root / "spec.yaml", root / "runs"
    spec.write_text(yaml.safe_dump(SPEC))
    prefix = [shutil.which("timeout"), "900"] if way == "timeout" else []
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "hpsearch", "run", str(spec),
                             "--storage", str(storage)], cwd=code, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(code)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from mlflow.tracking import MlflowClient

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # both trials have logged an epoch
        time.sleep(1)
        try:
            children = [r for r in runs_of(storage) if "trial_id" in r.data.tags]
            client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
            if len(children) == 2 and all(client.get_metric_history(r.info.run_id, "val_accuracy")
                                          for r in children):
                break
        except Exception:
            continue
    import psutil

    driver = psutil.Process(proc.pid)
    if way == "timeout":
        driver = driver.children()[0]
    t0 = time.monotonic()
    if way == "group TERM":
        os.killpg(proc.pid, signal.SIGTERM)
    elif way == "timeout":
        os.kill(proc.pid, signal.SIGALRM)
    else:
        name = "gcs_server" if way == "GCS killed" else "raylet"
        [daemon] = [p for p in driver.children() if p.name() == name]
        daemon.kill()
    try:
        exit_code = proc.wait(timeout=limit)
        seconds = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        for p in [driver, *driver.children(recursive=True)]:
            try:
                p.kill()
            except psutil.Error:
                pass
        proc.kill()
        proc.wait()
        exit_code, seconds = None, None
    running = sum(r.info.status == "RUNNING" for r in runs_of(storage))
    return {"seconds": seconds, "code": exit_code, "running": running}


def plan_seconds() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "hpsearch", "plan", "spaces/resnet18.yaml"], cwd=ROOT,
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another checkout, run first for comparison")
    ap.add_argument("--baseline-repeats", type=int, default=1)
    ap.add_argument("--baseline-name", help="what the baseline is (default: its folder)")
    ap.add_argument("--limit", type=float, default=90.0)
    ap.add_argument("--ways", nargs="*", default=list(WAYS))
    ap.add_argument("--plan", action="store_true", help="also time `hpsearch plan`")
    args = ap.parse_args()
    codes = ([("before", args.baseline.resolve(), args.baseline_repeats)] if args.baseline
             else []) + [("this checkout", ROOT, args.repeats)]
    rows = []
    for way in args.ways:
        for label, code, repeats in codes:
            results = []
            for _ in range(repeats):
                with tempfile.TemporaryDirectory(prefix="hpsearch-stop-") as tmp:
                    results.append(once(way, code, Path(tmp), args.limit))
                print(way, label, results[-1], flush=True)
            exited = [r["seconds"] for r in results if r["seconds"] is not None]
            exit_codes = sorted({str(r["code"]) for r in results})
            rows.append(f"| {way} | {label} | {spread(exited, '{:.1f}') if exited else '-'} | "
                        f"{len(results) - len(exited)} of {len(results)} | "
                        f"{', '.join(exit_codes)} | {sum(r['running'] for r in results)} |")
    body = ["| stopped by | code | s from the stop to the exit | not exited within "
            f"{args.limit:g} s | exit codes | runs left RUNNING (all repeats) |",
            "|---|---|---|---|---|---|", *rows]
    if args.plan:
        times = [plan_seconds() for _ in range(args.repeats)]
        body += ["", f"`hpsearch plan spaces/resnet18.yaml` on this CPU: {spread(times, '{:.0f}')} s"
                     " (the whole command; it measures within 20 s)."]
    body += ["", "Search: ResNet-18 (width 8) on digits, 2 trials x 300 epochs, stopped once "
                 "both trials logged an epoch. `before`: " + (
                     (args.baseline_name or str(args.baseline)) if args.baseline else "not run")
             + "."]
    write_section("Stopping a search (benchmarks/stopping.py)", "\n".join(body))


if __name__ == "__main__":
    main()
