"""The hand-in notebook (`hpsearch notebook`): written from real smoke searches of an
image spec, a series spec, a text spec and a Part II pair (VGG-Deep without and with
batch norm), executed by nbclient in a fresh kernel, and read back from the saved
file: no error output, the expected sections, at least three images in the data
section, the test metric of the discussion equal to the export's metrics.json. A
search whose trials all failed gets a notebook that says so. Real Ray, MLflow and
ipykernel; nothing is mocked."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from hpsearch.search.cli import main

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def _vgg_deep(batch_norm: bool) -> dict:
    """spaces/vgg_deep.yaml on digits at an eighth of the width: the Part II pair."""
    doc = yaml.safe_load((ROOT / "spaces" / "vgg_deep.yaml").read_text())
    doc["name"] = f"deep-{'bn' if batch_norm else 'plain'}"
    doc["data"] = {"source": "digits"}
    doc["search"].pop("cover")
    doc["space"] = {"lr": doc["space"]["lr"]}
    doc["fixed"].update(batch_norm=batch_norm, width_mult=0.125, fc_width=32, batch_size=16)
    return doc


FAILING = {"name": "all-nan", "trainable": "plugins.nan_probe", "data": {"source": "digits"},
           "objective": {"metric": "val_accuracy", "mode": "max"},
           "search": {"samples": 2, "concurrency": 2},
           "scheduler": {"name": "fifo", "max_epochs": 1},
           "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
           "space": {"lr": {"loguniform": [1.0e-3, 1.0e-2]}}, "fixed": {"poison": True}}


@pytest.fixture(scope="module")
def searches(ray_session, tmp_path_factory):
    """One set of smoke searches for every test here, run as one batch (one Ray session);
    none exported, so the first notebook of each exports it (as a student's would)."""
    import hpsearch

    storage = tmp_path_factory.mktemp("handin") / "runs"
    specs = [str(ROOT / "spaces" / f) for f in ("cluster_digits.yaml", "forecast_seattle.yaml",
                                               "text_baselines.yaml")]
    done = hpsearch.run_many([*specs, _vgg_deep(False), _vgg_deep(True), FAILING], smoke=True,
                             storage=storage, progress=False)
    assert [s.result.ok for s in done] == [True] * 5 + [False], [s.result for s in done]
    return storage, {s.meta["spec"]["trainable"] + ("-bn" if "bn" in s.name else ""): s.name
                     for s in done}


def _write(storage: Path, names: list[str], to: Path) -> nbformat.NotebookNode:
    assert main(["notebook", *names, "--to", str(to), "--storage", str(storage)]) == 0
    return nbformat.read(str(to), as_version=4)


def _text(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    data = output.get("data", {})
    return data.get("text/markdown") or data.get("text/html") or data.get("text/plain") or ""


def _sections(nb) -> dict[str, list]:
    """The notebook's cells by its level-2 heading ("1. The data": [cells])."""
    out, current = {}, "title"
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            current = cell.source.splitlines()[0][3:]
            out[current] = []
        else:
            out.setdefault(current, []).append(cell)
    return out


def _images(cells) -> int:
    return sum("image/png" in o.get("data", {}) for c in cells if c.cell_type == "code"
               for o in c.outputs)


def _discussion(nb) -> str:
    [cells] = [v for k, v in _sections(nb).items() if k.endswith("Discussion")]
    return "".join(_text(o) for c in cells if c.cell_type == "code" for o in c.outputs)


def _check(nb, storage: Path, names: list[str], data_figures: int) -> str:
    """What every hand-in notebook must hold; returns its discussion."""
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o["output_type"] == "error" or (o["output_type"] == "stream"
                                                 and o["name"] == "stderr")]
    assert not errors, errors
    sections = _sections(nb)
    for heading in ("1. The data", "2. The search", "3. The best model"):
        assert any(k.startswith(heading) for k in sections), list(sections)
    assert any(k.endswith("References") for k in sections), list(sections)
    assert _images(sections["1. The data"]) >= max(3, data_figures)
    title = nb.cells[0].source
    assert "hpsearch 0.2.0" in title and all(f"`{n}`" in title for n in names)
    assert "hpsearch run " in title or "hpsearch.run_many(" in title  # the command that made it
    discussion = _discussion(nb)
    for name in names:
        metrics = json.loads((storage / "exports" / name / "metrics.json").read_text())
        key = "r2" if metrics["task"] == "regression" else "accuracy"
        assert f"test {'R²' if key == 'r2' else key} {metrics['test'][key]:.4f}" in discussion
    return discussion


def test_image_search_notebook(searches, tmp_path):
    """Through the Python API (``Search.notebook``), as a student's own notebook calls it."""
    import hpsearch

    storage, names = searches
    path = hpsearch.load(names["resnet18"], storage=storage).notebook(tmp_path / "a1_part_1.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    _check(nb, storage, [names["resnet18"]], data_figures=4)
    model = _sections(nb)["3. The best model"]
    assert _images(model) >= 4  # curves, confusion matrix, misclassified, filters
    assert any("Layer (type:depth-idx)" in _text(o) for c in model if c.cell_type == "code"
               for o in c.outputs)  # torchinfo's summary


def test_series_search_notebook(searches, tmp_path):
    storage, names = searches
    nb = _write(storage, [names["forecaster"]], tmp_path / "a1_part_3.ipynb")
    discussion = _check(nb, storage, [names["forecaster"]], data_figures=4)
    assert "naive last-value forecast" in discussion
    sources = "".join(c.source for c in _sections(nb)["3. The best model"])
    assert "predicted_vs_actual" in sources


def test_text_search_notebook(searches, tmp_path):
    storage, names = searches
    nb = _write(storage, [names["text_baseline"]], tmp_path / "a1_part_4.ipynb")
    _check(nb, storage, [names["text_baseline"]], data_figures=3)
    model = _sections(nb)["3. The best model"]
    assert any("predicted" in _text(o) and "<table" in _text(o)
               for c in model if "misclassified" in c.source for o in c.outputs)


def test_part_two_pair_notebook(searches, tmp_path):
    """VGG-Deep and its batch-norm twin: curves on one plot, the metrics table with
    parameters and MACs, the gradient norms (all layers and the subset) of each, the
    twins' figure, and a discussion naming the winner and the gradient-norm ratios."""
    storage, names = searches
    pair = [names["vgg_deep"], names["vgg_deep-bn"]]
    nb = _write(storage, pair, tmp_path / "a1_part_2.ipynb")
    discussion = _check(nb, storage, pair, data_figures=4)
    sections = _sections(nb)
    comparison = sections["4. Comparison"]
    assert _images(comparison) == 2  # the curves and the batch-norm twins
    assert any("macs" in _text(o) for c in comparison for o in c.get("outputs", []))
    grads = [c for c in sections["3. The best models"] if "grad_norms(" in c.source]
    assert len(grads) == 4 and all(_images([c]) == 1 for c in grads)
    assert "**Comparison**" in discussion and "standard error" in discussion
    assert "Gradient norms: without batch norm" in discussion


def test_notebook_of_a_search_whose_trials_all_failed(searches, tmp_path):
    storage, names = searches
    nb = _write(storage, [names["plugins.nan_probe"]], tmp_path / "failed.ipynb")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o["output_type"] == "error"]
    assert not errors, errors
    assert "every trial failed" in _discussion(nb)
    assert not (storage / "exports" / names["plugins.nan_probe"]).exists()


def test_notebook_bad_input(tmp_path, capsys):
    """A `--to` that is not a notebook or a search that does not exist: one line, exit 2."""
    storage = tmp_path / "runs"
    assert main(["notebook", "x", "--to", str(tmp_path / "x.txt"),
                 "--storage", str(storage)]) == 2
    assert "ends in .ipynb" in capsys.readouterr().err
    assert main(["notebook", "nope", "--to", str(tmp_path / "x.ipynb"),
                 "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert "no search named 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.ipynb").exists()
