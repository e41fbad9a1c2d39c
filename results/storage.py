"""The storage root: everything a search writes lives under one folder.

    <root>/<search>/               Ray Tune experiment dir (resumable)
    <root>/<search>/hpsearch.json  the validated spec, tracking URI, parent run id
    <root>/mlflow.db               default MLflow tracking store (SQLite)
    <root>/mlartifacts/            MLflow artifacts
    <root>/exports/<search>/       exported bundles

Root: ``--storage``, else ``$HPSEARCH_STORAGE``, else ``./runs``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

META_FILE = "hpsearch.json"


class SearchNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Storage:
    root: Path

    @classmethod
    def resolve(cls, storage: str | None = None) -> Storage:
        root = storage or os.environ.get("HPSEARCH_STORAGE") or "runs"
        return cls(Path(root).expanduser().resolve())

    def tracking_uri(self, override: str | None = None) -> str:
        return override or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.root / "mlartifacts"

    def search_dir(self, name: str) -> Path:
        return self.root / name

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
