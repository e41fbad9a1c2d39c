"""The prepared GPU campaign (benchmarks/gpu_campaign.sh), rehearsed on CPU: its install
from wheel groups that arrive over several calls, and one smoke row end to end."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_campaign.sh"


def _campaign(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    base = {**os.environ, "OUT": str(tmp_path / "out"), "HPSEARCH_GPU_DIR": str(tmp_path / "gpu"),
            "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=base, text=True,
                          capture_output=True, timeout=600)


def _wheel(folder: Path, name: str) -> Path:
    """A pure-Python wheel holding one module (what pip installs from a wheelhouse)."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {f"{name}.py": "ANSWER = 42\n" + "# padding\n" * 2000,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = "".join(f"{k},,\n" for k in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in {**files, f"{info}/RECORD": record}.items():
            z.writestr(k, v)
    return path


def test_wheels_arriving_over_several_calls_install_once_all_are_here(tmp_path):
    """The offline wheelhouse's layout: groups g1, g2 (a wheel split in parts across
    them), each with install.sh and the MANIFEST of every group."""
    wheels = tmp_path / "gpu" / "wheels"
    build = tmp_path / "build"
    build.mkdir()
    big, small = _wheel(build, "campaign_probe"), _wheel(build, "campaign_extra")
    blob = big.read_bytes()
    half = len(blob) // 2
    groups = {"g1": {f"{big.name}.part000": blob[:half]},
              "g2": {f"{big.name}.part001": blob[half:], small.name: small.read_bytes()}}
    manifest = "".join(f"{g}/{f}\n" for g, files in groups.items() for f in sorted(files))
    digest = hashlib.sha256(blob).hexdigest()
    install = ("#!/usr/bin/env bash\nset -euo pipefail\nW=${1:?dir}; SITE=${2:?site}\n"
               f'cat "$W"/{big.name}.part* > "$W"/{big.name} && rm -f "$W"/{big.name}.part*\n'
               f'echo "{digest}  $W/{big.name}" | sha256sum -c -\n'
               f'"{sys.executable}" -m pip install -q --no-index --no-deps --no-compile '
               '--target "$SITE" "$W"/*.whl\n')
    site = tmp_path / "gpu" / "site"

    def arrive(group: str) -> None:
        folder = wheels / group
        folder.mkdir(parents=True)
        for name, data in groups[group].items():
            (folder / name).write_bytes(data)
        (folder / "install.sh").write_text(install)
        (folder / "MANIFEST").write_text(manifest)

    arrive("g1")  # the first call carries one group: nothing installs, it says what is missing
    done = _campaign(["--install-only"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 file(s) still to come, in group(s): g2" in done.stdout
    assert not (site / ".installed").exists()
    refused = _campaign(["--rows", "resnet18"], tmp_path)  # a campaign call cannot run yet
    assert refused.returncode == 3 and "carry the missing groups" in refused.stdout
    # the next call brings g2 (g1 may be gone: what it held waits in the stash): installed
    shutil.rmtree(wheels / "g1")
    arrive("g2")
    done = _campaign(["--install-only"], tmp_path)
    assert done.returncode == 0 and "install: done" in done.stdout, done.stdout + done.stderr
    probe = subprocess.run([sys.executable, "-c", "import campaign_probe, campaign_extra; "
                            "print(campaign_probe.ANSWER)"], env={"PYTHONPATH": str(site)},
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "42", probe.stderr
    again = _campaign(["--install-only"], tmp_path)
    assert "already installed" in again.stdout


@pytest.mark.e2e
def test_the_campaign_rehearses_a_row_on_cpu_and_writes_every_file_to_out(tmp_path):
    """`--smoke`: a spec's --smoke search timed through `hpsearch run --export --refit`,
    its row, section, log and the bundle's metrics and report under $OUT, labelled CPU."""
    from hpsearch.trainables.data.debian import cache_root

    # the cache `make data` filled (Fashion-MNIST, the empty MLflow store MLflow's
    # migrations build): the script's default, a cache of its own under
    # $HPSEARCH_GPU_DIR, is for the GPU machine, which starts empty; here it made every
    # run unpack Fashion-MNIST again and rebuild the store template (~6 s on 2 cores)
    done = _campaign(["--smoke", "--rows", "cluster_digits", "--run-flags", "--refit"],
                     tmp_path, HPSEARCH_CACHE=str(cache_root()))
    out = tmp_path / "out"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rows done: cluster_digits" in (out / "campaign.log").read_text()
    row = json.loads((out / "cluster_digits" / "row.json").read_text())
    assert row["gpu"] is False and row["model"] == "refit" and row["refit"]["epochs"] == 1
    assert row["wall_s"] > row["search_s"] > 0 and row["trials"] == 2
    section = (out / "cluster_digits" / "section.md").read_text()
    assert "CPU smoke rehearsal: not a GPU result" in section and "**met**" not in section
    bundle = out / "cluster_digits" / "bundle"
    assert json.loads((bundle / "metrics.json").read_text())["refit"]["fit_on"] == "train+val"
    assert (bundle / "report" / "best_trial" / "confusion_matrix.png").is_file()
    assert (out / "sections.md").read_text().startswith("`spaces/cluster_digits.yaml`")


def test_the_gpu_sampler_reads_nvidia_smi_where_pynvml_is_missing(tmp_path, monkeypatch):
    """The campaign's machine has nvidia-smi but maybe no pynvml: a stand-in nvidia-smi
    answering as the real one does (CSV, no header, no units) is sampled and summed."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import gpu_sampler

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/usr/bin/env bash\n"
                    'case "$*" in *compute-apps*) echo "4242, 1500"; echo "4343, 900";;\n'
                    '  *) echo "37, 2048";; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as on a machine without it
    sampler = gpu_sampler.GpuSampler(period=0.05)
    assert sampler.nvml is None
    sampler.start()
    import time

    time.sleep(0.5)
    sampler.stop_event.set()
    sampler.join(5)
    assert len(sampler.samples) >= 3 and {u for _, u, _ in sampler.samples} == {37}
    assert sampler.busy(0, 1e9) == pytest.approx(0.37)
    assert sampler.first_kernel(0) is not None
    assert sampler.process_mib == {4242: 1500.0, 4343: 900.0}
    gpu_sampler.timeline(sampler, 0.0, {"search_start": 0.1}, tmp_path, "stand-in")
    assert (tmp_path / "gpu_timeline.png").is_file() and (tmp_path / "gpu_samples.csv").is_file()
