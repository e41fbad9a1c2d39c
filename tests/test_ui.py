"""The MLflow UI and TensorBoard as a person sees them: `hpsearch ui` and
`hpsearch tensorboard` started for real over a finished search, the UI driven
in headless Chromium (Debian's, installed by `make test`) with Playwright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from mlflow.tracking import MlflowClient

from hpsearch.results.export import export_best
from hpsearch.search.engine import run_search
from hpsearch.search.spec import parse_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("HPSEARCH_TEST_ARTIFACTS", ROOT / "runs" / "test-artifacts"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def finished_search(ray_session, tmp_path_factory):
    from hpsearch.results.storage import Storage

    storage = Storage(tmp_path_factory.mktemp("ui") / "runs")
    spec = parse_spec({
        "name": "ui-check", "trainable": "resnet18", "data": {"source": "digits"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"samples": 3, "seed": 0, "concurrency": 2},
        "scheduler": {"name": "asha", "max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
        "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
        "fixed": {"optimizer": "adam", "base_width": 8},
    }, source="ui-check")
    run_search(spec, storage=storage, echo=lambda *_: None)
    bundle = export_best(spec.name, storage=storage, register=False)
    meta = json.loads((storage.search_dir(spec.name) / "hpsearch.json").read_text())
    return storage, meta, bundle


def _serve(args: list[str], url: str, timeout: float = 120):
    exe = Path(sys.executable).parent / "hpsearch"
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{args[0]} exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _stop(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_mlflow_ui_in_a_real_browser(finished_search):
    from playwright.sync_api import sync_playwright

    storage, meta, bundle = finished_search
    assert Path(CHROMIUM).is_file(), "make test installs Debian's chromium; run it"
    client = MlflowClient(meta["tracking_uri"])
    parent = client.get_run(meta["parent_run_id"])
    children = client.search_runs([meta["experiment_id"]],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    best = next(r for r in children if r.data.tags["trial_id"] == bundle.trial_id)
    port = free_port()
    server = _serve(["ui", "--port", str(port), "--storage", str(storage.root)],
                    f"http://127.0.0.1:{port}/")
    base = f"http://127.0.0.1:{port}/#/experiments/{meta['experiment_id']}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # the experiment page lists the parent run; expanding it lists every trial
            page.goto(f"{base}/runs", wait_until="load")
            page.get_by_text(parent.info.run_name).first.wait_for(timeout=60_000)
            cell = page.locator("[role=gridcell]", has_text=parent.info.run_name).first
            cell.locator("button[data-component-id*=runnamecellrenderer]").first.click()
            for run in children:
                page.get_by_text(run.info.run_name).first.wait_for(timeout=30_000)
            page.screenshot(path=str(SHOTS / "mlflow_ui_runs.png"))
            # a child run's metric chart
            page.goto(f"{base}/runs/{best.info.run_id}/model-metrics", wait_until="load")
            page.get_by_text("val_accuracy").first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot, canvas").first.wait_for(timeout=60_000)
            page.screenshot(path=str(SHOTS / "mlflow_ui_metrics.png"))
            # the report artifacts open
            page.goto(f"{base}/runs/{best.info.run_id}/artifacts", wait_until="load")
            page.get_by_text("report", exact=True).first.click(timeout=60_000)
            page.get_by_text("curves.png").first.click(timeout=30_000)
            page.get_by_text("report/curves.png").first.wait_for(timeout=60_000)
            preview = page.locator("img[src^='blob:']").first
            preview.wait_for(timeout=60_000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                   arg=preview.element_handle(), timeout=60_000)
            page.screenshot(path=str(SHOTS / "mlflow_ui_artifact.png"))
            browser.close()
    finally:
        _stop(server)
    for name in ("mlflow_ui_runs.png", "mlflow_ui_metrics.png", "mlflow_ui_artifact.png"):
        assert (SHOTS / name).stat().st_size > 10_000
    print(f"\nMLflow UI screenshots: {SHOTS}/mlflow_ui_{{runs,metrics,artifact}}.png")


def test_tensorboard_serves_every_trials_curves(finished_search):
    storage, meta, _ = finished_search
    trial_dirs = sorted(storage.search_dir("ui-check").glob("trial_*"))
    assert len(trial_dirs) == 3 and all(list(d.glob("events.out.tfevents.*")) for d in trial_dirs)
    port = free_port()
    server = _serve(["tensorboard", "ui-check", "--port", str(port), "--storage",
                     str(storage.root)], f"http://127.0.0.1:{port}/data/runs")
    try:
        deadline = time.time() + 60
        while True:  # TensorBoard loads event files in the background
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags") as r:
                tags = json.loads(r.read())
            if len(tags) >= 3 or time.time() > deadline:
                break
            time.sleep(2)
    finally:
        _stop(server)
    assert len(tags) == 3, tags
    for run_tags in tags.values():
        names = set(run_tags)
        for metric in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert any(n.endswith(metric) for n in names), names
