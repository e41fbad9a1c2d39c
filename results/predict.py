"""`hpsearch predict BUNDLE INPUT...`: predict with an exported bundle alone.

The portable ``model.pt2`` (a ``torch.export`` program) runs without this
project's model code; preprocessing is rebuilt from ``config.json``:

- image classifiers: INPUTs are image files, folders of them, or uint8 pixel
  arrays (H×W, H×W×C, or a batch N×H×W[×C]) (size, channels, pixel scale,
  training-split mean/std, class names);
- text classifiers: each INPUT is a text, or a ``.txt`` file with one text per
  line, or a table's ``text`` column (tokenizer + vocabulary + length, or the
  n-gram vocabulary + idf);
- forecasters: one INPUT, a table (a CSV file or a pandas DataFrame) with the
  source's columns; its last ``seq_length`` rows -> the next ``horizon`` values
  of the target.

The same functions serve ``hpsearch predict``, :func:`hpsearch.predict` and the
model the export registers in MLflow (:mod:`hpsearch.results.pyfunc`), so all
three take the same raw inputs and give the same answers.

With
``use_weights=True`` the same inputs go through ``weights.pt`` and the project's
model builder instead: the two must agree (tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hpsearch.errors import SpecError


class PredictError(SpecError):
    """Inputs (or a bundle) the model cannot take."""


def load_bundle_config(bundle: Path) -> dict:
    path = bundle / "config.json"
    if not path.is_file():
        raise PredictError(f"{bundle} is not an export bundle (no config.json); "
                           "give the folder `hpsearch export` printed")
    return json.loads(path.read_text())


BATCH = 256  # inputs per forward pass


def image_files(inputs: list) -> list:
    """The INPUTs as images: a folder stands for the images under it (any depth, in name
    order), as a class-per-folder data set is laid out; a uint8 array is one image
    (H×W or H×W×C) or a batch of them (N×H×W or N×H×W×C)."""
    import numpy as np

    from hpsearch.trainables.data import IMAGE_SUFFIXES

    out: list = []
    for i in inputs:
        if isinstance(i, np.ndarray):
            if i.dtype != np.uint8:
                raise PredictError(f"pixel arrays must be uint8 (0-255), got {i.dtype}; "
                                   "give raw pixels, the model's normalization is applied here")
            rgb = i.ndim >= 3 and i.shape[-1] in (3, 4)
            single = i.ndim == 2 or (i.ndim == 3 and rgb)
            if not 2 <= i.ndim <= 4:
                raise PredictError(f"a pixel array is H×W, H×W×C or a batch of them, got "
                                   f"shape {i.shape}")
            out += [i] if single else list(i)
            continue
        p = Path(str(i))
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                           and f.is_file())
            if not found:
                raise PredictError(f"folder {p} holds no images "
                                   f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            out += found
        else:
            out.append(p)
    return out


def _open_image(item):
    """A PIL image of a file or a pixel array."""
    import numpy as np
    from PIL import Image

    if isinstance(item, np.ndarray):
        return Image.fromarray(item[..., :3] if item.ndim == 3 and item.shape[-1] == 4 else item)
    if not item.is_file():
        raise PredictError(f"input {item} does not exist")
    try:
        return Image.open(item)
    except OSError as e:
        raise PredictError(f"input {item} is not a readable image ({e})") from None


def preprocess_images(items: list, config: dict) -> torch.Tensor:
    """Image files or pixel arrays -> the normalized batch the model was trained on."""
    import numpy as np
    from PIL import Image

    info = config["data"]
    size, channels = info["image_size"], info["in_channels"]
    mean = torch.tensor(info["mean"])[:, None, None]
    std = torch.tensor(info["std"])[:, None, None]
    batch = []
    for item in items:
        try:
            with _open_image(item) as im:
                im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32)
        except OSError as e:
            raise PredictError(f"input {item} is not a readable image ({e})") from None
        x = torch.from_numpy(arr)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        batch.append((x / info.get("pixel_scale", 255.0) - mean) / std)
    return torch.stack(batch)


def _label(item, i: int) -> str:
    return f"array[{i}]" if not isinstance(item, (str, Path)) else str(item)[:80]


def load_model(bundle: Path, config: dict, *, use_weights: bool):
    if use_weights:
        from hpsearch.trainables.loop import build_model

        model = build_model(config["hyperparameters"], config["data"])
        model.load_state_dict(torch.load(bundle / "weights.pt", map_location="cpu",
                                         weights_only=True))
        return model.eval()
    return torch.export.load(str(bundle / "model.pt2")).module()


def read_texts(inputs) -> list[str]:
    """Texts, ``.txt`` files (one text per line), or a table's ``text`` column."""
    import pandas as pd

    if isinstance(inputs, pd.DataFrame):
        if "text" not in inputs.columns:
            raise PredictError(f"a table of texts needs a `text` column, got {list(inputs.columns)}")
        inputs = inputs["text"]
    texts = []
    for item in inputs:
        p = Path(str(item))
        if p.suffix == ".txt" and p.is_file():
            texts += [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            texts.append(str(item))
    if not texts:
        raise PredictError("no text to classify: give texts or .txt files with one text per line")
    return texts


def preprocess_texts(texts: list[str], info: dict) -> torch.Tensor:
    """Texts -> the model's input: token ids (sequence models) or n-gram features."""
    if "vectorizer" in info:
        from hpsearch.trainables.text_baselines import featurize

        return torch.from_numpy(featurize(texts, info["vectorizer"]).toarray().astype("float32"))
    from hpsearch.trainables.data import text as text_data

    tok = text_data.tokenizer(info["tokenizer"], info["lowercase"])
    stoi = {w: i for i, w in enumerate(info["vocab"])}
    return text_data.pad([text_data.ids(tok(t), stoi, info["max_len"]) for t in texts],
                         info["max_len"])


def preprocess_window(table, info: dict) -> torch.Tensor:
    """A table of the source's columns (a CSV file or a DataFrame) -> one scaled
    window [1, seq_length, F]."""
    import numpy as np
    import pandas as pd

    from hpsearch.trainables.data import series as series_data

    if isinstance(table, pd.DataFrame):
        df, path = table.copy(), "the table"
    else:
        path = Path(str(table))
        if not path.is_file():
            raise PredictError(f"input {path} does not exist; give a CSV with the columns of "
                               f"{info['source']}")
        df = pd.read_csv(path)
    time_col = info.get("time_column")
    if time_col and time_col in df.columns:
        df[time_col] = pd.to_datetime(df[time_col])
        df = df.sort_values(time_col)
    df = df.ffill().bfill()
    need = info["seq_length"]
    if len(df) < need:
        raise PredictError(f"{path} has {len(df)} rows; the model reads the last {need}")
    df = df.tail(need).reset_index(drop=True)
    calendar = (series_data.calendar_columns(df[time_col], daily="holiday" in info["columns"])
                if time_col and time_col in df.columns else {})
    cols = []
    for c in info["columns"]:
        if c in df.columns:
            cols.append(df[c].astype(float).to_numpy())
            continue
        base = next((b for b in info.get("one_hot", []) if c.startswith(f"{b}_")), None)
        if base is not None and base in df.columns:
            cols.append((df[base].astype(str) == c[len(base) + 1:]).astype(float).to_numpy())
        elif c in calendar:
            cols.append(calendar[c].astype(float))
        else:
            raise PredictError(f"{path} lacks column {c!r} (needed: the columns of {info['source']})")
    x = (np.stack(cols, axis=1) - np.asarray(info["offset"])) / np.asarray(info["scale"])
    return torch.from_numpy(x.astype("float32"))[None]


@torch.inference_mode()
def predict(bundle: Path, inputs, *, use_weights: bool = False) -> list[dict]:
    """Predict with a bundle's portable program (or ``use_weights``: weights.pt and the
    project's model code) from raw inputs (see the module's docstring)."""
    bundle = Path(bundle)
    config = load_bundle_config(bundle)
    if config["trainable"] == "metric_resnet18":
        raise PredictError(f"{bundle}: a metric-learning bundle outputs embeddings, not classes")
    return predict_with(load_model(bundle, config, use_weights=use_weights), config, inputs)


@torch.inference_mode()
def predict_with(model, config: dict, inputs) -> list[dict]:
    """One dict per input (``class``, ``index``, ``probability``) or per forecast step."""
    import numpy as np
    import pandas as pd

    info = config["data"]
    single = isinstance(inputs, (str, Path, np.ndarray, pd.DataFrame, pd.Series))
    if info.get("task") == "regression":
        table = inputs if single else (inputs[0] if len(inputs) == 1 else None)
        if table is None:
            raise PredictError("a forecaster takes one table (a CSV or a DataFrame; its last "
                               "seq_length rows)")
        y = model(preprocess_window(table, info)).float()[0]
        values = (y * info["target_scale"] + info["target_offset"]).tolist()
        name = "table" if isinstance(table, pd.DataFrame) else str(table)
        return [{"input": name, "target": info["target"], "steps_ahead": h + 1,
                 "forecast": v} for h, v in enumerate(values)]
    # in batches: a folder of thousands of images, or a .txt of thousands of reviews,
    # need not fit in one
    if info.get("kind") == "text":
        items = read_texts([inputs] if isinstance(inputs, str) else inputs)
        prepare = lambda part: preprocess_texts(part, info)  # noqa: E731
        labels = [str(t)[:80] for t in items]
    else:
        items = image_files([inputs] if single else list(inputs))
        prepare = lambda part: preprocess_images(part, config)  # noqa: E731
        labels = [_label(item, i) for i, item in enumerate(items)]
    probs = torch.cat([torch.softmax(model(prepare(items[i:i + BATCH])).float(), dim=1)
                       for i in range(0, len(items), BATCH)])
    classes = config["data"]["classes"]
    out = []
    for label, p in zip(labels, probs):
        k = int(p.argmax())
        out.append({"input": label, "class": classes[k], "index": k,
                    "probability": float(p[k])})
    return out
