"""Export: best trial -> evaluate ONCE on the held-out test split -> bundle.

The bundle (written to a temporary folder beside its destination and renamed
into place, so a failed export leaves nothing half-written):

    weights.pt       the model's state_dict; torch.load(..., weights_only=True)
    config.json      hyperparameters + every fact needed to rebuild inputs
    metrics.json     val metrics of the exported epoch and the test metrics
    model.pt2        torch.export program (loads with torch.export.load, no project code)
    model.onnx       the same network for onnxruntime, where it exports cleanly
    report/          summary.md, best_trial/ (curves, confusion matrix, per-class table,
                     misclassified images, model facts, filters, grad norms), search/
    MANIFEST.sha256  sha256 of every file above, `sha256sum -c` compatible

The test split is read here and nowhere else in the product.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hpsearch.errors import SpecError
from hpsearch.results.objective import finite, primary
from hpsearch.results.report import attach_to_mlflow, write_reports
from hpsearch.results.status import best_row, recheck_summary, trial_rows
from hpsearch.results.storage import Storage


class ExportError(SpecError):
    """The search has nothing (or not the named trial) to export."""


@dataclass
class Bundle:
    path: Path
    trial_id: str
    metrics: dict
    config: dict


def best_checkpoint_state(experiment_dir: Path, trial_id: str, metric: str, mode: str) -> dict:
    """The trial's best checkpoint's state; ExportError when it has none."""
    from hpsearch.results.checkpoints import best_state

    state = best_state(experiment_dir, trial_id, metric, mode)
    if state is None:
        raise ExportError(f"trial {trial_id} has no checkpoint under {experiment_dir}; "
                          "it may have failed before its first epoch ended")
    return state


def load_trial(name: str, storage: Storage, trial_id: str | None = None, *,
               by: str | None = None, where: str | None = None):
    """(meta, rows, the chosen row, its best checkpoint's state, the rebuilt model).
    ``by``/``where``: pick from the Pareto front (see :func:`hpsearch.results.front.pick`)."""
    meta, rows, row, state = chosen_state(name, storage, trial_id, by=by, where=where)
    return meta, rows, row, state, rebuild(state)


def rebuild(state: dict):
    """The model of a checkpoint state, its weights loaded, in eval mode on the CPU."""
    from hpsearch.trainables.loop import build_model

    embedding = state["model"].get("embedding.weight")
    if state["config"].get("embeddings") and embedding is not None:
        # the pretrained vectors' size, from the weights: the bundle (and this export)
        # rebuild the model without the vectors file, which the weights already hold
        state["config"] = {**state["config"], "embed_dim": int(embedding.shape[1])}
    model = build_model(state["config"], state["data_info"])
    model.load_state_dict(state["model"])
    model.eval()
    return model


def chosen_state(name: str, storage: Storage, trial_id: str | None = None, *,
                 by: str | None = None, where: str | None = None):
    """(meta, rows, the chosen row: the best trial, ``trial_id``, or the Pareto front's
    pick by ``by``/``where``; its best checkpoint's state)."""
    meta, rows = trial_rows(name, storage)
    _, rechecks = trial_rows(name, storage, recheck=True)
    metric, mode = primary(meta["spec"]).metric, primary(meta["spec"]).mode
    if trial_id is None and picks_from_front(meta, by, where):
        from hpsearch.results.front import pick

        row = pick(meta, rows, by=by, where=where)[0]
    elif trial_id is None:
        row = chosen_row(meta, rows, rechecks)
        if row is None:
            raise ExportError(f"search {name!r} has no trial with a finite {metric}; nothing to export")
    else:
        matches = [r for r in rows + rechecks if r.trial_id == trial_id]
        if not matches:
            raise ExportError(f"search {name!r} has no trial {trial_id!r}; trials: "
                              f"{', '.join(r.trial_id for r in rows + rechecks)}")
        row = matches[0]
    folder = storage.recheck_dir(name) if row.recheck_of else storage.search_dir(name)
    return meta, rows, row, best_checkpoint_state(folder, row.trial_id, metric, mode)


def chosen_row(meta: dict, rows: list, rechecks: list):
    """The trial to export: the best trial of the search; after a seed re-check, the
    best run (search trial or re-run) of the configuration with the best mean."""
    if rechecks:
        checked = recheck_summary(meta, rows, rechecks)
        if checked and checked[0].values:
            winner = checked[0]
            candidates = [r for r in rows if r.trial_id == winner.trial_id] + winner.runs
            return best_row(meta, [r for r in candidates if r.best is not None])
    return best_row(meta, rows)


def picks_from_front(meta: dict, by: str | None, where: str | None) -> bool:
    """The export chooses from a front: several objectives, constraints, or a rule."""
    from hpsearch.results.front import picks_front

    return bool(by or where) or picks_front(meta)


def selection_note(meta: dict, rows: list, rechecks: list, row, *, by: str | None = None,
                   where: str | None = None) -> str | None:
    """How the exported trial was chosen, when a front or a seed re-check chose it."""
    if picks_from_front(meta, by, where):
        from hpsearch.results.front import pick

        chosen, why = pick(meta, rows, by=by, where=where)
        return (f"Chosen from the Pareto front: trial `{chosen.trial_id}`, {why}."
                if chosen is row else None)
    checked = recheck_summary(meta, rows, rechecks) if rechecks else []
    if not checked or not checked[0].values:
        return None
    metric = primary(meta["spec"]).metric
    win = checked[0]
    text = (f"Chosen by the seed re-check: the configuration of trial `{win.trial_id}` has the "
            f"best mean {metric} over {len(win.values)} new seeds, {win.mean:.4f} ± {win.sd:.4f}")
    if len(checked) > 1 and checked[1].values:
        text += (f" (runner-up, trial `{checked[1].trial_id}`: {checked[1].mean:.4f} ± "
                 f"{checked[1].sd:.4f})")
    seed = f", seed {row.seed}" if row.seed else ""
    return text + f"; exported its best run, `{row.trial_id}`{seed}."


def export_best(name: str, *, storage: Storage, trial_id: str | None = None,
                to: Path | None = None, report: bool = True, register: bool = True,
                echo=print, pick: str | None = None, where: str | None = None,
                refit=None) -> Bundle:
    """Evaluate the chosen trial (the best, or ``trial_id``) once on the test split and
    write its bundle (see the module's docstring); register it in MLflow's registry.

    ``refit``: a :class:`~hpsearch.search.refit.Refit` of the chosen trial (run first by
    ``search/refit.py``): its model is the one evaluated and bundled, and the test
    metrics go to its MLflow run; the chosen trial's validation score stays beside them
    (``metrics.json``: ``val`` is the trial's, ``train`` and ``test`` the refit model's,
    ``refit`` says on what and for how long it trained)."""
    import torch

    from hpsearch.trainables.loop import evaluate_split, load_data

    meta, rows, row, state = chosen_state(name, storage, trial_id, by=pick, where=where)
    if refit is not None and refit.of != row.trial_id:
        raise ExportError(f"the refit given is of trial {refit.of}, but the export chose "
                          f"trial {row.trial_id}; refit the chosen trial")
    metric, mode = primary(meta["spec"]).metric, primary(meta["spec"]).mode
    final = refit.state if refit else state  # the state whose weights are exported
    model = rebuild(final)
    config, data_info = final["config"], final["data_info"]
    selection = selection_note(meta, rows, trial_rows(name, storage, recheck=True)[1], row,
                               by=pick, where=where) if trial_id is None else None
    if selection and picks_from_front(meta, pick, where):
        echo(selection)
    data = load_data(config)
    x_test, y_test = data.test
    # the one look at the test split, on the GPU where there is one: the trials measured
    # validation there (same autocast), and a CUDA-trained CNN over 10k test images
    # takes tens of seconds of CPU; the exported files are made from the CPU copy
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    test = evaluate_split(config, model.to(device), data, data.test, device=device)
    model.cpu()
    test_seconds = time.perf_counter() - t0

    sizes = state["data_info"]["sizes"]
    metrics = {
        "objective": {"metric": metric, "mode": mode},
        **({"objectives": meta["spec"]["objective"]} if isinstance(meta["spec"]["objective"], list)
           else {}),
        **({"selection": selection} if selection else {}),
        "task": data_info.get("task", "classification"),
        "model": "refit" if refit else "trial",
        "epoch": final["epoch"],
        # the score that chose the configuration: its trial's, at the trial's best epoch
        "val": {**_prefixed(state["metrics"], "val_"), "n": sizes["val"],
                "trial_id": row.trial_id, "epoch": state["epoch"]},
        "train": {**_prefixed(final["metrics"], "train_"),
                  "n": refit.fit_size if refit else sizes["train"]},
        "test": {**{k: v for k, v in test.items() if isinstance(v, (int, float))},
                 "n": len(y_test), "seconds": test_seconds, "device": device.type},
        **({"refit": refit.facts()} if refit else {}),
    }
    bundle_config = {
        "search": name, "trial_id": row.trial_id, "trainable": config["trainable"],
        "hyperparameters": config, "data": data_info, "input": input_description(data_info, x_test),
        "seed": config.get("seed"), "versions": meta.get("versions", {}),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"refit": refit.facts()} if refit else {}),
    }
    # the exported model's MLflow run: the refit's, or the chosen trial's own
    owner = dataclasses.replace(row, run_id=refit.run_id) if refit else row

    # what torch.export traces (here and in MLflow 3's pt2 flavour): the model, or its
    # trace-friendly twin with equal outputs (the text RNNs' version without packing)
    portable = model.portable() if hasattr(model, "portable") else model
    dest = (to or storage.export_dir(name)).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        torch.save(model.state_dict(), tmp / "weights.pt")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        # batch dimension left dynamic: the program takes any batch size
        batch = torch.export.Dim("batch", min=1, max=65536)
        with _tracing_quietly():
            program = torch.export.export(portable, (x_test[:2].clone(),),
                                          dynamic_shapes=({0: batch},))
        torch.export.save(program, tmp / "model.pt2")
        bundle_config["onnx"] = export_onnx(portable, x_test[:2].clone(), tmp / "model.onnx",
                                            program=program)
        (tmp / "config.json").write_text(json.dumps(bundle_config, indent=2, default=str))
        if report:
            write_reports(tmp / "report", name=name, meta=meta, rows=rows, row=row, model=model,
                          data=data, config=config, split="test", evaluation=test,
                          facts={"versions": meta.get("versions", {})},
                          bundle_metrics={**metrics, "trial_id": row.trial_id,
                                          "selection": selection})
        write_manifest(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.chmod(0o755)  # mkdtemp made it private
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _record_in_mlflow(meta, row, owner, metrics, dest)
    if report:
        attach_to_mlflow(meta, owner, dest / "report")
    if register:
        version = register_model(meta, owner, dest, bundle_config, name, metrics,
                                 x_test[:2].clone())
        echo(f"registered in the MLflow Model Registry as {name!r} version {version}")
    return Bundle(dest, row.trial_id, metrics, bundle_config)


def export_onnx(model, example, path: Path, *, program=None) -> str:
    """ONNX (opset from torch's dynamo exporter, dynamic batch) where the model exports
    cleanly; returns the file name, or why there is none. Runs with onnxruntime alone.

    ``program``: the model's ``torch.export`` program (model.pt2's, dynamic batch), which
    the ONNX exporter translates as it is instead of tracing the model again: for the
    RNNs that second trace was most of an export (a text LSTM: ~17 s of 19 s on 2 cores;
    a CNN's trace is ~1 s). Where the program does not translate, the model is exported
    as before (the exporter's own capture strategies, one after another)."""
    import warnings

    import torch

    def onnx_of(what):
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            onnx = torch.onnx.export(
                what, (example,), dynamo=True, verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},))
            onnx.save(str(path))

    if program is not None:
        try:
            onnx_of(program)
            return path.name
        except Exception:  # the module's own capture below, as without a program
            path.unlink(missing_ok=True)
    try:
        onnx_of(model)
        return path.name
    except Exception as e:  # the bundle stands without it: model.pt2 is the portable file
        path.unlink(missing_ok=True)
        return f"not exported: {type(e).__name__}: {str(e).splitlines()[0][:200]}"


def _prefixed(metrics: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def headline(metrics: dict) -> tuple[str, float | None]:
    """The split-level number people quote: accuracy, or R^2 for regression."""
    key = "r2" if metrics.get("task") == "regression" else "accuracy"
    return key, metrics["test"].get(key)


def input_description(info: dict, example) -> dict:
    kind = info.get("kind", "image")
    shape, dtype = list(example.shape[1:]), str(example.dtype).replace("torch.", "")
    if kind == "series":
        how = (f"the last {info['seq_length']} rows of columns {info['columns']} "
               "(one-hot and calendar columns rebuilt from the time column), then (x - offset) / scale per column; "
               "outputs * target_scale + target_offset are in the target's units")
    elif kind == "text" and "vectorizer" in info:
        how = "featurize(text) with data.vectorizer: n-gram counts (x idf, L2-normalized for tfidf)"
    elif kind == "text":
        how = (f"tokenize with {info['tokenizer']} (lowercase={info['lowercase']}), map through "
               f"data.vocab (unknown -> 1), truncate/pad with 0 to {info['max_len']}")
    else:
        how = "x / pixel_scale, then (x - mean) / std per channel"
    return {"shape": shape, "dtype": dtype, "preprocess": how}


def write_manifest(folder: Path) -> None:
    lines = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256"):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        lines.append(f"{digest}  {f.relative_to(folder).as_posix()}")
    (folder / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")


def verify_manifest(folder: Path) -> list[str]:
    """Files whose sha256 differs from the manifest (empty when intact)."""
    bad = []
    for line in (folder / "MANIFEST.sha256").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        if hashlib.sha256((folder / rel).read_bytes()).hexdigest() != digest:
            bad.append(rel)
    return bad


def _record_in_mlflow(meta: dict, row, owner, metrics: dict, bundle: Path) -> None:
    """The test metrics on the exported model's run (``owner``: the chosen trial's, or
    its refit's), once; the choice and the headline on the parent."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(meta["tracking_uri"])
    now = int(time.time() * 1000)
    client.log_batch(owner.run_id, metrics=[
        Metric(f"test_{k}", float(v), now, 0) for k, v in metrics["test"].items()
        if finite(v) and k not in ("n", "seconds")],
        tags=[RunTag("exported", "true")])
    key, value = headline(metrics)
    refit = [RunTag("exported_model", "refit"), RunTag("refit_run_id", owner.run_id)] \
        if owner.run_id != row.run_id else [RunTag("exported_model", "trial")]
    client.log_batch(meta["parent_run_id"], tags=[
        RunTag("best_trial_id", row.trial_id), RunTag("best_run_id", row.run_id),
        RunTag("export_path", str(bundle)), *refit],
        metrics=[Metric(f"best_test_{key}", value, now, 0)])
    for name in ("config.json", "metrics.json", "MANIFEST.sha256"):  # the bundle's small files
        client.log_artifact(owner.run_id, str(bundle / name), artifact_path="export")


@contextlib.contextmanager
def _scoped_tracking_uri(uri: str):
    """mlflow.set_tracking_uri also writes $MLFLOW_TRACKING_URI (MLflow 3), so a
    later search in the same process would log into this search's store; set it
    for the block only and restore both the global and the environment."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with tracking_utils._use_tracking_uri(uri):
            yield
    finally:
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@contextlib.contextmanager
def _tracing_quietly():
    """torch.export's notes to its own developers, printed for every RNN export (here
    and again when MLflow exports and reloads the model): the cuDNN flat-weights list
    "assigned during export", `_check_is_size` deprecations, and the deserializer's
    "Symbol u3 did not appear in the graph". The bundle's own checks stay loud."""
    import warnings

    serde = logging.getLogger("torch._export.serde.serialize")
    level = serde.level
    serde.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned "
                                                      r"during export")
            warnings.filterwarnings("ignore", message=r"_check_is_size will be removed")
            yield
    finally:
        serde.setLevel(level)


@contextlib.contextmanager
def _mlflow_quietly():
    """MLflow's notes while it logs the pyfunc (INFO "Inferring model signature", the
    WARNING about pickling a Python object, its UserWarnings about type hints and
    integer columns, the artifact download bars) are for MLflow users, not for the
    product's output: the export prints its own lines. Errors still show."""
    import warnings

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    old_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)
        if old_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = old_bar


def register_model(meta: dict, row, bundle: Path, config: dict, name: str, metrics: dict,
                   example) -> str:
    """Log the bundle as an MLflow pyfunc (its program with its preprocessing: raw pixels,
    texts or table rows in, labels and probabilities or forecasts out; see
    :mod:`hpsearch.results.pyfunc`) on its trial's run and register it under the
    search name (a new version per export), tagged with the test metrics."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(meta["tracking_uri"])
    status = client.get_run(row.run_id).info.status
    with _scoped_tracking_uri(meta["tracking_uri"]), _tracing_quietly(), _mlflow_quietly():
        # imported here: MLflow warns about the class's type hints as it is defined
        from hpsearch.results.pyfunc import log_bundle_model

        with mlflow.start_run(run_id=row.run_id):  # reopens the finished run for the upload
            info = log_bundle_model(bundle, config, example, name=name)
    client.set_terminated(row.run_id, status=status)  # back to what it was
    version = str(info.registered_model_version)
    key, value = headline(metrics)
    tags = {"trial_id": row.trial_id, f"test_{key}": value, "test_loss": metrics["test"]["loss"],
            f"val_{key}": metrics["val"].get(key), "search": name,
            "model": metrics.get("model", "trial")}
    if "refit" in metrics:  # what the registered model trained on, and for how long
        tags.update(refit_of=metrics["refit"]["of_trial"], fit_on=metrics["refit"]["fit_on"],
                    refit_epochs=metrics["refit"]["epochs"])
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, str(v))
    return version
