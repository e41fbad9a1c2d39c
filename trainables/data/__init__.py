"""Data sources: real images, split once, seeded and stratified.

This module stays light (no torch import) so that validating a spec is fast;
the loading itself lives in ``images.py``. ``load(data_cfg)`` returns an
``ImageData`` whose three splits are float
tensors already normalized with *training-split* statistics. A worker process
loads a given source once (``functools.lru_cache``); with Tune's actor reuse
that means once per worker for the whole search.

The test split is carried along but only ``results/export.py`` reads it.
"""

from __future__ import annotations

from pathlib import Path

SOURCES = ("fashion-mnist", "digits", "imagefolder:<dir>")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
DATA_KEYS = {"source", "val_fraction", "test_fraction", "per_class", "classes", "image_size",
             "seed"}


def check(data_cfg: dict) -> None:
    """Cheap validation for the spec parser: raise ValueError naming the fix."""
    unknown = set(data_cfg) - DATA_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(DATA_KEYS)}")
    source = data_cfg.get("source")
    if not isinstance(source, str):
        raise ValueError(f"`source` must be one of {list(SOURCES)}, got {source!r}")
    if source.startswith("imagefolder:"):
        _imagefolder_classes(Path(source.split(":", 1)[1]))
    elif source not in ("fashion-mnist", "digits"):
        raise ValueError(f"unknown data source {source!r}; choose one of {list(SOURCES)}")
    vf, tf = data_cfg.get("val_fraction", 0.15), data_cfg.get("test_fraction", 0.15)
    for key, v in (("val_fraction", vf), ("test_fraction", tf)):
        if not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ValueError(f"`{key}` must be a number in (0, 1), got {v!r}")
    if vf + tf >= 0.9:
        raise ValueError(f"`val_fraction + test_fraction` must be < 0.9, got {vf + tf}")
    pc = data_cfg.get("per_class")
    if pc is not None and (not isinstance(pc, int) or isinstance(pc, bool) or pc < 3):
        raise ValueError(f"`per_class` must be an integer >= 3 (or absent), got {pc!r}")
    size = data_cfg.get("image_size")
    if size is not None and (not isinstance(size, int) or size < 8):
        raise ValueError(f"`image_size` must be an integer >= 8 (or absent), got {size!r}")


def _imagefolder_classes(root: Path) -> list[str]:
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist; give imagefolder:<dir> "
                         "with one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir()
                     if d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()))
    if not classes:
        raise ValueError(f"image folder {str(root)!r} has no class sub-folders with images; "
                         "expected <dir>/<class>/<image>.png")
    if len(classes) < 2:
        raise ValueError(f"image folder {str(root)!r} has only one class ({classes[0]!r}); "
                         "a classifier needs at least two class sub-folders")
    return classes


def load(data_cfg: dict):
    """Load, subset, split and normalize a source; cached per process."""
    from trainables.data.images import load as _load

    return _load(data_cfg)
