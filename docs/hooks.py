"""MkDocs hooks (``hooks:`` in mkdocs.yml): what the site generates at build time.

- the Guides section of the navigation lists every page of ``docs/guides/``, so a new
  guide needs no edit of mkdocs.yml (known ones first, in reading order);
- ``<!-- generated: parameters -->`` and ``<!-- generated: cli -->`` become the
  parameter tables (from the declarations) and the command-line reference (from the
  argparse parser), so neither can drift from the code;
- ``benchmarks/MODELS.md`` and ``benchmarks/RESULTS.md`` are shown as pages: figures
  that drift (times, scores) live in ``benchmarks/`` only;
- ``build/api-package/hpsearch`` mirrors the installed package's layout (the top-level
  folders as subpackages, as setuptools' package-dir maps them) with symbolic links, so
  mkdocstrings reads every module of the checkout statically, importing nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's hpsearch, also without an install
    sys.path.insert(0, str(ROOT))

GUIDES_FIRST = ("images.md", "series.md", "texts.md", "notebook.md", "export.md", "cluster.md")
BENCHMARK_PAGES = {"benchmarks/models.md": ROOT / "benchmarks" / "MODELS.md",
                   "benchmarks/results.md": ROOT / "benchmarks" / "RESULTS.md"}


PACKAGE_DIRS = ("search", "trainables", "results", "cluster", "spaces")


def api_package(dest: Path = ROOT / "build" / "api-package") -> Path:
    """The checkout as the installed ``hpsearch`` package looks, made of symbolic links
    (mkdocs.yml's mkdocstrings ``paths``); rebuilt on every build."""
    import shutil

    package = dest / "hpsearch"
    shutil.rmtree(dest, ignore_errors=True)
    package.mkdir(parents=True)
    for f in (ROOT / "hpsearch").glob("*.py"):
        (package / f.name).symlink_to(f)
    for name in PACKAGE_DIRS:
        (package / name).symlink_to(ROOT / name, target_is_directory=True)
    return dest


api_package()  # when mkdocs loads this hook, before mkdocstrings reads a module


def guides(docs_dir: Path) -> list[str]:
    """The pages of docs/guides/, the known ones first in reading order."""
    names = sorted(p.name for p in (docs_dir / "guides").glob("*.md"))
    order = [n for n in GUIDES_FIRST if n in names] + [n for n in names if n not in GUIDES_FIRST]
    return [f"guides/{n}" for n in order]


def on_config(config, **_):
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Guides" in entry:
            entry["Guides"] = guides(Path(config["docs_dir"]))
    return config


def on_files(files, config, **_):
    from mkdocs.structure.files import File

    for uri, source in BENCHMARK_PAGES.items():
        files.append(File.generated(config, uri, content=source.read_text(encoding="utf-8")))
    return files


def generated(name: str) -> str:
    """The Markdown a ``<!-- generated: NAME -->`` line stands for."""
    if name == "parameters":
        from hpsearch.trainables.reference import parameter_tables

        return parameter_tables()
    if name == "cli":
        from hpsearch.search.cli_doc import markdown

        return markdown()
    raise ValueError(f"unknown generated block {name!r}; known: parameters, cli")


def expand(markdown: str) -> str:
    """Every ``<!-- generated: NAME -->`` line of a page replaced by its Markdown."""
    out = []
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("<!-- generated:") and stripped.endswith("-->"):
            out.append(generated(stripped[len("<!-- generated:"):-3].strip()))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def on_page_markdown(markdown, **_):
    return expand(markdown)
