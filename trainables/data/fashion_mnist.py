"""Fashion-MNIST from real IDX files, found offline.

Where the files come from, first hit wins:
1. ``$HPSEARCH_DATA/fashion-mnist`` or Debian's ``/usr/share/datasets/fashion-mnist``
   (package ``dataset-fashion-mnist``; gzipped IDX files);
2. the user cache ``~/.cache/hpsearch/FashionMNIST/raw`` (filled by ``fetch()``).

``fetch()`` fills the cache without root: it runs ``apt-get download
dataset-fashion-mnist`` and unpacks the .deb with ``dpkg-deb -x``; where apt is
missing it tries upstream's URLs. The files are read by ``read_idx`` (numpy,
the IDX header checked), not torchvision's FashionMNIST: ``import torchvision``
costs every trial worker about 1.7 s of CPU before its first step, for a reader
of a 16-byte header (a test checks both give the same arrays).
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from hpsearch.trainables.data import debian
from hpsearch.trainables.data.debian import DataNotFound, cache_root  # noqa: F401  (re-exported)

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
UPSTREAM = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"




def _raw_dir() -> Path:
    # the layout torchvision's FashionMNIST(root) reads too: root/FashionMNIST/raw/<FILES>
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


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format: zero bytes, a type byte, the number of
    dimensions, big-endian uint32 sizes, then the data) as a numpy array."""
    blob = Path(path).read_bytes()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_TYPES:
        raise DataNotFound(f"{path} is not an IDX file (header {blob[:4].hex()}); "
                           "delete it and run `hpsearch data fetch` again")
    ndim = blob[3]
    shape = tuple(int(d) for d in np.frombuffer(blob, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[blob[2]])
    offset = 4 + 4 * ndim
    if len(blob) - offset != dtype.itemsize * int(np.prod(shape)):
        raise DataNotFound(f"{path} is truncated: its header says {shape}, the file holds "
                           f"{len(blob) - offset} bytes of data; delete it and run "
                           "`hpsearch data fetch` again")
    return np.frombuffer(blob, dtype, offset=offset).reshape(shape)


def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All 70,000 images as uint8 [N, 1, 28, 28] and int64 labels."""
    raw = fetch(log=lambda *_: None)
    x = np.concatenate([read_idx(raw / FILES[0]), read_idx(raw / FILES[2])])[:, None]
    y = np.concatenate([read_idx(raw / FILES[1]), read_idx(raw / FILES[3])]).astype(np.int64)
    return x, y, list(CLASSES)
