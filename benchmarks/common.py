"""Shared helpers of the benchmark scripts: machine facts, statistics, and the
section of RESULTS.md each script owns (between its begin/end markers)."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {gpu}"


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    """'median (min-max), n=N' as the benchmark tables state it."""
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))}), n={len(values)}"


def write_section(name: str, body: str, path: Path = RESULTS, title: str = "Benchmark results",
                  intro: str = "Each section is rewritten by the script named in it. Ratios are "
                               "measured in the same run, since absolute times on shared "
                               "machines drift.") -> None:
    """Replace this script's section of ``path`` (RESULTS.md; created on first use)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else f"# {title}\n\n{intro}\n"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = "python " + " ".join([Path(sys.argv[0]).as_posix().split("/work/main/")[-1], *sys.argv[1:]])
    block = (f"{begin}\n## {name}\n\nMeasured {stamp} on {machine()}.\n"
             f"Command: `{command}`\n\n{body.strip()}\n{end}")
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def loop_throughput(config: dict, epochs: int) -> float:
    """Training samples/s of the shared loop: the median of its per-epoch
    ``samples_per_second`` after the first epoch (a warm-up)."""
    from hpsearch.trainables.loop import train

    rates = []
    train({**config, "max_epochs": epochs}, lambda m, s: rates.append(m["samples_per_second"]))
    return statistics.median(rates[1:])


def recording_tracker(on_result):
    """The product's MLflow tracker, handing each trial result to ``on_result(trial,
    result)`` first: how a benchmark watches a search run through ``run_search``."""
    from hpsearch.search.tracking import MlflowTracker

    class Recorder(MlflowTracker):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            on_result(trial, result)
            super().on_trial_result(iteration, trials, trial, result, **info)

    return Recorder
