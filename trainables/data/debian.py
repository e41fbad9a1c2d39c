"""Files of a Debian package, obtained without root: ``apt-get download`` +
``dpkg-deb -x`` (the package's dependencies are not installed).

Used for the built-in data sets Debian ships: ``dataset-fashion-mnist`` and
``r-cran-modeldata`` (Amazon Fine Foods reviews, Chicago ridership).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


class DataNotFound(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("HPSEARCH_CACHE", Path.home() / ".cache" / "hpsearch"))


def data_dirs(sub: str, *installed: Path) -> list[Path]:
    """Where a built-in data set's files are looked for, first hit wins:
    ``$HPSEARCH_DATA/<sub>`` (when set), the folders a system package installs,
    then the user cache's ``<sub>`` (filled by the data set's ``fetch``)."""
    mine = [Path(os.environ["HPSEARCH_DATA"]) / sub] if os.environ.get("HPSEARCH_DATA") else []
    return [*mine, *installed, cache_root() / sub]


def extract(package: str, subdir: str, unpack: Callable[[Path], None],
            log: Callable[[str], None] = print) -> None:
    """Download ``package``, extract it and call ``unpack(<extracted>/<subdir>)``.

    Runs ``apt-get update`` once (as root) where the package lists are missing,
    as on a fresh container. Raises DataNotFound with what went wrong."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise DataNotFound("apt-get/dpkg-deb not found (not a Debian-based system)")
    with tempfile.TemporaryDirectory() as tmp:
        log(f"{package}: apt-get download {package} (no root needed)")
        cmd = ["apt-get", "download", package]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            log(f"{package}: apt-get update (package lists missing)")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if r.returncode != 0 or not debs:
            raise DataNotFound(f"apt-get download {package} failed: "
                               f"{(r.stderr or r.stdout).strip()[:200]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), tmp + "/x"], check=True)
        unpack(Path(tmp) / "x" / subdir.lstrip("/"))
