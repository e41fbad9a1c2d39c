"""``hpsearch.notebook``: the hand-in notebook of one search or several, executed.

What a student hands in per part of the assignment; the sections, cells and helpers
are in :mod:`hpsearch.results.notebook`. This function checks its input as the
command line does, exports what is not exported yet, and writes and runs the notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from hpsearch.errors import SpecError


def notebook(names: str | Sequence[str], *, to: str | Path, storage: str | Path | None = None,
             execute: bool = True, timeout: int = 600, echo: Callable[[str], None] = print
             ) -> Path:
    """Write the hand-in notebook of one search or of several that answer one part of the
    assignment, run it in a fresh Jupyter kernel and save it with its outputs.

    Its sections follow the searches' data and trainables: the data (what it is, its
    split, its statistics, figures), each search (spec, space, trials, optimization
    history, importances, ASHA's rungs, stop reasons), each best model (torchinfo
    summary, curves, the export's test metrics, confusion matrix or predicted vs
    actual, misclassified examples, gradient norms, filters), a comparison of several
    searches, a discussion written from the numbers and the references. Every code
    cell is a short call of :mod:`hpsearch.results.notebook`; re-run top to bottom, the
    notebook shows the same and trains nothing.

    Args:
        names: the search name(s), under one storage root.
        to: the ``.ipynb`` file to write (its folder is the kernel's working folder).
        storage: the storage root (default ``$HPSEARCH_STORAGE`` or ``./runs``).
        execute: run the notebook (False: write it unexecuted, for a quick look).
        timeout: seconds one cell may run.
        echo: where progress lines go.

    A search with a best trial but no export is exported first (its test split
    evaluated once, as ``hpsearch export`` does); a search whose trials all failed gets
    a notebook that says so. Raises :class:`~hpsearch.SpecError` for bad input (an
    unknown search, a ``to`` that is not a writable ``.ipynb`` path) and
    ``NotebookFailed`` when a cell raised (the notebook is saved with the error).
    Returns the notebook's path.
    """
    from hpsearch._api import environment_defaults
    from hpsearch._search import Search
    from hpsearch.results.notebook.write import Part, build
    from hpsearch.results.notebook.write import execute as run_cells
    from hpsearch.results.storage import Storage, check_writable

    environment_defaults()  # before MLflow loads; the kernel inherits them too
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise SpecError("notebook: name at least one search (hpsearch status lists them)")
    if len(set(names)) < len(names):
        raise SpecError(f"notebook: a search is named twice in {names}")
    path = Path(to).expanduser()
    if path.suffix != ".ipynb":
        raise SpecError(f"{to} (to): a notebook file ends in .ipynb, e.g. a1_part_1.ipynb")
    if path.is_dir():
        raise SpecError(f"{to} (to): is a folder; give the notebook's file name")
    check_writable(path.resolve().parent, "to")
    root = storage if isinstance(storage, Storage) else Storage.resolve(
        str(storage) if storage is not None else None)
    searches = [Search(n, storage=root) for n in names]  # an unknown name: SearchNotFound
    commands = {}
    for s in searches:
        commands[s.name] = [s.meta.get("command") or f"hpsearch run {s.meta.get('spec_file')}"]
        if s.best is not None and not (root.export_dir(s.name) / "metrics.json").is_file():
            echo(f"exporting {s.name!r} first: its test split is evaluated once")
            s.export(echo=echo)
        if (root.export_dir(s.name) / "metrics.json").is_file() and \
                "export" not in commands[s.name][0]:
            commands[s.name].append(f"hpsearch export {s.name}")
    part = Part(searches=searches, to=path.resolve(), commands=commands)
    part.to.parent.mkdir(parents=True, exist_ok=True)
    nb = build(part)
    if execute:
        echo(f"running {len(nb.cells)} cells in a fresh kernel ...")
        run_cells(nb, to=part.to, timeout=timeout)
    else:
        import nbformat

        nbformat.write(nb, str(part.to))
    echo(f"notebook: {path}")
    return path
