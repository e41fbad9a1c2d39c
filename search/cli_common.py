"""What the ``hpsearch`` command modules share: exit codes, the one-line user
error, and the argument types. A module of its own, so that ``search/cli.py``
and ``search/cli_cluster.py`` raise the same ``BadInput`` also when the command
line runs as ``python -m search.cli`` (as a Ray Job's entrypoint does), where
``search.cli`` imported again would be a second module with a second class."""

from __future__ import annotations

import argparse
import sys

from hpsearch.errors import SpecError

EXIT_OK, EXIT_RUNTIME, EXIT_BAD_INPUT = 0, 1, 2


# A user error: printed as one line, exit code 2 (the API raises the same type)
BadInput = SpecError


def runtime_error(message: str) -> int:
    print(f"hpsearch: error: {message}", file=sys.stderr)
    return EXIT_RUNTIME


def positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def flag(name: str) -> str:
    """Where an override came from, on the command line: ``--max-epochs``."""
    return "--" + name.replace("_", "-")


def specs_from_args(args) -> list:
    """Every spec of `run` (and `submit`, `plan`) parsed and validated before any is used."""
    from hpsearch._api import specs_with

    overrides = {"name": args.name, "samples": args.samples, "seed": args.seed,
                 "concurrency": args.concurrency, "max_epochs": args.max_epochs,
                 "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
                 "data": args.data, "recheck": args.recheck, "time_budget": args.time_budget,
                 "refit": getattr(args, "refit", None),
                 "refit_epochs": getattr(args, "refit_epochs", None)}
    paths = args.specs if hasattr(args, "specs") else [args.spec]
    return specs_with(paths, overrides, smoke=args.smoke, origin=flag)
