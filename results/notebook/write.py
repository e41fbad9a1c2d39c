"""The hand-in notebook: sections chosen from the searches, written with nbformat,
executed with nbclient in a real kernel and saved with its outputs.

The sections are written once, as data: each is a function of the :class:`Part`
(the searches of one part of the assignment) that returns its cells, or none where
it does not apply (no comparison for one search, no gradient norms where none were
logged, no model for a search whose trials all failed). Every code cell is a short
call of hpsearch's own functions, so a student can re-run and change it; the notebook
reads what the searches stored and trains nothing.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from hpsearch.errors import HpsearchError
from hpsearch.results.notebook.data import FIGURES, data_kind
from hpsearch.results.notebook.references import references_markdown
from hpsearch.results.notebook.search import bundle_path, has_grad_norms, investigated


class NotebookFailed(HpsearchError, RuntimeError):
    """A cell of the hand-in notebook raised; the notebook was saved with its error."""


@dataclass
class Part:
    """The searches one notebook is written from, and what the writer knows of them."""
    searches: list
    to: Path
    commands: dict = field(default_factory=dict)  # search name -> the commands that made it

    def var(self, search) -> str:
        """The search's variable in the notebook: its name as a Python identifier."""
        name = re.sub(r"\W+", "_", search.name).strip("_").lower() or "search"
        return name if not name[0].isdigit() else f"s_{name}"

    @property
    def finished(self) -> list:
        """The searches with a best trial (a finite objective)."""
        return [s for s in self.searches if s.best is not None]

    @property
    def exported(self) -> list:
        return [s for s in self.finished if bundle_path(s) is not None]

    def storage_text(self) -> str:
        """The storage root as the notebook names it: relative to the notebook's folder
        when it lies below it (the notebook and its runs move together), else absolute."""
        root = self.searches[0].storage.root
        rel = os.path.relpath(root, self.to.parent.resolve())
        return rel if not rel.startswith("..") else str(root)


def _md(text: str):
    import nbformat

    return nbformat.v4.new_markdown_cell(text.strip())


def _code(text: str):
    import nbformat

    return nbformat.v4.new_code_cell(text.strip())


def _args(part: Part, searches=None) -> str:
    return ", ".join(part.var(s) for s in (searches or part.searches))


# ---------------------------------------------------------------- the sections


def title(part: Part) -> list:
    import hpsearch

    names = ", ".join(f"`{s.name}`" for s in part.searches)
    rows = "\n".join(
        f"| `{s.name}` | `{s.meta['spec']['trainable']}` | `{s.meta['spec']['data']['source']}` "
        f"| {'<br>'.join(f'`{c}`' for c in part.commands.get(s.name, []))} |"
        for s in part.searches)
    again = " ".join(["hpsearch notebook", *[s.name for s in part.searches],
                      "--to", part.to.name])
    return [_md(f"""
# {', '.join(s.name for s in part.searches)}: searches, models and discussion

Written by hpsearch {hpsearch.__version__} on {time.strftime('%Y-%m-%d')} from the search(es)
{names}. Each code cell calls hpsearch's own functions on what the searches stored: run the
notebook again top to bottom (*Restart & Run All*) and it shows the same, training nothing.

| search | trainable | data | made by |
| --- | --- | --- | --- |
{rows}

This notebook itself: `{again}`.
""")]


def setup(part: Part) -> list:
    loads = "\n".join(f"{part.var(s)} = hpsearch.load({s.name!r}, storage=STORAGE)"
                      for s in part.searches)
    return [_code(f"""
import hpsearch
from hpsearch.results import notebook as hn

STORAGE = {part.storage_text()!r}  # the searches' storage root
{loads}
print("hpsearch", hpsearch.__version__)
""")]


def data_section(part: Part) -> list:
    cells = [_md("## 1. The data")]
    seen: list[str] = []
    for s in part.searches:
        key = repr(sorted(s.spec.data.items()))
        if key in seen:
            continue
        seen.append(key)
        users = [o.name for o in part.searches if repr(sorted(o.spec.data.items())) == key]
        v = part.var(s)
        if len(part.searches) > 1:
            cells.append(_md(f"### `{s.spec.data['source']}`, as {', '.join(users)} used it"))
        cells += [_code(f"hn.describe_data({v})"), _code(f"hn.data_summary({v})")]
        cells += [_code(f"hn.data_figure({v}, {name!r})") for name in FIGURES[data_kind(s)]]
    return cells


def search_section(part: Part) -> list:
    cells = [_md("## 2. The search" + ("es" if len(part.searches) > 1 else ""))]
    for s in part.searches:
        v = part.var(s)
        cells += [_md(f"### `{s.name}`"), _code(f"hn.spec_yaml({v})"),
                  _code(f"hn.space_table({v})"), _code(v), _code(f"hn.stop_reasons({v})")]
        if s not in part.finished:
            cells.append(_md("No trial reported its objective, so there is no optimization "
                             "history, importance or model to show; the stop reasons above "
                             "say why each trial ended."))
            continue
        cells += [_code(f"figures_{v} = {v}.figures()  # curves, trials, rungs, optuna_*"),
                  _md("Optimization history and parameter importances (Optuna, over the "
                      "search's trials):"),
                  _code(f"hn.show(figures_{v}, 'optuna_history')"),
                  _code(f"hn.show(figures_{v}, 'optuna_param_importances')"),
                  _md("Every trial's objective per epoch, and the epochs ASHA let each trial "
                      "train (dotted lines: its rungs):"),
                  _code(f"hn.show(figures_{v}, 'trials')"),
                  _code(f"hn.show(figures_{v}, 'rungs')")]
        for p in investigated(s):
            cells += [_md(f"Each option of `{p}`, by its best trial (validation split):"),
                      _code(f"hn.choice_table({v}, {p!r})")]
    return cells


def model_section(part: Part) -> list:
    cells = [_md("## 3. The best model" + ("s" if len(part.searches) > 1 else ""))]
    for s in part.searches:
        v = part.var(s)
        cells.append(_md(f"### `{s.name}`"))
        if s not in part.exported:
            cells.append(_md(f"`{s.name}` has no exported model: no trial reported its "
                             "objective."))
            continue
        cells += [_code(f"print(hn.model_summary({v}))"),
                  _code(f"hn.show(figures_{v}, 'curves')"),
                  _md("Test metrics, evaluated once at export (`metrics.json`), beside the "
                      "training and validation metrics of the same epoch:"),
                  _code(f"hn.test_metrics({v})")]
        if data_kind(s) == "series":
            cells += [_code(f"hn.export_figure({v}, {stem!r})")
                      for stem in ("predicted_vs_actual", "residuals", "error_by_horizon")]
        else:
            cells += [_code(f"hn.confusion({v})"), _code(f"hn.per_class({v})"),
                      _md("Misclassified test examples (true T, predicted P):"),
                      _code(f"hn.misclassified({v})")]
        if has_grad_norms(s):
            cells += [_md("Gradient norm of every conv layer per epoch, then the 2nd, 5th, 8th "
                          "and deepest:"),
                      _code(f"hn.grad_norms({v})"), _code(f"hn.grad_norms({v}, subset=True)")]
            if len(part.searches) == 1:
                cells.append(_code(f"hn.batch_norm_twins({v})"))
        if data_kind(s) == "image":
            cells.append(_code(f"hn.filters({v})"))
    return cells


def comparison_section(part: Part) -> list:
    done = part.exported
    if len(done) < 2:
        return []
    args = _args(part, done)
    cells = [_md("## 4. Comparison"),
             _md("The best trial of each search, train and validation curves on one plot:"),
             _code(f"hn.compare_curves({args})"),
             _md("Test metrics (each from its export), parameters, multiply-accumulates per "
                 "example and seconds per epoch:"),
             _code(f"hn.compare_table({args})")]
    if any(has_grad_norms(s) for s in done):
        cells += [_md("The best trial without batch norm beside the best with it:"),
                  _code(f"hn.batch_norm_twins({args})")]
    return cells


def discussion_section(part: Part) -> list:
    number = 5 if len(part.exported) > 1 else 4
    return [_md(f"## {number}. Discussion\n\nWritten from the numbers above by "
                "`hn.discussion`; re-running it after another search or export rewrites it."),
            _code(f"hn.discussion({_args(part)})")]


def references_section(part: Part) -> list:
    number = 6 if len(part.exported) > 1 else 5
    return [_md(f"## {number}. References\n\n" + references_markdown(part.searches))]


SECTIONS = (title, setup, data_section, search_section, model_section, comparison_section,
            discussion_section, references_section)


# ---------------------------------------------------------------- writing and running


def build(part: Part):
    """The notebook (nbformat, not executed) of ``part``'s sections."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [cell for section in SECTIONS for cell in section(part)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["hpsearch"] = {"searches": [s.name for s in part.searches]}
    return nb


def execute(nb, *, to: Path, timeout: int = 600) -> None:
    """Run every cell in a fresh kernel whose working folder is the notebook's, then save
    it with its outputs to ``to``; a cell that raises is saved with its error and raises
    :class:`NotebookFailed` naming it."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(to.parent)}})
    try:
        client.execute()
    except CellExecutionError as e:
        nbformat.write(nb, str(to))
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise NotebookFailed(f"a cell of {to} raised ({first}); the notebook was saved with "
                             "its error") from None
    nbformat.write(nb, str(to))
