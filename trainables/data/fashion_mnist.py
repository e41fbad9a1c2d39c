"""Fashion-MNIST from real IDX files, found offline.

Where the files come from, first hit wins:
1. ``$HPSEARCH_DATA/fashion-mnist`` or Debian's ``/usr/share/datasets/fashion-mnist``
   (package ``dataset-fashion-mnist``; gzipped IDX files);
2. the user cache ``~/.cache/hpsearch/FashionMNIST/raw`` (filled by ``fetch()``).

``fetch()`` fills the cache without root: it runs ``apt-get download
dataset-fashion-mnist`` and unpacks the .deb with ``dpkg-deb -x``; where apt is
missing it tries upstream's URLs. The files are read by torchvision's own
FashionMNIST reader, so the bytes are parsed exactly as torchvision does.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from trainables.data import debian
from trainables.data.debian import DataNotFound, cache_root  # noqa: F401  (re-exported)

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
UPSTREAM = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"




def _raw_dir() -> Path:
    # torchvision's FashionMNIST(root) reads root/FashionMNIST/raw/<FILES>
    return cache_root() / "FashionMNIST" / "raw"


def _source_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HPSEARCH_DATA"):
        dirs.append(Path(os.environ["HPSEARCH_DATA"]) / "fashion-mnist")
    dirs.append(DEBIAN_DIR)
    return dirs


def _complete(d: Path, suffix: str) -> bool:
    return all((d / f"{f}{suffix}").is_file() for f in FILES)


def _unpack_into_cache(src: Path) -> None:
    raw = _raw_dir()
    raw.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        # a name of this process's own: Tune workers on a fresh machine unpack at once
        tmp = raw / f"{f}.part-{os.getpid()}"
        with gzip.open(src / f"{f}.gz", "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(raw / f)  # atomic: a reader never sees half a file


def available() -> bool:
    if _complete(_raw_dir(), ""):
        return True
    return any(_complete(d, ".gz") for d in _source_dirs())


def fetch(log=print) -> Path:
    """Make the IDX files available in the cache; return the cache's raw dir."""
    raw = _raw_dir()
    if _complete(raw, ""):
        return raw
    for d in _source_dirs():
        if _complete(d, ".gz"):
            log(f"fashion-mnist: unpacking {d} into {raw}")
            _unpack_into_cache(d)
            return raw
    errors = []
    try:
        debian.extract("dataset-fashion-mnist", str(DEBIAN_DIR), _unpack_into_cache, log)
        return raw
    except DataNotFound as e:
        errors.append(str(e))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for f in FILES:
                log(f"fashion-mnist: downloading {f}.gz from upstream")
                urllib.request.urlretrieve(UPSTREAM + f + ".gz", Path(tmp) / f"{f}.gz")
            _unpack_into_cache(Path(tmp))
            return raw
        except OSError as e:
            errors.append(f"upstream download failed: {e}")
    raise DataNotFound(
        "fashion-mnist: no IDX files found. Install Debian's dataset-fashion-mnist "
        "(apt-get install dataset-fashion-mnist), or put the four .gz files under "
        f"$HPSEARCH_DATA/fashion-mnist, then run `hpsearch data fetch`. ({'; '.join(errors)})"
    )


def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All 70,000 images as uint8 [N, 1, 28, 28] and int64 labels."""
    from torchvision.datasets import FashionMNIST

    raw = fetch(log=lambda *_: None)
    root = raw.parent.parent
    parts = [FashionMNIST(str(root), train=t, download=False) for t in (True, False)]
    x = np.concatenate([p.data.numpy() for p in parts])[:, None]
    y = np.concatenate([p.targets.numpy() for p in parts]).astype(np.int64)
    return x, y, list(CLASSES)
