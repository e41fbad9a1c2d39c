"""`hpsearch predict BUNDLE INPUT...`: classify with an exported bundle alone.

The portable ``model.pt2`` (a ``torch.export`` program) runs without this
project's model code; preprocessing is rebuilt from ``config.json`` (image size
and channels, pixel scale, training-split mean/std, class names). With
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


@torch.inference_mode()
def predict(bundle: Path, inputs: list[Path], *, use_weights: bool = False) -> list[dict]:
    config = load_bundle_config(bundle)
    if config["data"].get("task", "classification") != "classification" or "classes" not in config["data"]:
        raise PredictError(f"{bundle}: predict supports image classifier bundles")
    if config["trainable"] == "metric_resnet18":
        raise PredictError(f"{bundle}: a metric-learning bundle outputs embeddings, not classes")
    x = preprocess_images(inputs, config)
    probs = torch.softmax(load_model(bundle, config, use_weights=use_weights)(x).float(), dim=1)
    classes = config["data"]["classes"]
    out = []
    for path, p in zip(inputs, probs):
        k = int(p.argmax())
        out.append({"input": str(path), "class": classes[k], "index": k,
                    "probability": float(p[k])})
    return out
