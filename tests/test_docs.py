"""The documentation: every public name documented and in the API reference, the
parameter tables and the command-line reference generated from the declarations and
the parser, every guide in the navigation, every module on the design page, and a
README a newcomer reads first. The site itself is built by `make docs` (part of
`make test`) with every warning an error: broken links and anchors, a page out of the
navigation, an API name that does not resolve."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import re
from pathlib import Path

import hpsearch
from hpsearch import trainables

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_is_documented_and_in_the_api_reference():
    import hpsearch.results.notebook as hn

    api = (DOCS / "reference" / "api.md").read_text()
    undocumented, missing = [], []
    for name in hpsearch.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(hpsearch, name)
        if not inspect.getdoc(obj):
            undocumented.append(name)
        if name == "trainables":
            name = "trainables.describe"  # the callable subpackage: what calling it does
        if f"::: hpsearch.{name}\n" not in api:
            missing.append(name)
    members = [m for m, _ in inspect.getmembers(hpsearch.Search) if not m.startswith("_")]
    undocumented += [f"Search.{m}" for m in members if not inspect.getdoc(getattr(hpsearch.Search, m))]
    for name in hn.__all__:
        if not inspect.getdoc(getattr(hn, name)):
            undocumented.append(f"hn.{name}")
        if not re.search(rf"members: \[[^\]]*\b{name}\b", api):
            missing.append(f"hn.{name}")
    assert not undocumented, f"public names without a docstring: {undocumented}"
    assert not missing, f"public names missing from docs/reference/api.md: {missing}"


def test_parameter_tables_are_generated_from_the_declarations():
    from hpsearch.trainables.params import LOOP

    page = (DOCS / "reference" / "parameters.md").read_text()
    assert "<!-- generated: parameters -->" in page
    built = _hooks().expand(page)
    assert "<!-- generated" not in built
    for p in LOOP:
        assert f"| `{p.name}` |" in built
    for name, info in trainables.REGISTRY.items():
        section = built.split(f"### `{name}`", 1)[1].split("### ", 1)[0]
        for p in info.model_params:
            assert f"| `{p.name}` |" in section, (name, p.name)


def test_cli_reference_is_generated_from_the_parser():
    from hpsearch.search.cli import build_parser
    from hpsearch.search.cli_doc import _commands

    page = _hooks().expand((DOCS / "reference" / "cli.md").read_text())

    def walk(parser: argparse.ArgumentParser, prefix: str):
        for name, sub, _ in _commands(parser):
            title = f"{prefix} {name}"
            assert f"`{title}`" in page, title
            for action in sub._actions:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help"):
                        assert f"`{flag}" in page, (title, flag)
            walk(sub, title)

    walk(build_parser(), "hpsearch")
    assert "`hpsearch notebook`" in page and "`up`, `status` or `down`" in page  # cluster ACTION


def test_every_guide_is_in_the_navigation():
    nav = _hooks().guides(DOCS)
    assert nav[:3] == ["guides/images.md", "guides/series.md", "guides/texts.md"]
    assert sorted(nav) == sorted(f"guides/{p.name}" for p in (DOCS / "guides").glob("*.md"))


def test_every_module_is_on_the_design_page():
    page = (DOCS / "design" / "index.md").read_text()
    for folder in ("hpsearch", "search", "trainables", "trainables/data", "results",
                   "results/report", "results/notebook", "cluster"):
        for module in (ROOT / folder).glob("*.py"):
            if module.name == "__init__.py" and folder not in ("hpsearch", "trainables",
                                                               "trainables/data"):
                continue
            assert module.name in page, f"{folder}/{module.name} is not on docs/design/index.md"


def test_readme_is_what_a_newcomer_reads_first():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Two commands", "## A five-minute tour", "## What the shipped specs achieve",
                    "## Documentation"):
        assert heading in text
    for target in re.findall(r"\]\(([^)#]+)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to a missing {target}"
    # figures that drift (test counts, suite times) live in benchmarks/ only
    assert not re.search(r"\b\d+ tests\b|\d+ min \d+ s", text)
