"""`hpsearch submit` and `hpsearch jobs`: searches as Ray Jobs.

The project folder is uploaded as the job's ``working_dir`` without ``runs/``,
``.git``, virtual environments, caches and what .gitignore / .rayignore name (Ray's
own rules); an upload over Ray's limit (one gRPC message, 512 MiB) is refused
here, before anything is sent. The Jobs API token is sent in the
``Authorization`` header and never printed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from hpsearch.cluster.local import read_token

ROOT = Path(__file__).resolve().parent.parent
EXCLUDES = ["runs/", ".git/", ".venv/", "venv/", "env/", "**/__pycache__/", ".ruff_cache/",
            ".pytest_cache/", "*.egg-info/", "benchmarks/results/", "node_modules/"]


class JobError(RuntimeError):
    pass


def limit_bytes() -> int:
    """Ray's cap on a job's zipped working_dir: one gRPC message (512 MiB in Ray 2.60,
    ``RAY_max_grpc_message_size`` changes it)."""
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return GCS_STORAGE_MAX_SIZE


def upload_size(root: Path = ROOT) -> int:
    """Bytes of the zip Ray would build of the folder for the job's package. Ray walks
    it with its own rules (the ``excludes`` submit passes, every folder's .gitignore
    unless RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1, and .rayignore), so this walks it with
    Ray's walker; Ray's zip stores the files uncompressed (``ZipFile(path, "w")``, in
    ``_zip_files``), so its size is the files' bytes plus, per entry, a local header
    and a central-directory record (30 and 46 bytes, each with the entry's name), and
    an end record (22 bytes): the same as the zip's, to the byte."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    root = Path(root)
    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    total = 22

    def count(path: Path) -> None:
        nonlocal total
        name = path.relative_to(root).as_posix()
        if path.is_file():  # Ray's zip follows links too
            total += path.stat().st_size + 76 + 2 * len(name.encode())
        elif path.is_dir() and next(path.iterdir(), None) is None:  # Ray packs it as "name/"
            total += 76 + 2 * len(name.encode() + b"/")

    _dir_travel(root, [_get_excludes(root, EXCLUDES)], count,
                include_gitignore=include_gitignore,
                logger=logging.getLogger(__name__))  # its per-folder notes are INFO: unshown
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
    size, limit = upload_size(root), limit_bytes()
    if size >= limit:  # Ray refuses a package of the limit's size too
        raise JobError(f"the project folder {root} would upload {size / 1024**2:.0f} MiB "
                       f"(Ray zips it uncompressed), over Ray's {limit / 1024**2:.0f} MiB limit on a "
                       "job's working_dir; add large files to .gitignore or .rayignore, or move "
                       "them out or under runs/")
    rels = []
    for spec in [specs] if isinstance(specs, Path) else specs:
        spec = spec.resolve()
        try:
            rels.append(spec.relative_to(root).as_posix())
        except ValueError:
            raise JobError(f"{spec} is outside the project folder {root}; put the spec under "
                           "spaces/ so it travels with the job") from None
    entry = " ".join(["python", "-m", "hpsearch", "run", *rels, "--address", "auto", *run_args])
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
