"""How long `hpsearch notebook` takes for an exported search: writing the notebook and
running it top to bottom in a fresh kernel (the target: at most 60 s on 2 CPU cores).

The search is the README's quickstart (8 trials of ResNet-18 on a Fashion-MNIST subset),
run and exported once, untimed; then `hpsearch notebook NAME --to FILE.ipynb` runs
``--repeats`` times, each a new process as a student would start it, and its wall time
is the measure. It reads what the search stored and trains nothing.

    python benchmarks/handin_notebook.py [--spec spaces/quickstart.yaml] [--repeats 3]
                                         [--storage DIR]   # reuse a search stored there
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import spread, write_section  # noqa: E402

TARGET_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="spaces/quickstart.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--storage", help="a storage root that already holds the search")
    args = ap.parse_args()

    import hpsearch

    storage = Path(args.storage or tempfile.mkdtemp(prefix="hpsearch-bench-nb-")) / "runs"
    name = hpsearch.load_spec(args.spec).name
    if not (storage / "exports" / name / "metrics.json").is_file():
        print(f"running and exporting {args.spec} once (untimed) ...", flush=True)
        hpsearch.run(args.spec, storage=storage, export=True, overwrite=True, progress=False)
    search = hpsearch.load(name, storage=storage)
    trials, cells = len(search.trials), None
    times = []
    for i in range(args.repeats):
        to = storage.parent / f"notebook-{i}.ipynb"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hpsearch", "notebook", name, "--to", str(to),
                        "--storage", str(storage)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
        import nbformat

        cells = len(nbformat.read(str(to), as_version=4).cells)
        print(f"notebook {i + 1}/{args.repeats}: {times[-1]:.1f} s", flush=True)
    met = max(times) <= TARGET_S
    write_section("Hand-in notebook (benchmarks/handin_notebook.py)", f"""
| search | trials | cells | write + execute, s | target | met |
|---|---|---|---|---|---|
| `{name}` ({args.spec}, exported) | {trials} | {cells} | {spread(times, "{:.1f}")} | <= {TARGET_S:.0f} s | {"yes" if met else "**no**"} |

Each run is `hpsearch notebook {name} --to FILE.ipynb` in a new process: it loads the
search from MLflow, writes the notebook, starts a kernel and runs every cell (data
figures from the source, Optuna's plots rebuilt from the trials, the export's test
metrics and figures); nothing is trained or evaluated again. Met when the slowest run is
within the target.
""")
    print(f"median {sorted(times)[len(times) // 2]:.1f} s, max {max(times):.1f} s: "
          f"{'met' if met else 'missed'} (target {TARGET_S:.0f} s)")


if __name__ == "__main__":
    main()
