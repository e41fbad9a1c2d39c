"""hpsearch's exceptions: what went wrong, as a type a caller can catch.

Two kinds, as the command line's exit codes say: :class:`SpecError` is bad input
(a spec, a flag, a path, a name: one line saying what, where and how to fix it;
nothing was started or written; exit code 2), :class:`SearchFailed` a search that
ran and produced nothing usable (exit code 1). Every bad-input type of the product
derives from SpecError, so ``except hpsearch.SpecError`` catches all of them.
This module imports nothing, so every layer may raise these.
"""

from __future__ import annotations


class HpsearchError(Exception):
    """The base of hpsearch's own errors."""


class SpecError(HpsearchError, ValueError):
    """Bad input, one line: what is wrong, where, and how to fix it (exit code 2)."""


class SearchFailed(HpsearchError, RuntimeError):
    """The search ran but produced nothing usable: one line (exit code 1)."""
