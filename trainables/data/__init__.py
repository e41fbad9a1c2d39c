"""Data sources of three kinds: images, time series and labelled texts.

This module stays light (no torch import) so that validating a spec is fast;
the loading lives in ``images.py``, ``series.py`` and ``text.py``.
``load(data_cfg)`` returns an object with ``train``, ``val``, ``test`` and
``info``: image splits are float tensors normalized with *training-split*
statistics; a series is one scaled table split sequentially; texts stay raw
until a trainable's ``prepare`` hook tokenizes them with its hyperparameters.
A worker process loads a given source once (``functools.lru_cache``); with
Tune's actor reuse that means once per worker for the whole search.

The test split is carried along but only ``results/export.py`` reads it.
"""

from __future__ import annotations

from pathlib import Path

SOURCES = ("fashion-mnist", "digits", "imagefolder:<dir>", "seattle-weather",
           "chicago-ridership", "fine-foods", "aclimdb:<dir>", "csv:<file>")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
COMMON_KEYS = {"source", "val_fraction", "test_fraction", "seed"}
KEYS = {
    "image": COMMON_KEYS | {"per_class", "classes", "image_size"},
    # csv time series: target, features, time_column, horizon; fill and scaler choices
    "series": COMMON_KEYS | {"target", "features", "time_column", "horizon", "fill", "scaler",
                             "calendar"},
    "text": COMMON_KEYS | {"per_class", "text", "label"},
}
DATA_KEYS = set().union(*KEYS.values())
FILL = ("interpolate", "ffill", "drop")
SCALERS = ("standard", "minmax")


def kind(data_cfg: dict) -> str:
    """image | series | text, from the source (csv: by its `text` key)."""
    source = str(data_cfg.get("source", ""))
    if source in ("fashion-mnist", "digits") or source.startswith("imagefolder:"):
        return "image"
    if source in ("seattle-weather", "chicago-ridership"):
        return "series"
    if source == "fine-foods" or source.startswith("aclimdb:"):
        return "text"
    if source.startswith("csv:"):
        return "text" if "text" in data_cfg or "label" in data_cfg else "series"
    return "unknown"


def check(data_cfg: dict) -> None:
    """Cheap validation for the spec parser: raise ValueError naming the fix."""
    source = data_cfg.get("source")
    if not isinstance(source, str):
        raise ValueError(f"`source` must be one of {list(SOURCES)}, got {source!r}")
    k = kind(data_cfg)
    if k == "unknown":
        raise ValueError(f"unknown data source {source!r}; choose one of {list(SOURCES)}")
    unknown = set(data_cfg) - KEYS[k]
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} for {k} source {source!r}; "
                         f"allowed: {sorted(KEYS[k])}")
    if source.startswith("imagefolder:"):
        _imagefolder_classes(Path(source.split(":", 1)[1]))
    if source.startswith(("csv:", "aclimdb:")):
        path = Path(source.split(":", 1)[1])
        if not (path.is_file() if source.startswith("csv:") else path.is_dir()):
            what = "file" if source.startswith("csv:") else "folder"
            raise ValueError(f"{what} {str(path)!r} does not exist (source {source!r})")
        if source.startswith("aclimdb:"):
            missing = [f"{part}/{c}/" for part in ("train", "test") for c in ("neg", "pos")
                       if not (path / part / c).is_dir()]
            if missing:
                raise ValueError(f"aclimdb folder {str(path)!r} lacks {', '.join(missing)}; "
                                 "expected the Stanford layout <dir>/{train,test}/{pos,neg}/*.txt")
    if source.startswith("csv:") and k == "series" and "target" not in data_cfg:
        raise ValueError("a csv: source needs `target` (time series) or `text` and `label` "
                         "(text classification)")
    if k == "series":
        _check_series(data_cfg)
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


def _check_series(cfg: dict) -> None:
    if cfg.get("fill", "interpolate") not in FILL:
        raise ValueError(f"`fill` must be one of {list(FILL)}, got {cfg['fill']!r}")
    if cfg.get("scaler", "standard") not in SCALERS:
        raise ValueError(f"`scaler` must be one of {list(SCALERS)}, got {cfg['scaler']!r}")
    h = cfg.get("horizon", 1)
    if not isinstance(h, int) or isinstance(h, bool) or h < 1:
        raise ValueError(f"`horizon` must be an integer >= 1, got {h!r}")
    feats = cfg.get("features")
    if feats is not None and (not isinstance(feats, list) or not all(isinstance(f, str) for f in feats)):
        raise ValueError(f"`features` must be a list of column names, got {feats!r}")
    if cfg["source"].startswith("csv:"):
        import csv

        with open(cfg["source"].split(":", 1)[1], newline="") as fh:
            check_columns(cfg, next(csv.reader(fh), []))


def check_columns(cfg: dict, columns: list[str]) -> None:
    """The series options that name columns must name existing ones."""
    for key in ("target", "time_column"):
        if cfg.get(key) is not None and cfg[key] not in columns:
            raise ValueError(f"`{key}` {cfg[key]!r} is not a column of {cfg['source']}; "
                             f"columns: {list(columns)}")
    missing = [f for f in cfg.get("features") or [] if f not in columns]
    if missing:
        raise ValueError(f"`features` {missing} are not columns of {cfg['source']}; "
                         f"columns: {list(columns)}")


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
    """Load, subset and split a source; cached per process."""
    k = kind(data_cfg)
    if k == "series":
        from hpsearch.trainables.data.series import load as _load
    elif k == "text":
        from hpsearch.trainables.data.text import load as _load
    else:
        from hpsearch.trainables.data.images import load as _load
    return _load(data_cfg)
