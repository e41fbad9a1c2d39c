"""Several searches in one go: ``hpsearch run A.yaml B.yaml ...``.

The specs arrive validated (the CLI parses and checks every one of them, and
its data, weights and GPU fit, before this module is called). Here, before the
first search starts, the names are checked against each other and against the
storage root, and each spec's resources against the cluster; then the searches
run one after another in this process's one Ray session (``ray.init`` once: the
local cluster, or the one ``--address`` names), each exported as soon as it
ends when asked, and a summary table closes the run. A search that fails does
not stop the ones after it; the exit code says that one did.

A single spec takes the same path, without the ``[i/n]`` prefix and the table.

Ctrl-C (or SIGTERM, SIGHUP) stops the whole run: the engine stops the search in
progress the way it stops a single one (no new trials, in-flight trials' runs
KILLED with `interrupted`, the parent run KILLED) and raises SearchInterrupted;
the table so far is printed, and the run exits 130 (143 for SIGTERM). So do
Ray's daemons dying and a full storage disk (exit 1): the searches after them
could not run either.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hpsearch.errors import SpecError
from hpsearch.results.storage import Storage
from hpsearch.search.spec import SearchSpec


class BatchRefused(SpecError):
    """A batch that must not start (bad input: the CLI prints it as one line, exit 2)."""


@dataclass
class SpecResult:
    """What one spec of a run came to: a row of the summary table."""
    source: str                 # the spec file
    name: str                   # the search (MLflow experiment) name
    metric: str                 # the objective, e.g. val_accuracy
    status: str = "not started"  # ok | failed: <why> | interrupted | not started
    trials: int = 0
    errors: int = 0             # trials that ended in an error
    best: float | None = None   # the best trial's objective
    seconds: float = 0.0        # search (and export) wall time
    test: dict = field(default_factory=dict)  # the exported bundle's test metrics
    test_key: str | None = None  # the headline test metric: accuracy, or r2
    bundle: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_batch(specs: list[SearchSpec], storage: Storage, *, overwrite: bool) -> None:
    """Refuse, before anything starts, a batch whose searches would collide: two specs
    with one name, or a name already taken in the storage root (without --overwrite)."""
    from hpsearch.search.engine import SearchExists, check_name_free

    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise BatchRefused(
                f"{spec.source}: `name`: {spec.name!r} is also the name of {seen[spec.name]}; "
                "the searches of one run need distinct names (change `name:` in one spec)")
        seen[spec.name] = spec.source
        try:
            check_name_free(spec, storage, overwrite)
        except SearchExists:
            raise BatchRefused(
                f"{spec.source}: `name`: a search named {spec.name!r} already exists in "
                f"{storage.search_dir(spec.name)}; pass --overwrite to replace it, or change "
                f"`name:` in the spec (`hpsearch status {spec.name}` shows it)") from None


def run_specs(specs: list[SearchSpec], *, storage: Storage, tracking_uri: str | None = None,
              address: str | None = None, overwrite: bool = False, export: bool = False,
              resource_wait: float | None = None, echo=print, verbose: bool = True,
              progress: bool = False, checks=None, tables: bool = True) -> list[SpecResult]:
    """Run the specs one after another on one Ray session; export each when asked.
    Every result comes back, failed ones included; Ctrl-C prints the table so far
    and re-raises (the engine has ended the open MLflow runs). ``progress``: each
    search shows the live progress line. ``checks``: called once Ray is up and before
    the first search writes anything (the CLI's GPU memory checks, which ran beside
    Ray's start); may raise; returns `plan`'s epoch time per search name, the progress
    line's estimate before the first epoch ends. ``tables``: each finished search's
    trial table, and for several the summary table (the command line's output)."""
    from hpsearch.search.engine import ResourceMismatch, connect

    check_batch(specs, storage, overwrite=overwrite)
    try:  # Ray starts once, here; every spec's resources must fit it before the first runs
        for spec in specs:
            connect(spec, storage, address, echo=lambda *_: None)
    except ResourceMismatch as e:
        raise BatchRefused(str(e)) from None
    epoch_seconds = checks() if checks is not None else {}
    results = [SpecResult(spec.source, spec.name, spec.metric) for spec in specs]
    many = len(specs) > 1
    try:
        for i, (spec, result) in enumerate(zip(specs, results), 1):
            tag = f"[{i}/{len(specs)}] " if many else ""
            if many:
                echo(f"\n{tag}{spec.source}: search {spec.name!r} "
                     f"({i - 1} of {len(specs)} done)")
            view = None
            if progress:
                view = {"prefix": tag,
                        "epoch_seconds_hint": epoch_seconds.get(spec.name)}
            _run_one(spec, result, storage=storage, tracking_uri=tracking_uri, address=address,
                     overwrite=overwrite, export=export, resource_wait=resource_wait,
                     echo=(lambda line, tag=tag: echo(f"{tag}{line}")) if many else echo,
                     verbose=verbose, progress=view, table=tables)
    finally:  # also after Ctrl-C: what finished, what did not start
        if many and tables:
            echo("\n" + "\n".join(summary_table(results)))
    return results


def _run_one(spec: SearchSpec, result: SpecResult, *, storage: Storage, tracking_uri, address,
             overwrite: bool, export: bool, echo, resource_wait: float | None = None,
             verbose: bool = True, progress: dict | None = None, table: bool = True) -> None:
    """One search (and its export) into ``result``; a failure is recorded, not raised."""
    from hpsearch.results.export import headline
    from hpsearch.results.status import best_row, trial_rows
    from hpsearch.search.engine import ClusterLost, DiskFull, run_search

    t0 = time.time()
    result.status = "interrupted"  # until it ends one way or the other
    try:
        outcome = run_search(spec, storage=storage, tracking_uri=tracking_uri, address=address,
                             overwrite=overwrite, echo=echo, resource_wait=resource_wait,
                             verbose=verbose, progress=progress)
        result.trials, result.errors = outcome.num_trials, outcome.num_errors
        print_outcome(outcome, storage, echo=echo, table=table)
        failure = outcome_failure(outcome, storage)
        meta, rows = trial_rows(spec.name, storage) if failure is None else ({}, [])
        best = best_row(meta, rows) if rows else None
        if failure is not None:
            print(f"hpsearch: error: {failure}", file=sys.stderr)
            result.status = ("failed: MLflow writes undelivered" if outcome.undelivered
                             else f"failed: no trial reported {spec.metric}")
        elif best is None:
            result.status = f"failed: no trial reported {spec.metric}"
        else:
            result.best = best.best
            if export:
                bundle = export_and_print(spec.name, storage, refit=spec.refit,
                                          epochs=spec.refit_epochs, address=address, echo=echo)
                result.bundle = bundle.path
                result.test = bundle.metrics["test"]
                result.test_key = headline(bundle.metrics)[0]
            result.status = "ok"
    except KeyboardInterrupt:
        result.seconds = time.time() - t0
        raise
    except (ClusterLost, DiskFull) as e:  # no later search could run either
        result.status = "failed: " + ("ray cluster lost" if isinstance(e, ClusterLost)
                                      else "disk full")
        result.seconds = time.time() - t0
        raise
    except Exception as e:  # recorded; the next spec still runs
        result.status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(f"hpsearch: failed: {spec.source}: {type(e).__name__}: {e}"
              + ("" if os.environ.get("HPSEARCH_DEBUG") else
                 " (set HPSEARCH_DEBUG=1 for the traceback)"), file=sys.stderr)
        if os.environ.get("HPSEARCH_DEBUG"):
            traceback.print_exc()
    result.seconds = time.time() - t0
    if result.status.startswith("failed"):
        echo(f"search {spec.name!r} {result.status}")


def print_outcome(outcome, storage: Storage, *, echo=print, table: bool = True) -> None:
    """The lines a finished search prints: counts, time, and (``table``) its trial table
    (which comes from MLflow: not printed when MLflow did not take every write)."""
    from hpsearch.results.status import status_text

    echo(f"\nsearch {outcome.name!r} finished: {outcome.num_trials} trials "
         f"({outcome.num_errors} errored) in {outcome.seconds:.0f} s")
    if table and not outcome.undelivered:
        echo(status_text(outcome.name, storage))


def outcome_failure(outcome, storage: Storage) -> str | None:
    """Why a search that ran counts as failed (exit 1), or None: MLflow did not take
    every result, or no trial reported the objective (every trial failed)."""
    if outcome.undelivered:
        return (f"MLflow at {outcome.tracking_uri} did not take {outcome.undelivered} "
                f"write(s); they are kept in {outcome.outbox}: run `hpsearch status "
                f"{outcome.name} --sync --storage {storage.root}` once it answers")
    if outcome.num_scored == 0:
        return (f"no trial of {outcome.name!r} reported its objective ({outcome.num_errors} "
                f"of {outcome.num_trials} errored; see stop_reason above): nothing to export")
    return None


def export_and_print(name: str, storage: Storage, trial: str | None = None,
                     to: Path | None = None, *, echo=print, pick: str | None = None,
                     where: str | None = None, refit: bool = False, epochs: int | None = None,
                     address: str | None = None):
    """Export a search's best trial (or ``trial``, or the front's pick by ``pick`` and
    ``where``) and print the bundle's headline; with ``refit``, its configuration trained
    again on train+val first (``search/refit.py``; ``epochs``: the refit's, None for the
    trial's peak epoch; ``address``: the Ray cluster the search ran on, when this process
    is not connected to it yet)."""
    import time

    from hpsearch.results.export import export_best, headline

    done = None
    if refit:
        from hpsearch.search.refit import run_refit

        done = run_refit(name, storage, trial_id=trial, epochs=epochs, address=address,
                         echo=echo, pick=pick, where=where)
    t0 = time.perf_counter()
    bundle = export_best(name, storage=storage, trial_id=trial, to=to, echo=echo, pick=pick,
                         where=where, refit=done)
    m = bundle.metrics
    key, value = headline(m)
    extra = (f"  naive forecast test_r2={m['test']['naive_r2']:.4f}"
             if m.get("task") == "regression" else "")
    what = (f"the refit of trial {bundle.trial_id} ({done.epochs} epoch(s) on train+val)"
            if done else f"trial {bundle.trial_id}")
    echo(f"\nexported {what} of {name!r}: "
         f"val_{key}={m['val'].get(key, float('nan')):.4f}  test_{key}={value:.4f}{extra} "
         f"(n_test={m['test']['n']}; export {time.perf_counter() - t0:.0f} s"
         + (f", refit {done.seconds:.0f} s)" if done else ")"))
    echo(f"bundle: {bundle.path}")
    return bundle


def summary_table(results: list[SpecResult]) -> list[str]:
    """One row per spec: file, search, status, trials, errors, best objective, seconds,
    the exported test metric."""
    from hpsearch.results.status import aligned

    body = []
    for i, r in enumerate(results, 1):
        test = (f"{r.test_key} {r.test[r.test_key]:.4f}"
                if r.test_key and r.test.get(r.test_key) is not None else "-")
        body.append([str(i), r.source, r.name, r.status, str(r.trials), str(r.errors),
                     f"{r.metric} {r.best:.4f}" if r.best is not None else "-",
                     f"{r.seconds:.0f}", test])
    done = sum(r.ok for r in results)
    return [f"{done} of {len(results)} searches ok:",
            *aligned(["#", "spec", "search", "status", "trials", "errors", "best objective",
                      "seconds", "exported test"], body)]
