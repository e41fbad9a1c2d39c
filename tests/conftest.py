"""Shared fixtures: one real local Ray for the whole session, a fresh storage
root (SQLite MLflow, Ray experiment dirs) per test. Nothing is mocked."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent  # holds the package plugins/

# Probe trainables live in tests/plugins (module path plugins.nan_probe). Ray workers are forked from the
# raylet, which inherits this environment, so they can import them too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(PLUGINS), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
sys.path.insert(0, str(PLUGINS))
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def free_port() -> int:
    """A TCP port nobody listens on now (tests run beside other jobs: never a fixed one)."""
    from hpsearch.cluster.local import free_ports

    return free_ports(1)[0]


@pytest.fixture(scope="session")
def torch_hub_weights(tmp_path_factory):
    """A TEST FIXTURE hub cache: randomly initialized state_dicts saved under the
    file names torchvision's pretrained weights have, so the transfer trainable's
    real loading path runs offline. Set before Ray starts, so workers see it."""
    import torch
    import torchvision.models as tvm

    from hpsearch.trainables.transfer import BACKBONES, expected_weights_file

    home = tmp_path_factory.mktemp("torch_home")
    os.environ["TORCH_HOME"] = str(home)
    torch.manual_seed(0)
    for name, (builder, _, _) in BACKBONES.items():
        path, _ = expected_weights_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(getattr(tvm, builder)(weights=None).state_dict(), path)
    return home


@pytest.fixture(scope="session")
def ray_session(torch_hub_weights):
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def storage(tmp_path):
    from hpsearch.results.storage import Storage

    return Storage(tmp_path / "runs")


@pytest.fixture(scope="session")
def fashion_mnist_ready():
    from hpsearch.trainables.data import fashion_mnist

    fashion_mnist.fetch(log=lambda *_: None)  # .ci/run installs it; this only unpacks
    return True


# capabilities that let root read and write whatever a file's mode says
_DAC = "-dac_override,-dac_read_search"


@pytest.fixture
def unprivileged_cli():
    """Run ``hpsearch ARGS`` in a child process that file modes bind. CI runs as root,
    and root reads and writes whatever the modes say, so as root the child runs
    without the two capabilities that allow it (util-linux's setpriv). Returns
    (exit code, stderr)."""
    import shutil
    import subprocess

    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "these tests need util-linux's setpriv when run as root"
        prefix = [setpriv, f"--inh-caps={_DAC}", f"--bounding-set={_DAC}", "--"]

    def run(args: list[str]) -> tuple[int, str]:
        proc = subprocess.run([*prefix, sys.executable, "-m", "hpsearch", *args], cwd=ROOT,
                              text=True, capture_output=True, timeout=120)
        return proc.returncode, proc.stderr.strip()

    return run


def interrupt_cli(args: list[str], *, after: str, timeout: float = 240) -> tuple[int, str]:
    """Run ``hpsearch ARGS`` in its own session, press Ctrl-C (SIGINT to its process
    group, as a terminal does) once a line containing ``after`` is printed, and return
    (exit code, everything it printed)."""
    import signal
    import subprocess
    import time

    exe = Path(sys.executable).parent / "hpsearch"
    proc = subprocess.Popen([str(exe), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines, deadline = [], time.time() + timeout
    for line in proc.stdout:  # until it is doing the work to interrupt
        lines.append(line)
        if after in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, "".join(lines) + out


def wait_for(condition, timeout: float, what: str, proc=None, every: float = 0.5):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` s, or
    as soon as ``proc`` exits (with the end of what it printed, if it was piped)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the store or the search's folder is not there yet
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(every)
    out = ""
    if proc is not None and proc.poll() is not None:
        out = f" (the process exited {proc.returncode})"
        if proc.stdout is not None:
            out += " " + (proc.communicate()[0] or "")[-3000:]
    pytest.fail(f"{what}: not within {timeout:g} s{out}")
