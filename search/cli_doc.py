"""The command-line reference, generated from the argparse parser itself
(:func:`hpsearch.search.cli.build_parser`), so the documentation cannot drift from
the flags: every command and sub-command, its description, usage and options."""

from __future__ import annotations

import argparse


def markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference as Markdown: one section per command, nested commands below it."""
    if parser is None:
        from hpsearch.search.cli import build_parser

        parser = build_parser()
    lines = [_text(parser.description or ""), "", f"```\n{_usage(parser)}\n```", "",
             _text(parser.epilog or ""), ""]
    for name, sub, summary in _commands(parser):
        lines += _section(sub, f"hpsearch {name}", summary, level=2)
    return "\n".join(lines).rstrip() + "\n"


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, one-line help) of each sub-command, in the order --help lists them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return out


def _text(text: str) -> str:
    """Help text as Markdown prose: what would read as HTML or emphasis kept literal."""
    return text.replace("<", "&lt;").replace("*", "\\*").replace("\n", " ")


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split())  # one line, whatever the terminal width


def _section(parser: argparse.ArgumentParser, title: str, summary: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{title}`", ""]
    if summary:
        lines += [f"*{_text(summary)}*", ""]
    if parser.description and parser.description != summary:
        lines += [_text(parser.description), ""]
    lines += [f"```\n{_usage(parser)}\n```", ""]
    rows = [_row(a) for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    if rows:
        lines += ["| argument | what | default |", "| --- | --- | --- |", *rows, ""]
    for name, sub, help_ in _commands(parser):
        lines += _section(sub, f"{title} {name}", help_, level=min(level + 1, 4))
    return lines


def _row(action: argparse.Action) -> str:
    if action.option_strings:
        metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
        name = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
    else:
        name = f"`{action.metavar or action.dest}`"
        if action.choices and not action.metavar:
            *first, last = [f"`{c}`" for c in action.choices]
            name = f"{', '.join(first)} or {last}" if first else last
        if action.nargs in ("+", "*"):
            name += " (one or more)" if action.nargs == "+" else " (any number)"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
    what = _text(action.help or "").replace("|", "\\|")
    if action.required and action.option_strings:
        what = "**required**; " + what
    return f"| {name} | {what} | {shown} |"
