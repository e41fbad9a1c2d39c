"""Image sources read into normalized tensors, split seeded and stratified."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hpsearch.trainables.data import IMAGE_SUFFIXES, SOURCES, _imagefolder_classes, check


@dataclass
class ImageData:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    info: dict = field(default_factory=dict)  # everything needed to rebuild inputs


def _read_imagefolder(root: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    classes = _imagefolder_classes(root)
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                    xs.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
            except (OSError, ValueError) as e:
                raise ValueError(unreadable(f, e)) from None
            ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes


def unreadable(path: Path, error: Exception) -> str:
    return f"image {str(path)!r} cannot be read ({error}); remove or replace it"


def check_imagefolder(root: Path) -> int:
    """Every image of an imagefolder: source opened and verified (its header and, for
    PNG, its checksums; no decoding, so thousands take seconds): one unreadable file
    would otherwise fail every trial. Returns how many were checked."""
    from PIL import Image

    n = 0
    for name in _imagefolder_classes(root):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    with Image.open(f) as im:
                        im.verify()
                except (OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError too
                    raise ValueError(unreadable(f, e)) from None
                n += 1
    return n


def _read_source(source: str, image_size: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 images [N, C, H, W] (or float in [0, 1]), int labels, class names."""
    if source == "fashion-mnist":
        from hpsearch.trainables.data import fashion_mnist

        return fashion_mnist.load()
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()  # 1,797 real 8x8 scans, values 0..16
        return (d.images[:, None] / 16.0).astype(np.float32), d.target.astype(np.int64), \
            [str(c) for c in d.target_names]
    if source.startswith("imagefolder:"):
        return _read_imagefolder(Path(source.split(":", 1)[1]), image_size or 64)
    raise ValueError(f"unknown data source {source!r}; choose one of {list(SOURCES)}")


def _select(x, y, classes, *, keep_classes, per_class, rng):
    if keep_classes:
        idx = [c if isinstance(c, int) else classes.index(c) for c in keep_classes]
        mask = np.isin(y, idx)
        x, y = x[mask], y[mask]
        remap = {old: new for new, old in enumerate(idx)}
        y = np.vectorize(remap.get)(y).astype(np.int64)
        classes = [classes[i] for i in idx]
    if per_class:
        picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(len(classes))]
        keep = np.sort(np.concatenate(picks))
        x, y = x[keep], y[keep]
    return x, y, classes


def _stratified_split(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  stratify=y[rest], random_state=seed)
    return train, val, test


def load(data_cfg: dict) -> ImageData:
    """Load, subset, split and normalize a source; cached per process."""
    return _load_cached(json.dumps(data_cfg, sort_keys=True))


@functools.lru_cache(maxsize=2)
def _load_cached(key: str) -> ImageData:
    cfg = json.loads(key)
    check(cfg)
    seed = int(cfg.get("seed", 0))
    x, y, classes = _read_source(cfg["source"], cfg.get("image_size"))
    x, y, classes = _select(x, y, classes, keep_classes=cfg.get("classes"),
                            per_class=cfg.get("per_class"), rng=np.random.default_rng(seed))
    train, val, test = _stratified_split(y, cfg.get("val_fraction", 0.15),
                                         cfg.get("test_fraction", 0.15), seed)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    xt = torch.from_numpy(np.ascontiguousarray(x)).float().div_(scale)
    size = cfg.get("image_size")
    if size and xt.shape[-1] != size:
        xt = torch.nn.functional.interpolate(xt, size=(size, size), mode="bilinear",
                                             align_corners=False)
    # statistics of the training split only: val and test must not leak into them
    mean = xt[train].mean(dim=(0, 2, 3))
    std = xt[train].std(dim=(0, 2, 3)).clamp_min(1e-6)
    xt = (xt - mean[:, None, None]) / std[:, None, None]
    yt = torch.from_numpy(y)
    info = {
        "source": cfg["source"],
        "task": "classification",
        "classes": classes,
        "num_classes": len(classes),
        "in_channels": int(xt.shape[1]),
        "image_size": int(xt.shape[-1]),
        "pixel_scale": scale,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "split_seed": seed,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
    }
    pick = lambda ix: (xt[torch.from_numpy(ix)].contiguous(), yt[torch.from_numpy(ix)])  # noqa: E731
    return ImageData(train=pick(train), val=pick(val), test=pick(test), info=info)
