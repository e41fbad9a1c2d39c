"""Fixed costs a user waits for: `hpsearch run` up to its first trial, and `hpsearch export`.

Runs the CLI as a user does (a fresh process each time, a new storage root each
run), ``--repeats`` times (default 3), and reports:
- first trial: seconds from launching `hpsearch run SPEC --samples 2 --max-epochs 1`
  to the first trial run's start in MLflow (its ``start_time``): the CLI's imports,
  spec checks, Ray's start, the MLflow store and parent run, Tune's set-up;
- run wall: the whole command, the process's exit included;
- export wall: `hpsearch export NAME` in a fresh process, exit included;
- the same run through the Python API (``python -c "hpsearch.run(...)"``, a fresh
  process): first trial and whole command, which should equal the CLI's;
- ``import hpsearch``: a fresh interpreter's import of the package (target <= 0.3 s;
  no Ray, torch or MLflow may be imported by it), the interpreter's own start excluded.
Section "Start-up and export" of RESULTS.md. The GPU machine of issue 12 runs
the same script with ``--spec spaces/resnet18.yaml`` (its trials then use the GPU).

Run: python benchmarks/startup_export.py [--spec spaces/quickstart.yaml] [--repeats 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks.common import spread, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HPSEARCH = [sys.executable, "-c", "import sys; from hpsearch.search.cli import main; sys.exit(main())"]
API = ("import sys, hpsearch; hpsearch.run(sys.argv[1], samples=2, max_epochs=1, "
       "storage=sys.argv[2], progress=False)")
IMPORT = ("import time, sys; t = time.perf_counter(); import hpsearch; "
          "print(time.perf_counter() - t, any(m in sys.modules for m in ('ray', 'torch', 'mlflow')))")


def import_seconds(repeats: int) -> tuple[list[float], bool]:
    """Seconds of `import hpsearch` in fresh interpreters; whether any imported a heavy one."""
    times, heavy = [], False
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", IMPORT], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
        times.append(float(out[0]))
        heavy = heavy or out[1] == "True"
    return times, heavy


def first_trial(name: str, storage: Path, t0: float) -> float:
    from mlflow.tracking import MlflowClient

    from hpsearch.results.status import trial_rows
    from hpsearch.results.storage import Storage

    meta, rows = trial_rows(name, Storage(storage))
    client = MlflowClient(meta["tracking_uri"])
    return min(client.get_run(r.run_id).info.start_time for r in rows) / 1000 - t0


def once(spec: str, root: Path) -> dict:
    from hpsearch.search.spec import load_spec

    name = load_spec(spec).name
    storage = root / "runs"
    t0 = time.time()
    subprocess.run([*HPSEARCH, "run", spec, "--samples", "2", "--max-epochs", "1",
                    "--storage", str(storage)], cwd=ROOT, check=True, capture_output=True)
    run_wall = time.time() - t0
    first = first_trial(name, storage, t0)
    t1 = time.time()
    subprocess.run([*HPSEARCH, "export", name, "--storage", str(storage)], cwd=ROOT, check=True,
                   capture_output=True)
    export = time.time() - t1
    api_storage = root / "api-runs"
    t2 = time.time()
    subprocess.run([sys.executable, "-c", API, spec, str(api_storage)], cwd=ROOT, check=True,
                   capture_output=True)
    return {"first": first, "run": run_wall, "export": export,
            "api_first": first_trial(name, api_storage, t2), "api_run": time.time() - t2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="spaces/quickstart.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="hpsearch-startup-") as tmp:
            rows.append(once(args.spec, Path(tmp)))
        print(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[-1].items()),
              flush=True)
    imports, heavy = import_seconds(max(5, args.repeats))
    body = ["| what | seconds |", "|---|---|",
            f"| `import hpsearch` (fresh interpreter; target <= 0.3) | {spread(imports)} |",
            f"| `hpsearch run` to the first trial's MLflow run | {spread([r['first'] for r in rows])} |",
            f"| `hpsearch run` (2 trials, 1 epoch), whole command | {spread([r['run'] for r in rows])} |",
            f"| `hpsearch export`, whole command | {spread([r['export'] for r in rows])} |",
            f"| `hpsearch.run(...)` to the first trial's MLflow run | "
            f"{spread([r['api_first'] for r in rows])} |",
            f"| `hpsearch.run(...)` (2 trials, 1 epoch), whole process | "
            f"{spread([r['api_run'] for r in rows])} |",
            "", f"`import hpsearch` imported Ray, torch or MLflow: {'yes' if heavy else 'no'}.",
            "", f"Spec `{args.spec}`, `--samples 2 --max-epochs 1`, a new storage root per repeat "
            "(the MLflow store template already cached, as after a user's first search). Each "
            "command is a fresh process, its exit included."]
    write_section("Start-up and export (benchmarks/startup_export.py)", "\n".join(body))


if __name__ == "__main__":
    main()
