"""Prepare what a GPU session carries to a fresh, offline GPU machine for
``benchmarks/gpu_campaign.sh``: the wheels hpsearch needs at run time that the machine
lacks, in groups that each fit one call of the device tool, and Fashion-MNIST gzipped.

Run on the session's own machine (it reaches PyPI), from the project root, with the
project's environment (``.venv`` or ``--venv``):

    python benchmarks/gpu_wheels.py [--out .gpu] [--group-mib 48] [--venv /path/to/.venv]

It writes ``.gpu/wheels/g1 ... gN`` through ``../shared/tools/offline-wheelhouse.sh``
(each group at most ``--group-mib`` MiB; Ray's ~80 MB wheel is split into parts),
``.gpu/data/fashion-mnist/*.gz`` (31 MB), and in every group the wheelhouse's
``install.sh`` and a ``MANIFEST`` of every group's files, so the machine can tell when
it holds them all whatever order they arrive in. It prints the calls to make: which
paths to carry in each (64 MiB a call, 8 paths at most) and the command of each.

What is left out, and why: what the GPU machine already has
(``../shared/tools/gpu-box-has.txt``: torch, numpy, pandas, scikit-learn, ...); Ray's
``default`` extra (dashboard, cluster agents: a local search starts no dashboard);
MLflow's ``auth`` extra (``tracking serve --public`` only); the notebook packages
(``hpsearch notebook`` only); tensorboard (the box has it).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "tools"
CALL_MIB = 64  # what one call of the device tool carries
# the target's marker environment: the GPU machine's Python 3.12 on x86-64 Linux
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
# roots the campaign does not need: the machine has torch; the rest serve other commands
NOT_NEEDED = {"torch", "torchvision", "nbformat", "nbclient", "ipykernel", "tensorboard"}
EXTRAS = {"ray": ("tune",), "mlflow": ()}  # the extras the campaign needs, by package


def runtime_closure(python: str) -> set[str]:
    """Canonical names of every distribution hpsearch needs at run time on the target,
    from the installed metadata of ``python``'s environment."""
    code = f"""
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
env, skip, extras_of = {TARGET!r}, {sorted(NOT_NEEDED)!r}, {EXTRAS!r}
need = set()
def visit(name, extras):
    n = canon(name)
    extras = tuple(extras_of.get(n, extras))
    if (n, extras) in need:
        return
    need.add((n, extras))
    for r in md.requires(name) or []:
        req = Requirement(r)
        if req.marker and not any(req.marker.evaluate({{**env, "extra": e}})
                                  for e in (*extras, "")):
            continue
        if canon(req.name) not in skip:
            visit(req.name, req.extras)
visit("hpsearch", ())
print(json.dumps(sorted({{n for n, _ in need}} - {{"hpsearch"}})))
"""
    import json

    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


def installed(python: str) -> set[str]:
    out = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                         capture_output=True, text=True).stdout
    return {_canon(line.split("==")[0]) for line in out.splitlines() if "==" in line}


def _canon(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheels(venv: Path, out: Path, group_mib: int) -> list[Path]:
    """The groups of wheels, each with install.sh and the MANIFEST of all groups."""
    python = str(venv / "bin" / "python")
    need = runtime_closure(python)
    box = {_canon(x) for x in (SHARED / "gpu-box-has.txt").read_text().split()}
    skip = sorted(box | (installed(python) - need))
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="hpsearch-wheels-") as tmp:
        # the shared script reads .venv of its working folder and takes the names to
        # skip as the target's "has" list
        (Path(tmp) / ".venv").symlink_to(venv)
        (Path(tmp) / "has.txt").write_text("\n".join(skip) + "\n")
        subprocess.run(["bash", str(SHARED / "offline-wheelhouse.sh"), str(out), "3.12",
                        str(group_mib), str(Path(tmp) / "has.txt")], cwd=tmp, check=True)
    groups = sorted((d for d in out.iterdir() if d.is_dir() and d.name.startswith("g")),
                    key=lambda d: int(d.name[1:]))
    # the shared script leaves out every torch* name (the box's torch and its CUDA
    # wheels); a small pure-Python one hpsearch needs (torchinfo) joins the smallest group
    versions = dict(line.split("==", 1) for line in subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True,
        text=True).stdout.splitlines() if "==" in line)
    smallest = min(groups, key=mib)
    for name, version in versions.items():
        if _canon(name).startswith("torch") and _canon(name) in need:
            subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "--python-version", "3.12",
                            "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                            "-d", str(smallest), f"{name}=={version}"], check=True)
    manifest = "".join(f"{g.name}/{f.name}\n" for g in groups for f in sorted(g.iterdir()))
    for g in groups:  # every group tells what the whole set is: any order of arrival works
        shutil.copy2(out / "install.sh", g / "install.sh")
        (g / "MANIFEST").write_text(manifest)
    return groups


def fashion_mnist_gz(dest: Path) -> Path:
    """The four IDX files gzipped, as Debian ships them, from where hpsearch finds them."""
    from hpsearch.trainables.data import fashion_mnist

    folder = dest / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    debian = fashion_mnist.DEBIAN_DIR
    raw = fashion_mnist.fetch(log=lambda *_: None)
    for f in fashion_mnist.FILES:
        if (debian / f"{f}.gz").is_file():
            shutil.copy2(debian / f"{f}.gz", folder / f"{f}.gz")
        else:
            with open(raw / f, "rb") as fin, gzip.open(folder / f"{f}.gz", "wb", 9) as fout:
                shutil.copyfileobj(fin, fout)
    return folder


def mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def calls(groups: list[Path], data: Path) -> list[list[Path]]:
    """The carry lists, data first with the group it fits beside (smallest first fit),
    so the last call can be the campaign itself."""
    pending = sorted(groups, key=mib)
    plan: list[list[Path]] = []
    first = [data]
    for g in list(pending):
        if mib(data) + mib(g) <= CALL_MIB - 1:
            first.append(g)
            pending.remove(g)
            break
    plan.append(first)
    for g in sorted(pending, key=mib, reverse=True):
        plan.append([g])
    return plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / ".gpu"), help="folder to fill (default .gpu)")
    ap.add_argument("--group-mib", type=int, default=48,
                    help="MiB per wheel group (48: the last, smaller group fits beside "
                         "Fashion-MNIST's 29 MiB in one call)")
    ap.add_argument("--venv", default=os.environ.get("VIRTUAL_ENV") or str(Path(sys.prefix)),
                    help="the project's environment, whose installed versions are carried")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    groups = build_wheels(Path(args.venv), out / "wheels", args.group_mib)
    data = fashion_mnist_gz(out / "data")
    plan = calls(groups, data.parent)
    print(f"\n{len(groups)} wheel groups ({sum(mib(g) for g in groups):.0f} MiB) and "
          f"Fashion-MNIST ({mib(data):.0f} MiB) in {out}; {len(plan)} calls:")
    for i, carry in enumerate(plan, 1):
        rel = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in carry]
        last = i == len(plan)
        command = ("bash benchmarks/gpu_campaign.sh --rows resnet18" if last
                   else "bash benchmarks/gpu_campaign.sh --install-only")
        print(f"  call {i}: carry {rel} ({sum(mib(p) for p in carry):.0f} MiB): {command}")


if __name__ == "__main__":
    main()
