"""Tables of R's ``modeldata`` package, read without R.

Debian's ``r-cran-modeldata`` ships ``data/Rdata.rdb``, an R lazy-load
database, and ``Rdata.rdx``, its index (a gzipped serialized R list mapping each
object's name to an [offset, length] in the .rdb). Each blob is a 4-byte length,
a 1-byte compression type (``Z`` = xz) and then raw LZMA2; the decompressed
bytes are an R serialization that the ``rdata`` package converts to pandas.

Objects used: ``Chicago`` (daily L-train ridership 2001-2016 with weather and
game-day columns), ``training_data`` / ``testing_data`` (``small_fine_foods``:
4,000 + 1,000 Amazon Fine Foods reviews labelled great/other).

Where the files come from, first hit wins: ``$HPSEARCH_DATA/modeldata``, an
installed package (``/usr/lib/R/site-library/modeldata/data``), the user cache
(filled by :func:`fetch` with ``apt-get download r-cran-modeldata``).
"""

from __future__ import annotations

import functools
import gzip
import lzma
import os
import shutil
import warnings
from pathlib import Path

from hpsearch.trainables.data import debian

PACKAGE_DIR = "/usr/lib/R/site-library/modeldata/data"
FILES = ("Rdata.rdb", "Rdata.rdx")


def _cache_dir() -> Path:
    return debian.cache_root() / "modeldata"


def _dirs() -> list[Path]:
    return debian.data_dirs("modeldata", Path(PACKAGE_DIR))


def _found() -> Path | None:
    return next((d for d in _dirs() if all((d / f).is_file() for f in FILES)), None)


def available() -> bool:
    return _found() is not None


def fetch(log=print) -> Path:
    """Make Rdata.rdb/.rdx available; return their folder."""
    found = _found()
    if found is not None:
        return found

    def unpack(src: Path) -> None:
        dest = _cache_dir()
        dest.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            part = dest / f"{f}.part-{os.getpid()}"  # concurrent workers: one name each
            shutil.copyfile(src / f, part)
            part.replace(dest / f)  # atomic

    try:
        debian.extract("r-cran-modeldata", PACKAGE_DIR, unpack, log)
    except debian.DataNotFound as e:
        raise debian.DataNotFound(
            f"modeldata: Rdata.rdb not found ({e}). Install Debian's r-cran-modeldata, or put "
            "Rdata.rdb and Rdata.rdx under $HPSEARCH_DATA/modeldata, then run "
            "`hpsearch data fetch`.") from None
    return _cache_dir()


def _convert(raw: bytes):
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS"
        return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds"))


@functools.lru_cache(maxsize=8)
def read(name: str):
    """One object of the database as pandas (a DataFrame for the tables used here)."""
    folder = fetch(log=lambda *_: None)
    index = _convert(gzip.decompress((folder / "Rdata.rdx").read_bytes()))
    variables = {str(k): v for k, v in index["variables"].items()}
    if name not in variables:
        raise KeyError(f"modeldata has no object {name!r}")
    offset, length = (int(v) for v in variables[name])
    with open(folder / "Rdata.rdb", "rb") as fh:
        fh.seek(offset)
        blob = fh.read(length)
    kind = blob[4:5]
    if kind == b"Z":
        raw = lzma.decompress(blob[5:], format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    elif kind == b"\x00" or kind not in (b"2", b"3"):
        import zlib

        raw = zlib.decompress(blob[4:])  # R's default lazy-load compression (zlib)
    else:
        raise ValueError(f"modeldata object {name!r}: unsupported compression type {kind!r}")
    return _convert(raw)
