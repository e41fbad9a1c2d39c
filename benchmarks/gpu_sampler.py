"""The GPU sampler of the GPU benchmarks: utilization and memory every 0.25 s through
NVML, or ``nvidia-smi`` where pynvml is missing (the GPU machine of the campaign has
no pynvml), in a thread of the benchmark's process; and the timeline figure."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

STARTED = time.perf_counter()  # the benchmark's start, before Ray, MLflow and torch load


class GpuSampler(threading.Thread):
    """GPU utilization and memory every ``period`` seconds, in a thread of this process:
    NVML where pynvml imports, else ``nvidia-smi`` (a GPU machine has one of them)."""

    def __init__(self, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.samples: list[tuple[float, int, float]] = []  # (s since STARTED, % busy, MiB used)
        self.process_mib: dict[int, float] = {}  # the most each process held
        self.stop_event = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no pynvml: nvidia-smi answers the same
            self.nvml = None

    def _read(self) -> tuple[int, float, dict[int, float]]:
        if self.nvml is not None:
            n = self.nvml
            util = n.nvmlDeviceGetUtilizationRates(self.handle).gpu
            used = n.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20
            procs = {p.pid: (p.usedGpuMemory or 0) / 2**20
                     for p in n.nvmlDeviceGetComputeRunningProcesses(self.handle)}
            return int(util), used, procs
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout
        util, used = (float(x) for x in out.split(",")[:2])
        apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                               "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout
        procs = {int(p): float(m) for p, m in
                 (line.split(",")[:2] for line in apps.splitlines() if "," in line)}
        return int(util), used, procs

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                util, used, procs = self._read()
            except Exception:  # noqa: BLE001 - a missed sample is not a failed row
                util, used, procs = -1, float("nan"), {}
            self.samples.append((time.perf_counter() - STARTED, util, used))
            for pid, m in procs.items():
                self.process_mib[pid] = max(self.process_mib.get(pid, 0.0), m)
            self.stop_event.wait(self.period)

    def busy(self, start: float, end: float) -> float | None:
        window = [u for t, u, _ in self.samples if start <= t <= end and u >= 0]
        return sum(window) / (100 * len(window)) if window else None

    def first_kernel(self, after: float) -> float | None:
        return next((t - after for t, u, _ in self.samples if t >= after and u > 0), None)


def timeline(sampler, launch: float, marks: dict, out: Path, title: str) -> None:
    """GPU utilization and memory over the command's run, its phases marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s - launch for s, u, _ in sampler.samples if s >= launch]
    util = [u for s, u, _ in sampler.samples if s >= launch]
    mem = [m / 1024 for s, _, m in sampler.samples if s >= launch]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t, util, lw=0.8, label="GPU busy %")
    ax2 = ax.twinx()
    ax2.plot(t, mem, lw=0.8, color="tab:orange", label="memory used GiB")
    for phase, at in marks.items():
        ax.axvline(at - launch, color="gray", ls="--", lw=0.7)
        ax.text(at - launch, 102, phase.replace("_", " "), rotation=90, fontsize=7, va="bottom")
    ax.set_xlabel("seconds since `hpsearch run` started")
    ax.set_ylabel("GPU busy %")
    ax2.set_ylabel("GPU memory used (GiB)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "gpu_timeline.png", dpi=120)
    plt.close(fig)
    with open(out / "gpu_samples.csv", "w") as fh:
        fh.write("seconds,busy_percent,memory_mib\n")
        fh.writelines(f"{s - launch:.2f},{u},{m:.0f}\n" for s, u, m in sampler.samples)
