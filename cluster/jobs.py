"""`hpsearch submit` and `hpsearch jobs`: searches as Ray Jobs.

The project folder is uploaded as the job's ``working_dir`` without ``runs/``,
``.git``, virtual environments and caches; an upload over Ray's 100 MiB limit
is refused here, before anything is sent. The Jobs API token is sent in the
``Authorization`` header and never printed.
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path

from cluster.local import read_token

ROOT = Path(__file__).resolve().parent.parent
EXCLUDES = ["runs/", ".git/", ".venv/", "venv/", "env/", "**/__pycache__/", ".ruff_cache/",
            ".pytest_cache/", "*.egg-info/", "benchmarks/results/", "node_modules/"]
LIMIT = 100 * 1024**2  # Ray's working_dir upload limit


class JobError(RuntimeError):
    pass


def _excluded(rel: str, is_dir: bool) -> bool:
    rel_d = rel + "/" if is_dir else rel
    for pat in EXCLUDES:
        p = pat.removeprefix("**/")
        if pat.endswith("/"):
            if is_dir and (fnmatch.fnmatch(rel_d, p) or fnmatch.fnmatch(Path(rel).name + "/", p)):
                return True
        elif fnmatch.fnmatch(Path(rel).name, p):
            return True
    return False


def upload_size(root: Path = ROOT) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames
                       if not _excluded(os.path.normpath(os.path.join(rel_dir, d)), True)]
        for f in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if not _excluded(rel, False):
                total += os.path.getsize(os.path.join(dirpath, f))
    return total


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    token = read_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as e:  # unreachable, or refused (401 without the right token)
        raise JobError(f"cannot reach the Ray Jobs API at {address}: {str(e).splitlines()[0]} "
                       "(is the cluster up? `hpsearch cluster status`)") from None


def submit(specs: Path | list[Path], *, address: str, run_args: list[str], root: Path = ROOT) -> str:
    """One job running ``hpsearch run SPEC [SPEC ...] --address auto RUN_ARGS``."""
    size = upload_size(root)
    if size > LIMIT:
        raise JobError(f"the project folder {root} would upload {size / 1024**2:.0f} MiB, over "
                       f"Ray's 100 MiB working_dir limit; move large files out or under runs/")
    rels = []
    for spec in [specs] if isinstance(specs, Path) else specs:
        spec = spec.resolve()
        try:
            rels.append(spec.relative_to(root).as_posix())
        except ValueError:
            raise JobError(f"{spec} is outside the project folder {root}; put the spec under "
                           "spaces/ so it travels with the job") from None
    entry = " ".join(["python", "-m", "search.cli", "run", *rels, "--address", "auto", *run_args])
    # `jobs stop` sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (Ray's default:
    # 3 s, read by the job's supervisor from this env): too short for the search to stop
    # its trials, save Tune's state and end their MLflow runs as interrupted
    env_vars = {"RAY_JOB_STOP_WAIT_TIME_S": os.environ.get("RAY_JOB_STOP_WAIT_TIME_S", "90")}
    if os.environ.get("HPSEARCH_DEBUG"):
        env_vars["HPSEARCH_DEBUG"] = "1"
    runtime_env = {"working_dir": str(root), "excludes": EXCLUDES, "env_vars": env_vars}
    c = client(address)
    deadline = time.monotonic() + 90
    while True:
        try:
            return c.submit_job(entrypoint=entry, runtime_env=runtime_env)
        except RuntimeError as e:
            # a freshly started head: its job agent registers a few seconds after the dashboard
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2)


TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def follow(address: str, job_id: str, echo=print, poll: float = 1.0) -> str:
    """Stream a job's log lines until it ends; return its final status."""
    c = client(address)
    seen = 0
    while True:
        status = str(c.get_job_status(job_id)).split(".")[-1]
        logs = c.get_job_logs(job_id)
        if len(logs) > seen:
            echo(logs[seen:].rstrip("\n"))
            seen = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll)
