"""hpsearch in a real Jupyter kernel: a notebook executed with nbclient runs a search
through ``hpsearch.run``, shows its table and a figure, exports, predicts and meets a
bad spec; an interrupted kernel ends its search like Ctrl-C and stays usable.
Real ipykernel, Ray and MLflow; nothing is mocked."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "spaces" / "cluster_digits.yaml"


def _outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def _text(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    data = output.get("data", {})
    return data.get("text/html") or data.get("text/plain") or ""


def test_a_notebook_runs_a_search_end_to_end(tmp_path):
    storage = tmp_path / "runs"
    cells = [
        "import hpsearch\n"
        f"search = hpsearch.run({str(DIGITS)!r}, smoke=True, storage={str(storage)!r})\n"
        "import ray  # (the test's own look at the session hpsearch started)\n"
        "node = ray.get_runtime_context().get_node_id()\n"
        "search",
        "search.trials[['number', 'trial_id', 'state', 'stop_reason', 'epochs']]",
        "figures = search.figures()\n"
        "figures['curves']",
        "bundle = search.export()\n"
        "print('test accuracy', bundle.metrics['test']['accuracy'])",
        "import numpy as np\n"
        "pixels = np.random.default_rng(0).integers(0, 17, (3, 8, 8), dtype=np.uint8)\n"
        "answers = hpsearch.predict(bundle.path, pixels)\n"
        "print([a['class'] for a in answers])",
        "try:\n"
        f"    hpsearch.run({str(DIGITS)!r}, samples=0, storage={str(storage)!r})\n"
        "except hpsearch.SpecError as e:\n"
        "    print('SpecError:', e)",
        f"again = hpsearch.run({str(DIGITS)!r}, smoke=True, name='second', "
        f"storage={str(storage)!r}, progress=False)\n"
        "print('same Ray session:', ray.get_runtime_context().get_node_id() == node)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = _outputs(nb)
    assert not [o for o in outputs if o["output_type"] == "error"], outputs
    streams = "".join(o["text"] for o in outputs if o["output_type"] == "stream")
    # the product's own lines only: no Ray or MLflow INFO lines, no tracebacks
    for noise in ("Started a local Ray instance", "INFO", "Traceback", "View run"):
        assert noise not in streams, streams
    first = nb.cells[0].outputs
    progress = [o for o in first if o["output_type"] == "display_data"]
    assert len(progress) == 2, first  # the trial lines and the progress line, updated in place
    assert "search 'cluster-digits-smoke': 2/2 trials done" in _text(progress[1])
    assert "trial" in _text(progress[0]) and "completed" in _text(progress[0])
    shown = nb.cells[0].outputs[-1]
    assert shown["output_type"] == "execute_result" and "<table" in _text(shown)
    trials = _text(nb.cells[1].outputs[-1])
    meta = json.loads((storage / "cluster-digits-smoke" / "hpsearch.json").read_text())
    runs = MlflowClient(meta["tracking_uri"]).search_runs(
        [meta["experiment_id"]], filter_string="tags.trial_id != ''")
    assert len(runs) == 2 and all(r.data.tags["trial_id"] in trials for r in runs)
    assert any("image/png" in o.get("data", {}) for o in nb.cells[2].outputs)
    exported = json.loads((storage / "exports" / "cluster-digits-smoke" / "metrics.json")
                          .read_text())
    assert f"test accuracy {exported['test']['accuracy']}" in streams
    assert "SpecError:" in streams and "(from samples=): must be >= 1" in streams
    assert "same Ray session: True" in streams


def test_interrupting_the_kernel_ends_the_search_like_ctrl_c(tmp_path):
    from jupyter_client.manager import start_new_kernel

    storage = tmp_path / "runs"
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        # enough trials and epochs to be running when the interrupt comes
        code = ("import hpsearch\n"
                f"hpsearch.run({str(DIGITS)!r}, samples=40, max_epochs=30, "
                f"storage={str(storage)!r})")
        msg_id = kc.execute(code)
        meta_file = storage / "cluster-digits" / "hpsearch.json"
        deadline = time.time() + 300
        running = False
        while time.time() < deadline and not running:
            time.sleep(1)
            if meta_file.is_file():
                meta = json.loads(meta_file.read_text())
                client = MlflowClient(meta["tracking_uri"])
                runs = client.search_runs([meta["experiment_id"]],
                                          filter_string="tags.trial_id != ''")
                running = any(r.info.status == "RUNNING" and r.data.metrics for r in runs)
        assert running, "no trial was running within 300 s"
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=180)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=180)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] in ("KeyboardInterrupt", "SearchInterrupted")
        # the kernel is usable afterwards
        kc.execute_interactive("x = 1 + 1", timeout=60)
        check = kc.execute("print(x)")
        out = ""
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=60)
            except queue.Empty:
                break
            if msg["parent_header"].get("msg_id") == check and msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            if (msg["parent_header"].get("msg_id") == check and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                break
        assert out.strip() == "2"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    meta = json.loads(meta_file.read_text())
    client = MlflowClient(meta["tracking_uri"])
    runs = client.search_runs([meta["experiment_id"]])
    assert runs and all(r.info.status != "RUNNING" for r in runs), \
        [(r.info.status, r.data.tags.get("stop_reason")) for r in runs]
    parent = client.get_run(meta["parent_run_id"])
    assert parent.info.status == "KILLED"
    trials = [r for r in runs if r.info.run_id != meta["parent_run_id"]]
    assert any(r.data.tags.get("stop_reason") == "interrupted" for r in trials)
