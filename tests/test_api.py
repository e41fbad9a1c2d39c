"""The Python API (``import hpsearch``): one installed name, the same refusals as the
command line, a search returned as a ``Search`` object, one prediction everywhere.
Real Ray, MLflow and data; nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

import hpsearch
from hpsearch.search.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "spaces" / "cluster_digits.yaml"  # nothing to fetch: seconds per trial
SHADOWS = ("search", "results", "cluster", "trainables")


def _clean_env() -> dict:
    """A user's environment: no PYTHONPATH pointing into the project."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_import_is_cheap_and_installs_one_name(tmp_path):
    code = ("import sys, importlib.util, importlib.metadata as md\n"
            "import hpsearch\n"
            "print(sorted(m for m in ('ray', 'torch', 'mlflow', 'pandas') if m in sys.modules))\n"
            "print([n for n in " + repr(SHADOWS) + " if importlib.util.find_spec(n)])\n"
            "print(hpsearch.__version__ == md.version('hpsearch'))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    heavy, top_level, version = r.stdout.splitlines()
    assert heavy == "[]"          # no Ray, torch, MLflow or pandas until used
    assert top_level == "[]"      # nothing but `hpsearch` at the top of site-packages
    assert version == "True"
    assert {"run", "run_many", "load", "resume", "plan", "load_spec", "predict", "Search",
            "SpecError", "SearchFailed", "trainables", "searches"} <= set(dir(hpsearch))


def test_trainables_is_the_registry_and_a_table():
    table = hpsearch.trainables()
    assert set(table["name"]) == set(hpsearch.trainables.REGISTRY)
    params = hpsearch.trainables("resnet18")
    assert {"optimizer", "lr", "stem", "base_width"} <= set(params["name"])
    with pytest.raises(hpsearch.SpecError, match="did you mean 'resnet18'"):
        hpsearch.trainables("resnet19")


def test_bad_input_is_a_spec_error_with_the_command_lines_message(tmp_path, capsys):
    doc = yaml.safe_load(DIGITS.read_text())
    doc["fixed"]["base_widht"] = 8
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    storage = tmp_path / "runs"
    with pytest.raises(hpsearch.SpecError) as caught:
        hpsearch.run(bad, storage=storage)
    assert isinstance(caught.value, ValueError)
    assert main(["run", str(bad), "--storage", str(storage)]) == 2
    assert capsys.readouterr().err.strip() == f"hpsearch: error: {caught.value}"
    assert "`fixed.base_widht`: trainable 'resnet18' does not take" in str(caught.value)
    assert not storage.exists()  # nothing written
    # an override is named as the keyword that set it
    with pytest.raises(hpsearch.SpecError, match=r"`search.samples` \(from samples=\): must be >= 1"):
        hpsearch.load_spec(DIGITS, samples=0)
    # the checks that only the command line made are the API's too: a storage root that
    # is a file, a search name already taken, an unknown search
    (tmp_path / "file").write_text("x")
    with pytest.raises(hpsearch.SpecError, match="is a file, not a folder"):
        hpsearch.run(DIGITS, storage=tmp_path / "file")
    with pytest.raises(hpsearch.SpecError, match="no search named 'nowhere'"):
        hpsearch.load("nowhere", storage=storage)


def test_run_returns_a_search_that_a_notebook_can_use(ray_session, storage, capsys):
    import ray
    import torch

    session = ray.get_runtime_context().get_node_id()
    search = hpsearch.run(DIGITS, name="api-digits", storage=storage.root, export=True)
    assert isinstance(search, hpsearch.Search) and search.result.ok
    assert ray.get_runtime_context().get_node_id() == session  # Ray started once, reused
    out = capsys.readouterr().out
    assert "search 'api-digits' finished: 4 trials" in out
    assert "best trial (*)" not in out  # the table is the object's, not printed

    trials = search.trials
    assert len(trials) == 4 and list(trials["number"]) == [1, 2, 3, 4]
    assert set(trials["state"]) == {"FINISHED"}
    assert trials["lr"].dtype == float and trials["batch_size"].isin([32, 64]).all()
    assert set(trials["optimizer"]) <= {"sgd", "adam"}
    best = search.best
    assert best.best == trials["best_val_accuracy"].max()
    curves = search.history()
    assert {"trial_id", "epoch", "val_accuracy", "train_loss"} <= set(curves.columns)
    assert len(curves) == trials["epochs"].sum()
    html = search._repr_html_()
    assert "<table" in html and all(t in html for t in trials["trial_id"])
    figures = search.figures()
    assert {"curves", "trials", "rungs", "optuna_history"} <= set(figures)
    assert isinstance(search.model(), torch.nn.Module)

    again = hpsearch.load("api-digits", storage=storage.root)
    assert again.trials.equals(trials) and again.state == "FINISHED"
    listing = hpsearch.searches(storage=storage.root)
    assert list(listing["search"]) == ["api-digits"]

    # one prediction everywhere: raw uint8 pixels, image files, the registered pyfunc
    bundle = storage.export_dir("api-digits")
    config = json.loads((bundle / "config.json").read_text())
    from hpsearch.trainables import data as data_sources

    x_test, _ = data_sources.load(config["hyperparameters"]["data"]).test
    info = config["data"]
    pixels = ((x_test[:6, 0].numpy() * info["std"][0] + info["mean"][0])
              * info["pixel_scale"]).round().clip(0, 255).astype(np.uint8)
    from_arrays = hpsearch.predict(bundle, pixels)
    assert [r["input"] for r in from_arrays] == [f"array[{i}]" for i in range(6)]
    reference = hpsearch.predict(bundle, list(pixels), use_weights=True)
    assert [r["class"] for r in from_arrays] == [r["class"] for r in reference]
    with pytest.raises(hpsearch.SpecError, match="must be uint8"):
        hpsearch.predict(bundle, pixels.astype(np.float32))
    _served_model_answers_raw_pixels(storage, "api-digits", pixels, from_arrays)


def _served_model_answers_raw_pixels(storage, name: str, pixels, expected: list[dict]) -> None:
    """`mlflow models serve` of the registered model, asked with raw pixels over HTTP."""
    from hpsearch.cluster.local import free_ports

    uri = f"sqlite:///{storage.root / 'mlflow.db'}"
    version = MlflowClient(uri).search_model_versions(f"name = '{name}'")[0].version
    port = free_ports(1)[0]
    # as from an activated environment: MLflow starts `uvicorn` by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{version}",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
                time.sleep(1)
        body = json.dumps({"inputs": pixels.tolist()}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=120).read())["predictions"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(30)
    assert [a["class"] for a in answer] == [r["class"] for r in expected]
    assert [a["probability"] for a in answer] == pytest.approx(
        [r["probability"] for r in expected], abs=1e-5)


def test_a_users_own_files_shadow_nothing(tmp_path):
    """search.py, results.py (modules) and cluster/, trainables/ (packages) that raise on
    import, in the folder a user runs from: the command line, the API and the Ray
    workers (which put that folder first on sys.path) never import them."""
    work = tmp_path / "course"
    work.mkdir()
    for name in SHADOWS:
        bomb = f"raise ImportError('the user\\'s own {name} was imported')\n"
        if name in ("search", "results"):
            (work / f"{name}.py").write_text(bomb)
        else:
            (work / name).mkdir()
            (work / name / "__init__.py").write_text(bomb)
    shutil.copy(DIGITS, work / "q.yaml")
    env = _clean_env()
    exe = Path(sys.executable).parent / "hpsearch"
    cli = subprocess.run([str(exe), "run", "q.yaml", "--smoke", "--storage", "cli"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, (cli.stdout + cli.stderr)[-3000:]
    assert "2 trials (0 errored)" in cli.stdout
    code = ("import hpsearch\n"
            "s = hpsearch.run('q.yaml', smoke=True, storage='api', progress=False)\n"
            "print(list(s.trials['stop_reason']))\n")
    api = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                         text=True, timeout=600)
    assert api.returncode == 0, (api.stdout + api.stderr)[-3000:]
    assert api.stdout.strip().splitlines()[-1] == "['completed', 'completed']"
    module = subprocess.run([sys.executable, "-m", "hpsearch", "trainables"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and "resnet18" in module.stdout, module.stderr
