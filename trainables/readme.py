"""The README's parameter lists, generated from the declarations so they cannot drift.

``python -m trainables.readme`` (``make readme``) rewrites the block between
the two markers in README.md; ``tests/test_cli.py`` checks the README holds
exactly what :func:`block` generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hpsearch import trainables
from hpsearch.trainables.constraints import markdown_table
from hpsearch.trainables.params import LOOP

BEGIN = ("<!-- BEGIN parameters: generated from trainables/params.py by `make readme`; "
         "edit the tables there -->")
END = "<!-- END parameters -->"


def block() -> str:
    """The Markdown between (and including) the markers."""
    lines = [BEGIN, "", "**Shared-loop parameters** (`for`: the trainables that take them; "
             "`text_baseline` is fitted by scikit-learn and takes none):", "",
             *markdown_table(LOOP, scope=True), "", "**Model parameters**, per trainable:", ""]
    for name, info in sorted(trainables.REGISTRY.items()):
        lines += [f"<details><summary><code>{name}</code>: {info.description}</summary>", "",
                  *markdown_table(info.model_params), "", "</details>", ""]
    return "\n".join([*lines, END])


def rewrite(path: Path) -> bool:
    """Replace the marked block of ``path``; True when its text changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + block() + text[end:]
    path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print(f"{target}: {'updated' if rewrite(target) else 'already up to date'}")
