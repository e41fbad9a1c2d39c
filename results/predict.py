"""`hpsearch predict BUNDLE INPUT...`: predict with an exported bundle alone.

The portable ``model.pt2`` (a ``torch.export`` program) runs without this
project's model code; preprocessing is rebuilt from ``config.json``:

- image classifiers: INPUTs are image files, or folders of them (size, channels,
  pixel scale, training-split mean/std, class names);
- text classifiers: each INPUT is a text, or a ``.txt`` file with one text per
  line (tokenizer + vocabulary + length, or the n-gram vocabulary + idf);
- forecasters: one INPUT, a CSV with the source's columns; its last
  ``seq_length`` rows -> the next ``horizon`` values of the target.

With
``use_weights=True`` the same inputs go through ``weights.pt`` and the project's
model builder instead: the two must agree (tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


class PredictError(ValueError):
    pass


def load_bundle_config(bundle: Path) -> dict:
    path = bundle / "config.json"
    if not path.is_file():
        raise PredictError(f"{bundle} is not an export bundle (no config.json); "
                           "give the folder `hpsearch export` printed")
    return json.loads(path.read_text())


BATCH = 256  # inputs per forward pass


def image_files(inputs: list) -> list[Path]:
    """The INPUTs as image files: a folder stands for the images under it (any depth,
    in name order), as a class-per-folder data set is laid out."""
    from trainables.data import IMAGE_SUFFIXES

    out: list[Path] = []
    for i in inputs:
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


def preprocess_images(paths: list[Path], config: dict) -> torch.Tensor:
    """Image files -> the normalized batch the model was trained on."""
    import numpy as np
    from PIL import Image

    info = config["data"]
    size, channels = info["image_size"], info["in_channels"]
    mean = torch.tensor(info["mean"])[:, None, None]
    std = torch.tensor(info["std"])[:, None, None]
    batch = []
    for p in paths:
        if not p.is_file():
            raise PredictError(f"input {p} does not exist")
        try:
            with Image.open(p) as im:
                im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32)
        except OSError as e:
            raise PredictError(f"input {p} is not a readable image ({e})") from None
        x = torch.from_numpy(arr)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        batch.append((x / info.get("pixel_scale", 255.0) - mean) / std)
    return torch.stack(batch)


def load_model(bundle: Path, config: dict, *, use_weights: bool):
    if use_weights:
        from trainables.loop import build_model

        model = build_model(config["hyperparameters"], config["data"])
        model.load_state_dict(torch.load(bundle / "weights.pt", map_location="cpu",
                                         weights_only=True))
        return model.eval()
    return torch.export.load(str(bundle / "model.pt2")).module()


def read_texts(inputs: list) -> list[str]:
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
        from trainables.text_baselines import featurize

        return torch.from_numpy(featurize(texts, info["vectorizer"]).toarray().astype("float32"))
    from trainables.data import text as text_data

    tok = text_data.tokenizer(info["tokenizer"], info["lowercase"])
    stoi = {w: i for i, w in enumerate(info["vocab"])}
    return text_data.pad([text_data.ids(tok(t), stoi, info["max_len"]) for t in texts],
                         info["max_len"])


def preprocess_window(path: Path, info: dict) -> torch.Tensor:
    """A CSV of the source's columns -> one scaled window [1, seq_length, F]."""
    import numpy as np
    import pandas as pd

    from trainables.data import series as series_data

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
def predict(bundle: Path, inputs: list, *, use_weights: bool = False) -> list[dict]:
    config = load_bundle_config(bundle)
    info = config["data"]
    if config["trainable"] == "metric_resnet18":
        raise PredictError(f"{bundle}: a metric-learning bundle outputs embeddings, not classes")
    model = load_model(bundle, config, use_weights=use_weights)
    if info.get("task") == "regression":
        if len(inputs) != 1:
            raise PredictError("a forecaster takes one CSV input (its last seq_length rows)")
        y = model(preprocess_window(Path(str(inputs[0])), info)).float()[0]
        values = (y * info["target_scale"] + info["target_offset"]).tolist()
        return [{"input": str(inputs[0]), "target": info["target"], "steps_ahead": h + 1,
                 "forecast": v} for h, v in enumerate(values)]
    # in batches: a folder of thousands of images, or a .txt of thousands of reviews,
    # need not fit in one
    if info.get("kind") == "text":
        inputs = read_texts(inputs)
        prepare = lambda part: preprocess_texts(part, info)  # noqa: E731
    else:
        inputs = image_files(inputs)
        prepare = lambda part: preprocess_images(part, config)  # noqa: E731
    probs = torch.cat([torch.softmax(model(prepare(inputs[i:i + BATCH])).float(), dim=1)
                       for i in range(0, len(inputs), BATCH)])
    classes = config["data"]["classes"]
    out = []
    for path, p in zip(inputs, probs):
        k = int(p.argmax())
        out.append({"input": str(path)[:80], "class": classes[k], "index": k,
                    "probability": float(p[k])})
    return out
