"""The model an export registers in MLflow's Model Registry: the bundle's portable
program with the bundle's preprocessing, as an MLflow ``pyfunc``.

It takes what ``hpsearch predict`` takes, raw: uint8 pixels (a tensor N×H×W or
N×H×W×C), texts (a table with a ``text`` column, or a list of strings), a
forecaster's rows (a table with the source's columns). It answers what
``hpsearch predict`` answers: a table with ``class``, ``index`` and ``probability``
per input, or ``target``, ``steps_ahead`` and ``forecast`` per step. So
``mlflow models serve -m models:/NAME/VERSION`` is usable as it is: a request
carries pixels or texts, not normalized tensors, and the reply carries labels.

The model's artifacts are the bundle's ``config.json`` and ``model.pt2``; its code is
logged as code (MLflow's "models from code": a two-line file that builds
:class:`BundleModel`), not as a cloudpickle of an object, so loading the model runs
no pickled bytes, as the bundle's weights load with ``weights_only=True``.
``hpsearch`` must be installed where the model is served (``--env-manager local``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.pyfunc

with warnings.catch_warnings():
    # MLflow warns, as the class is made, that predict() has no type hint (its own schema
    # check): the inputs are checked by predict's code, one line saying what is wrong,
    # and the signature comes from the input example. MLflow re-enables UserWarnings
    # inside its check ("once"), so only the display can be silenced, for this block.
    warnings.showwarning = lambda *args, **kwargs: None

    class BundleModel(mlflow.pyfunc.PythonModel):
        """A bundle's program and preprocessing behind MLflow's pyfunc interface."""

        def load_context(self, context) -> None:
            from hpsearch.results.predict import load_bundle_config, load_model

            bundle = Path(context.artifacts["bundle"])
            self.config = load_bundle_config(bundle)
            self.model = load_model(bundle, self.config, use_weights=False)

        def predict(self, context, model_input, params=None):
            import pandas as pd

            from hpsearch.results.predict import predict_with

            return pd.DataFrame(predict_with(self.model, self.config,
                                             raw_inputs(model_input, self.config)))


def raw_inputs(model_input, config: dict):
    """What MLflow hands a pyfunc (a DataFrame, an array, a list) as predict's inputs."""
    import numpy as np
    import pandas as pd

    info = config["data"]
    if info.get("task") == "regression":
        return model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if info.get("kind") == "text":
        if isinstance(model_input, pd.DataFrame):
            return model_input
        return [str(t) for t in np.asarray(model_input).ravel()]
    if isinstance(model_input, pd.DataFrame):  # pixels sent as a table: one row per image
        model_input = np.stack([np.asarray(v) for v in model_input.iloc[:, 0]])
    return np.asarray(model_input).astype(np.uint8)


def input_example(config: dict, example):
    """A raw input example for the registered model's signature: the first test images
    as uint8 pixels (undoing the normalization), two texts, or None for a forecaster
    (its table's columns are named in config.json)."""
    import numpy as np
    import pandas as pd

    info = config["data"]
    if info.get("task") == "regression":
        return None
    if info.get("kind") == "text":
        return pd.DataFrame({"text": ["A lovely snack, my dog adores it.",
                                      "Stale and bland, would not buy again."]})
    x = example.detach().cpu().float()
    mean = np.asarray(info["mean"], dtype=np.float32)[None, :, None, None]
    std = np.asarray(info["std"], dtype=np.float32)[None, :, None, None]
    pixels = ((x.numpy() * std + mean) * info.get("pixel_scale", 255.0)).round().clip(0, 255)
    pixels = pixels.astype(np.uint8)
    return pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1)


MODEL_CODE = """\
# The registered model's code: hpsearch's bundle model (see hpsearch.results.pyfunc).
import mlflow

from hpsearch.results.pyfunc import BundleModel

mlflow.models.set_model(BundleModel())
"""


def log_bundle_model(bundle: Path, config: dict, example, *, name: str):
    """Log the pyfunc on the active run and register it as ``name``; returns MLflow's
    ModelInfo. Only ``config.json`` and ``model.pt2`` travel with it."""
    import contextlib
    import io
    import logging
    import shutil
    import tempfile
    import warnings

    quiet = logging.getLogger("mlflow.pyfunc")  # "Inferring model signature ..." (INFO)
    level = quiet.level
    with tempfile.TemporaryDirectory(prefix="hpsearch-pyfunc-") as tmp, \
            warnings.catch_warnings():
        # MLflow's hint that the reply's integer `index` column could not hold a missing
        # value: it never holds one
        warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer")
        artifacts = Path(tmp) / "bundle"
        artifacts.mkdir()
        for f in ("config.json", "model.pt2"):
            shutil.copy2(bundle / f, artifacts / f)
        code = Path(tmp) / "hpsearch_model.py"
        code.write_text(MODEL_CODE)
        quiet.setLevel(logging.WARNING)
        try:  # MLflow's "Successfully registered model ..." lines go to stderr: the export
            # prints its own line about the registration
            with contextlib.redirect_stderr(io.StringIO()):
                return mlflow.pyfunc.log_model(
                    name="model", python_model=str(code), artifacts={"bundle": str(artifacts)},
                    registered_model_name=name, input_example=input_example(config, example),
                    # skip slow requirement inference; hpsearch must be installed to serve
                    pip_requirements=["torch", "torchvision", "pandas", "pillow", "hpsearch"])
        finally:
            quiet.setLevel(level)
