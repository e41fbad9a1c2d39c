"""The driver's watchdog: a thread beside Tune's loop that needs neither.

Every second it checks that the Ray instance the search runs on is alive, and
every heartbeat period (:mod:`results.heartbeat`) it renews the parent run's
heartbeat in MLflow.

Why a thread of its own: when Ray's daemons die under a search, Tune's loop
cannot end it. With the GCS gone the driver's Ray core blocks in its calls,
retries for 60 s and then aborts the process ("Failed to connect to GCS within
60 seconds"; ``gcs_rpc_server_reconnect_timeout_s``), leaving every run RUNNING;
with the raylet gone Tune waits for resources forever. The watchdog sees the
process die (a local instance this driver started: the daemons are its child
processes) or the GCS stop answering (a cluster), and calls ``on_lost`` with one
line saying what died; the engine ends the MLflow runs from this thread, which
needs nothing of Ray.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable

CHECK_EVERY = 1.0       # s between checks of Ray's daemons
GCS_SILENT_CHECKS = 5   # a cluster's GCS that refused this many checks in a row is gone
# the daemons a search cannot go on without, as ray._private.node names them
VITAL = {"gcs_server": "GCS server", "raylet": "raylet"}


class Watchdog:
    """``with Watchdog(...)``: the thread runs inside the block."""

    def __init__(self, *, on_lost: Callable[[str], None], beat: Callable[[bool], None] | None,
                 beat_every: float, check_every: float = CHECK_EVERY) -> None:
        self.on_lost, self.beat = on_lost, beat
        self.beat_every, self.check_every = beat_every, check_every
        self.lost: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe = ray_probe()

    def __enter__(self) -> Watchdog:
        self._thread = threading.Thread(target=self._run, name="hpsearch-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self.lost is None and self._thread is not None:  # (after a loss it waits for
            self._thread.join(timeout=5)                    # this thread to leave Tune)

    def _run(self) -> None:
        next_beat = 0.0
        while not self._done.is_set():
            now = time.monotonic()
            if self.beat is not None and now >= next_beat:
                try:
                    self.beat(next_beat == 0.0)
                except Exception:  # noqa: BLE001 - a missed heartbeat is only a late one
                    pass
                next_beat = now + self.beat_every
            self.lost = self._probe() if self._probe is not None else None
            if self.lost:
                self.on_lost(self.lost)
                return
            self._done.wait(self.check_every)


def ray_probe() -> Callable[[], str | None] | None:
    """A function that says what of Ray died (one line), or None while it lives:
    the vital daemons of a local instance this process started, else the GCS of
    the cluster it is connected to. None when Ray is not initialized."""
    import ray

    if not ray.is_initialized():
        return None
    node = getattr(ray._private.worker, "_global_node", None)
    processes = getattr(node, "all_processes", None) or {}
    local = [(VITAL[kind], info.process) for kind, infos in processes.items()
             if kind in VITAL for info in infos]
    if local:
        def local_probe() -> str | None:
            for what, process in local:
                code = process.poll()
                if code is not None:
                    return f"Ray's {what} (pid {process.pid}) died ({_how(code)})"
            return None
        return local_probe
    address = getattr(node, "gcs_address", None)
    if not address:
        return None
    host, _, port = address.rpartition(":")
    silent = [0]

    def gcs_probe() -> str | None:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                silent[0] = 0
        except OSError:
            silent[0] += 1
        if silent[0] >= GCS_SILENT_CHECKS:
            return f"the Ray cluster's GCS at {address} stopped answering"
        return None
    return gcs_probe


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
