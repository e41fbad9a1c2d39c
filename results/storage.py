"""The storage root: everything a search writes lives under one folder.

    <root>/<search>/               Ray Tune experiment dir (resumable)
    <root>/<search>/hpsearch.json  the validated spec, tracking URI, parent run id
    <root>/<search>/recheck/       the seed re-check's Tune experiment
    <root>/mlflow.db               default MLflow tracking store (SQLite)
    <root>/mlartifacts/            MLflow artifacts
    <root>/exports/<search>/       exported bundles

Root: ``--storage``, else ``$HPSEARCH_STORAGE``, else ``./runs``: a folder. On a
multi-node cluster, one that every node mounts (NFS, EFS, Filestore): an object-store
URI (``s3://``) is refused, because the driver's files (hpsearch.json, the outbox, the
exports, a local MLflow store) are plain files read and renamed in place.
"""

from __future__ import annotations

import contextvars
import errno
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hpsearch.errors import SpecError

META_FILE = "hpsearch.json"

# The command line (or Python call) that started the searches of this context: set by
# the command line and the API, written to each search's hpsearch.json as `command`,
# so a hand-in notebook can name the command that produced a search.
INVOCATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation",
                                                                      default=None)


class SearchNotFound(SpecError, LookupError):
    """No search of that name under the storage root."""


class NotWritable(SpecError):
    """A folder a command must write to cannot be written (bad input, exit 2)."""


def check_writable(folder: Path, origin: str) -> None:
    """Raise NotWritable (one line naming the folder, ``origin`` and the problem)
    unless ``folder`` is, or can be created as, a folder this process can write.

    Run before anything starts. It writes nothing that stays: a probe folder is
    made and removed where ``folder`` is (or where it would be created)."""
    where = f"{folder} ({origin})"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise NotWritable(f"{where}: {existing} is a broken symbolic link; give a folder")
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"lies inside {existing}, which is a file"
        raise NotWritable(f"{where}: {what}, not a folder; give a folder path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hpsearch-probe-", dir=existing))
    except OSError as e:
        what = ("cannot write in it" if existing == folder
                else f"cannot create folders in {existing}")
        raise NotWritable(f"{where}: {what} ({e.strerror}); give a writable folder") from None


@dataclass(frozen=True)
class Storage:
    root: Path
    origin: str = field(default="storage root", compare=False)  # where the path came from

    @classmethod
    def resolve(cls, storage: str | None = None) -> Storage:
        if storage:
            root, origin = storage, "--storage"
        elif os.environ.get("HPSEARCH_STORAGE"):
            root, origin = os.environ["HPSEARCH_STORAGE"], "$HPSEARCH_STORAGE"
        else:
            root, origin = "runs", "the default storage root ./runs"
        if root.startswith("file://"):
            root = root.removeprefix("file://")
        elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", root):
            # it used to become a local folder named "s3:" (Path("s3://b/p") is s3:/b/p)
            raise NotWritable(
                f"{root} ({origin}): the storage root must be a folder (Tune's state, "
                "hpsearch.json, the exports and the result queue live in it), not an object-"
                "store URI; on a cluster give a folder every node mounts (NFS, EFS, Filestore, "
                "a ReadWriteMany volume), e.g. --storage /mnt/shared/hpsearch")
        return cls(Path(root).expanduser().resolve(), origin)

    def check_writable(self) -> None:
        """Bad input unless the root is (or can become) a writable folder; run it
        before a command starts anything or writes anything there."""
        check_writable(self.root, self.origin)

    def tracking_uri(self, override: str | None = None) -> str:
        return override or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.root / "mlartifacts"

    def search_dir(self, name: str) -> Path:
        return self.root / name

    def recheck_dir(self, name: str) -> Path:
        """The seed re-check's Tune experiment, inside the search's folder."""
        return self.search_dir(name) / "recheck"

    def export_dir(self, name: str) -> Path:
        return self.root / "exports" / name

    def write_meta(self, name: str, meta: dict) -> None:
        path = self.search_dir(name) / META_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        tmp.replace(path)

    def read_meta(self, name: str) -> dict:
        path = self.search_dir(name) / META_FILE
        if not path.is_file():
            known = sorted(p.parent.name for p in self.root.glob(f"*/{META_FILE}"))
            raise SearchNotFound(
                f"no search named {name!r} under {self.root}; known searches: "
                f"{', '.join(known) or 'none'} (use --storage to look elsewhere)")
        return json.loads(path.read_text())

    def free_space(self) -> tuple[int, int]:
        """(free, total) bytes of the file system holding the root (or its nearest
        existing parent, before the root is made)."""
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        usage = shutil.disk_usage(folder)
        return usage.free, usage.total

    def full_message(self, name: str, reserved: int = 0) -> str:
        """The one line a search that ran out of space ends with (``reserved``: bytes of
        its :class:`Reserve` it gave back to end its runs, free now)."""
        free, total = self.free_space()
        given = f", {size(reserved)} of it given back by the search" if reserved else ""
        return (f"the storage root {self.root} is full ({size(free)} free of {size(total)}"
                f"{given}); search {name!r} stopped, its runs ended. Free space there (or "
                f"move it and give --storage the new folder), then `hpsearch resume {name}` "
                "continues it")


# ---------------------------------------------------------------- a full disk

DISK_FULL_TEXT = ("No space left on device", "database or disk is full", "Disk quota exceeded")
RESERVE_FILE = ".hpsearch-reserve"
RESERVE_BYTES = 4 * 2**20  # room for ending a search's MLflow runs once the disk is full


def is_disk_full(error: BaseException | None) -> bool:
    """An error, or one it was raised from, that a full disk caused: ENOSPC or EDQUOT
    from the OS, SQLite's "database or disk is full", or the same text passed on by
    a library that wrapped it (pyarrow, SQLAlchemy, Ray's task errors)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(error) for text in DISK_FULL_TEXT):
            return True
        error = (getattr(error, "orig", None) or getattr(error, "cause", None)
                 or error.__cause__ or error.__context__)
    return False


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def is_sync_race(error: BaseException | None) -> bool:
    """Tune's upload of the driver's staging folder to the storage root (a background
    sync, ``ray/tune/execution/experiment_state.py``) listed a temporary file that Tune's
    own atomic save (write ``.<uuid>-tmp-searcher-state-*.pkl``, then rename it) renamed
    before the copy reached it: pyarrow's "Failed to open local file". Tune starts the
    next upload after that save, and the last one after the last save, so the renamed
    file always arrives: nothing is lost, and the traceback is noise. Only a file missing
    from the staging folder (``driver_artifacts``) counts: one missing at the storage
    root is a real fault, and stays loud."""
    text = str(error)
    return (isinstance(error, FileNotFoundError) and "-tmp-" in text
            and "/driver_artifacts/" in text)


class QuietStorageNoise(logging.Filter):
    """Drops two kinds of a library's log record while a search runs. (1) A write that
    failed on a full disk (Tune's experiment state, MLflow's SQLAlchemy store, each with
    its traceback, once per retry): the search ends with one line naming the storage
    root instead. (2) Tune's upload racing its own save of a temporary file
    (:func:`is_sync_race`), an ERROR with a traceback for a file that arrives anyway."""

    LOGGERS = ("ray.tune.execution.experiment_state", "mlflow.store.db.utils")

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (is_disk_full(error) or is_sync_race(error)
                    or any(t in str(record.msg) for t in DISK_FULL_TEXT))

    def __enter__(self) -> QuietStorageNoise:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


class Reserve:
    """A few MiB held in a file in the search's folder while it runs and given back
    when a write fails on a full disk, so that the search can still end its MLflow
    runs in a SQLite store on the same disk (every write transaction needs room for
    its journal) and leave none RUNNING."""

    def __init__(self, folder: Path, nbytes: int = RESERVE_BYTES) -> None:
        self.path = Path(folder) / RESERVE_FILE
        self.nbytes = nbytes
        self.held = False

    def hold(self) -> bool:
        """Take the room now; False where it cannot be had (then nothing is held)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.nbytes)
            finally:
                os.close(fd)
            self.held = True
            return True
        except OSError:
            self.release()
            return False

    def release(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass
