"""How a parameter is declared, checked and shown: name, domain, default, one line of help.

In the spirit of scikit-learn's ``_parameter_constraints``: a parameter's
domain is a tuple of constraints and a value is valid when one of them accepts
it (``(ints(1), NULL)``: an int >= 1, or null). The spec parser checks every
key and value of a spec's ``space`` and ``fixed`` against these declarations,
``hpsearch trainables NAME`` prints them, and the README's option lists are
generated from them (``make readme``).

The declarations themselves are in ``trainables/params.py``. Both modules are
pure Python on purpose: validating a spec must not import torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Interval:
    """Numbers of one kind (int or float) between two bounds; None is unbounded."""
    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # both | left | right | neither

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.kind is int and not float(value).is_integer()):
            return False
        above = self.low is None or (value >= self.low if self.closed in ("both", "left")
                                     else value > self.low)
        below = self.high is None or (value <= self.high if self.closed in ("both", "right")
                                      else value < self.high)
        return above and below

    @property
    def type_name(self) -> str:
        return self.kind.__name__

    @property
    def domain(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def describe(self) -> str:
        return f"{'an int' if self.kind is int else 'a float'} in {self.domain}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (strings or ints), compared with their type."""
    values: tuple

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    @property
    def type_name(self) -> str:
        return type(self.values[0]).__name__

    @property
    def domain(self) -> str:
        return " | ".join(str(v) for v in self.values)

    def describe(self) -> str:
        return f"one of {list(self.values)}"


@dataclass(frozen=True)
class Boolean:
    type_name = "bool"
    domain = "true | false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "true or false"


# Set while `hpsearch submit` checks a spec on the submitting machine: an absolute
# path that is not there may be a path on the cluster (its nodes hold the weights),
# so it is left for the job's own check, which runs there before anything starts.
_ELSEWHERE = contextvars.ContextVar("files_checked_elsewhere", default=False)


@contextlib.contextmanager
def absolute_files_checked_elsewhere():
    token = _ELSEWHERE.set(True)
    try:
        yield
    finally:
        _ELSEWHERE.reset(token)


@dataclass(frozen=True)
class File:
    """A path naming an existing file (checked before anything starts)."""
    what: str
    type_name = "file"
    domain = "existing file"

    def accepts(self, value: Any) -> bool:
        if not (isinstance(value, str) and value):
            return False
        path = Path(value)
        return path.is_file() or (_ELSEWHERE.get() and path.is_absolute() and not path.exists())

    def describe(self) -> str:
        return f"an existing file ({self.what})"


@dataclass(frozen=True)
class Percentile:
    """'pNN': a percentile of some measured quantity, e.g. 'p95'."""
    of: str
    type_name = "str"
    domain = "p1 .. p100"

    def accepts(self, value: Any) -> bool:
        m = isinstance(value, str) and re.fullmatch(r"p(\d+(\.\d+)?)", value)
        return bool(m) and 0 < float(m.group(1)) <= 100

    def describe(self) -> str:
        return f"a percentile of the {self.of} such as 'p95'"


@dataclass(frozen=True)
class Null:
    type_name = "null"
    domain = "null"

    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "null"


BOOL, NULL = Boolean(), Null()


def ints(low: int, high: int | None = None) -> Interval:
    return Interval(int, low, high)


def floats(low: float | None, high: float | None = None, closed: str = "both") -> Interval:
    return Interval(float, low, high, closed)


def one_of(*values) -> Options:
    return Options(values)


# ---------------------------------------------------------------- parameters


class _Given:
    """A `when` value: the parent is set to anything but null (e.g. a file)."""

    def __repr__(self) -> str:
        return "GIVEN"


GIVEN = _Given()


@dataclass(frozen=True)
class Derived:
    """A default computed from the data or from another parameter, in words."""
    rule: str

    def __str__(self) -> str:
        return self.rule


# the trainables a shared-loop parameter applies to (Param.scope), in words
SCOPES = {"": "all", "image": "image data", "regression": "regression",
          "classification": "classification", "init": "models trained from scratch"}


@dataclass(frozen=True)
class Param:
    name: str
    domain: tuple  # constraints: a value is valid when one of them accepts it
    default: Any   # the value the code uses when the key is absent (or a Derived rule)
    help: str
    when: tuple[tuple[str, tuple], ...] = ()  # read only when these (parent, values) hold
    scope: str = ""    # shared-loop parameters: "" every trainable | image | regression |
    #                    classification | init
    gpu: bool = False  # only a GPU reads it (ignored on CPU)

    def __post_init__(self):
        if not isinstance(self.domain, tuple):
            object.__setattr__(self, "domain", (self.domain,))
        if self.scope not in SCOPES:
            raise ValueError(f"{self.name}: scope must be one of {list(SCOPES)}, got {self.scope!r}")

    @property
    def type_name(self) -> str:
        names = dict.fromkeys(c.type_name for c in self.domain)
        return " | ".join(names)

    @property
    def domain_text(self) -> str:
        return " or ".join(c.domain for c in self.domain)

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.domain)

    def accepts_kind(self, kind: type) -> bool:
        """Whether a numeric range sampling ``kind`` (int or float) can suit this parameter."""
        return any(isinstance(c, Interval) and (c.kind is float or kind is int)
                   for c in self.domain)

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is in the domain; else the rule and the value, one line."""
        if self.accepts(value):
            return None
        rule = " or ".join(c.describe() for c in self.domain)
        files = [c for c in self.domain if isinstance(c, File)]
        options = [v for c in self.domain if isinstance(c, Options) for v in c.values
                   if isinstance(v, str)]
        if files and isinstance(value, str):  # the old wording users and tests know
            named = f", or one of {', '.join(options)}" if options else ""
            return f"file {value!r} does not exist; give {files[0].what}{named}"
        hint = ""
        if isinstance(value, str) and options:
            close = difflib.get_close_matches(value, options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"must be {rule}, got {value!r}{hint}"

    def conditions(self) -> str:
        """'only with optimizer: sgd | rmsprop', or ''."""
        return "; ".join(f"only with {parent} set" if values == (GIVEN,) else
                         f"only with {parent}: {' | '.join(_show(v) for v in values)}"
                         for parent, values in self.when)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def show_default(p: Param) -> str:
    return _show(p.default) if not isinstance(p.default, Derived) else f"({p.default})"


# ---------------------------------------------------------------- rendering


def text_table(params: list[Param] | tuple[Param, ...], indent: str = "  ") -> list[str]:
    """Aligned plain-text rows: name, type, domain, default, help (for the CLI)."""
    rows = [("name", "type", "domain", "default", "help")]
    rows += [(p.name, p.type_name, p.domain_text, show_default(p), _help(p)) for p in params]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
            for r in rows]


def markdown_table(params: list[Param] | tuple[Param, ...], *, scope: bool = False) -> list[str]:
    head = ["parameter", "type", "domain", "default", *(["for"] if scope else []), "what"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for p in params:
        cells = [f"`{p.name}`", p.type_name, p.domain_text, show_default(p),
                 *([SCOPES[p.scope]] if scope else []), _help(p)]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def _help(p: Param) -> str:
    extra = [p.conditions()] if p.when else []
    if p.gpu:
        extra.append("GPU only")
    return "; ".join([p.help, *extra])
