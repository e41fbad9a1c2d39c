"""hpsearch: hyperparameter search for the course's models (Ray Tune + Optuna + ASHA + MLflow).

Installed, the project is this one package; the design card's folders are its
subpackages (``hpsearch.search``, ``hpsearch.trainables``, ``hpsearch.results``,
``hpsearch.cluster``), so a user's own ``search.py`` beside a notebook shadows nothing.
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.2.0"

# A source checkout (the editable install, a Ray Job's uploaded working_dir, a worker
# whose sys.path starts with the project folder): the subpackages are the folders beside
# this one, as setuptools' package-dir maps them in a built wheel. Looking there too makes
# a checkout import its own code, never a second copy installed elsewhere.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "search" / "engine.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - a package's __path__

from typing import TYPE_CHECKING  # noqa: E402

from hpsearch.errors import HpsearchError, SearchFailed, SpecError  # noqa: E402  (no imports)

# Public names, imported on first use (as Ray Tune's plugins): `import hpsearch` stays
# cheap and imports no Ray, torch or MLflow until a function needs them.
_LAZY = {
    "run": "hpsearch._api", "run_many": "hpsearch._api", "resume": "hpsearch._api",
    "load": "hpsearch._api", "searches": "hpsearch._api", "plan": "hpsearch._api",
    "load_spec": "hpsearch._api", "predict": "hpsearch._api",
    "Search": "hpsearch._search", "Bundle": "hpsearch.results.export",
    "SearchSpec": "hpsearch.search.spec", "Param": "hpsearch.trainables.constraints",
}

__all__ = ["Bundle", "HpsearchError", "Param", "Search", "SearchFailed", "SearchSpec", "SpecError",
           "__version__", "load", "load_spec", "plan", "predict", "resume", "run", "run_many",
           "searches", "trainables"]

if TYPE_CHECKING:
    from hpsearch import trainables
    from hpsearch._api import load, load_spec, plan, predict, resume, run, run_many, searches
    from hpsearch._search import Search
    from hpsearch.results.export import Bundle
    from hpsearch.search.spec import SearchSpec
    from hpsearch.trainables.constraints import Param


def __getattr__(name: str):
    import importlib

    if name == "trainables":  # the subpackage, callable: hpsearch.trainables() lists them
        return importlib.import_module("hpsearch.trainables")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
