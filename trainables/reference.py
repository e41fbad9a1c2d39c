"""The documentation's parameter tables, generated from the declarations so they
cannot drift: the shared loop's parameters and each trainable's own.

The documentation site's build (``docs/hooks.py``) puts :func:`parameter_tables`
where ``docs/reference/parameters.md`` says ``<!-- generated: parameters -->``;
``tests/test_docs.py`` checks the page holds every declared parameter.
"""

from __future__ import annotations

from hpsearch import trainables
from hpsearch.trainables.constraints import markdown_table
from hpsearch.trainables.params import LOOP


def parameter_tables() -> str:
    """Markdown: the shared-loop table, then a section per registered trainable."""
    lines = ["## Shared-loop parameters", "",
             "`for`: the trainables that take them; `text_baseline` is fitted by scikit-learn "
             "and takes none.", "", *markdown_table(LOOP, scope=True), "",
             "## Model parameters, per trainable", ""]
    for name, info in sorted(trainables.REGISTRY.items()):
        spec = f" Spec: `{info.default_spec}`." if info.default_spec else ""
        lines += [f"### `{name}`", "", f"{info.description}.{spec}", "",
                  *markdown_table(info.model_params), ""]
    return "\n".join(lines)
