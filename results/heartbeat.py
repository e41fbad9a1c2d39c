"""Whether a search's driver still runs, as MLflow can tell it.

A driver killed with SIGKILL (or a machine that is lost) ends nothing: its runs
stay RUNNING in MLflow and look live. So the parent run carries the driver's
identity (tag ``hpsearch.driver``: host, pid and the process's start time, so a
reused pid is not taken for it) and a heartbeat (tag ``hpsearch.heartbeat``,
Unix seconds) that the driver renews every period (:func:`period`, 30 s), as
Optuna's ``heartbeat_interval`` and ``fail_stale_trials`` do for trials. A
search's driver is gone when, on the machine it ran on, its process no longer
exists, or, anywhere, its heartbeat is older than three periods;
``hpsearch status`` then shows the runs it left RUNNING as
``lost (driver gone since <its last heartbeat>)``, and ``hpsearch resume``
settles them.
"""

from __future__ import annotations

import os
import socket
import time

DRIVER_TAG = "hpsearch.driver"
HEARTBEAT_TAG = "hpsearch.heartbeat"
PERIOD_TAG = "hpsearch.heartbeat_period"
PERIOD_ENV = "HPSEARCH_HEARTBEAT"
DEFAULT_PERIOD = 30.0  # s between heartbeats: one small MLflow write
MISSED = 3             # heartbeats missed before a driver elsewhere counts as gone


def period() -> float:
    """Seconds between heartbeats: $HPSEARCH_HEARTBEAT, else 30."""
    try:
        value = float(os.environ.get(PERIOD_ENV, DEFAULT_PERIOD))
    except ValueError:
        return DEFAULT_PERIOD
    return value if value > 0 else DEFAULT_PERIOD


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # the command name (field 2) may hold spaces and parentheses: split after it
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def identity(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid) or '?'}"


def beat(client, run_id: str, *, first: bool = False) -> None:
    """Renew the heartbeat of ``run_id`` (``first``: and say which process drives it)."""
    from mlflow.entities import RunTag

    tags = [RunTag(HEARTBEAT_TAG, f"{time.time():.0f}")]
    if first:
        tags += [RunTag(DRIVER_TAG, identity()), RunTag(PERIOD_TAG, f"{period():g}")]
    client.log_batch(run_id, tags=tags)


def gone_since(run) -> float | None:
    """When the driver of a RUNNING parent run was last known alive (Unix seconds), if
    it is gone; None while it runs, for an ended run, and for a run without a driver
    tag (a search from before heartbeats: nothing to tell)."""
    tags = run.data.tags
    if run.info.status != "RUNNING" or DRIVER_TAG not in tags:
        return None
    try:
        last = float(tags.get(HEARTBEAT_TAG) or run.info.start_time / 1000)
        every = float(tags.get(PERIOD_TAG) or DEFAULT_PERIOD)
    except ValueError:
        return None
    host, pid, started = (tags[DRIVER_TAG].split(":") + ["", "", ""])[:3]
    if host == socket.gethostname() and pid.isdigit():
        return None if _started(int(pid)) == started else last
    return last if time.time() - last > MISSED * every else None


def when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
