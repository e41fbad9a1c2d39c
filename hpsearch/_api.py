"""The functions ``hpsearch/__init__.py`` re-exports: what the command line, a notebook
and a script call. Each takes keyword-only options named like the command line's
flags (``samples=`` for ``--samples``), makes every check the command makes before
anything starts, and raises instead of exiting: bad input is a
:class:`~hpsearch.SpecError` carrying the command line's one-line message, a search
that produced nothing a :class:`~hpsearch.SearchFailed`, an interrupted search a
``KeyboardInterrupt`` (after its runs were ended KILLED).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import SearchFailed, SpecError

if TYPE_CHECKING:
    import pandas as pd

    from hpsearch._search import Search
    from hpsearch.search.plan import Plan
    from hpsearch.search.spec import SearchSpec

# spec override -> (the spec's dotted key); the CLI's flags have the same names
OVERRIDES = {
    "name": "name",
    "samples": "search.samples",
    "seed": "search.seed",
    "concurrency": "search.concurrency",
    "max_epochs": "scheduler.max_epochs",
    "cpus_per_trial": "resources.cpus_per_trial",
    "gpus_per_trial": "resources.gpus_per_trial",
    "data": "data.source",
    "recheck": "search.recheck",
    "time_budget": "search.time_budget",
    "refit": "export.refit",
    "refit_epochs": "export.epochs",
}


def environment_defaults() -> None:
    """Quiet, private defaults set before Ray is imported (a user's own setting wins)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # No usage reports from a tool that also runs offline and on private clusters:
    # MLflow 3's telemetry thread and Ray's usage stats are off unless set otherwise.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's per-download progress bars (an export registering its model, a report's
    # artifacts) are not the product's output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's boxed tables and snapshot warnings drown the progress view; the legacy
    # reporter at verbose=0 is silent (in a notebook too: no HTML status tables).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not os.environ.get("HPSEARCH_DEBUG"):
        import logging
        import warnings

        # In a notebook, importing Ray Tune logs that ipywidgets is missing (INFO) and
        # tqdm warns it cannot draw notebook progress bars: neither is the product's output
        logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message="IProgress not found")


# ---------------------------------------------------------------- specs


def load_spec(spec: str | Path | dict | SearchSpec, *, name: str | None = None,
              samples: int | None = None, max_epochs: int | None = None,
              concurrency: int | None = None, seed: int | None = None,
              cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
              data: str | None = None, recheck: str | dict | None = None,
              time_budget: str | float | None = None, refit: bool | None = None,
              refit_epochs: int | None = None, smoke: bool = False) -> SearchSpec:
    """A validated, frozen search spec.

    ``spec`` is a YAML file's path, a dict of the same shape, or a spec already loaded
    (its document is validated again with the overrides). Every override replaces the
    matching spec field before validation, as the command line's flags do; ``smoke``
    makes the spec's 2-trial, 1-epoch, tiny-data version (named ``NAME-smoke``).

    Raises :class:`~hpsearch.SpecError` (one line naming the file, the key and the rule).
    """
    overrides = {"name": name, "samples": samples, "max_epochs": max_epochs,
                 "concurrency": concurrency, "seed": seed, "cpus_per_trial": cpus_per_trial,
                 "gpus_per_trial": gpus_per_trial, "data": data, "recheck": recheck,
                 "time_budget": time_budget, "refit": refit, "refit_epochs": refit_epochs}
    return spec_with(spec, {k: (v, f"{k}=") for k, v in overrides.items()}, smoke=smoke)


def spec_with(spec, overrides: dict[str, tuple[Any, str]], *, smoke: bool = False):
    """``spec`` loaded with ``overrides`` {override name: (value, where it came from)}:
    the one path of the API's keywords and the command line's flags (``--samples``)."""
    from hpsearch.search.spec import SearchSpec, parse_spec
    from hpsearch.search.spec import load_spec as load_file

    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise TypeError(f"unknown spec override(s) {sorted(unknown)}; known: {sorted(OVERRIDES)}")
    if isinstance(overrides.get("recheck", (None,))[0], str):
        value, origin = overrides["recheck"]
        overrides["recheck"] = (parse_recheck(value, origin), origin)
    dotted = {OVERRIDES[k]: pair for k, pair in overrides.items()}
    if isinstance(spec, SearchSpec):
        return parse_spec(spec.raw, source=spec.source, overrides=dotted, smoke=smoke)
    if isinstance(spec, dict):
        return parse_spec(spec, source=str(spec.get("name", "<dict>")), overrides=dotted,
                          smoke=smoke)
    if isinstance(spec, (str, Path)):
        return load_file(spec, dotted, smoke=smoke)
    raise SpecError(f"a spec is a YAML file's path, a dict or a loaded spec, got "
                    f"{type(spec).__name__}")


def parse_recheck(text: str, origin: str = "recheck=") -> dict:
    """``"3x3"``: re-train the top 3 configurations with 3 new seeds each."""
    top, _, seeds = str(text).lower().partition("x")
    try:
        return {"top": int(top), "seeds": int(seeds)}
    except ValueError:
        raise SpecError(f"{origin}: expected TOPxSEEDS such as 3x3, got {text!r}") from None


def keyword(name: str) -> str:
    """Where an override came from, in the API: ``samples=``."""
    return f"{name}="


def specs_with(specs: Iterable, overrides: dict, *, smoke: bool = False,
               origin: Callable[[str], str] = keyword) -> list:
    """Every spec parsed with the same overrides and validated before any is used;
    ``origin(name)`` says where an override came from (``samples=``, ``--samples``)."""
    specs = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    if not specs:
        raise SpecError("no spec given: name a spec file such as spaces/quickstart.yaml")
    if overrides.get("name") is not None and len(specs) > 1:
        raise SpecError(f"{origin('name')}: names one search, but {len(specs)} spec files "
                        f"were given; drop {origin('name')} (each search takes its spec's "
                        "`name:`) or run one spec")
    pairs = {k: (v, origin(k)) for k, v in overrides.items() if v is not None}
    return [spec_with(s, dict(pairs), smoke=smoke) for s in specs]


# ---------------------------------------------------------------- searching


def run(spec: str | Path | dict | SearchSpec, *, name: str | None = None,
        samples: int | None = None, max_epochs: int | None = None,
        concurrency: int | None = None, seed: int | None = None,
        cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
        data: str | None = None, recheck: str | dict | None = None,
        time_budget: str | float | None = None, smoke: bool = False,
        storage: str | Path | None = None, tracking_uri: str | None = None,
        address: str | None = None, resource_wait: float | None = None,
        overwrite: bool = False, export: bool = False, refit: bool | None = None,
        refit_epochs: int | None = None, verbose: bool = False,
        progress: bool = True) -> Search:
    """Run the search a spec describes and return it as a :class:`~hpsearch.Search`.

    Args:
        spec: a YAML spec file (``"spaces/quickstart.yaml"``), a dict of the same shape,
            or a spec from :func:`load_spec`.
        name: the search's name (its MLflow experiment), instead of the spec's.
        samples: trials to run (``--samples``).
        max_epochs: epochs per trial, ASHA's ``max_t`` (``--max-epochs``).
        concurrency: trials at once.
        seed: the seed of the searcher, the splits and the trials.
        cpus_per_trial: CPUs (and torch threads) per trial.
        gpus_per_trial: the GPU share per trial (0.25 packs four trials on one GPU).
        data: another data source (``--data imagefolder:photos``).
        recheck: ``"KxN"`` or ``{"top": K, "seeds": N}``: retrain the top K with N seeds.
        smoke: 2 trials, 1 epoch, a tiny data subset (named ``NAME-smoke``).
        time_budget: the wall time the search may take (``"30m"``, ``"2h"``, ``"90s"``, or
            seconds), as ``search.time_budget``: when it runs out no trial starts, the
            running ones end KILLED with stop_reason ``time_budget``, and the search ends
            as usual (the best trial is the best so far; :func:`resume` continues it).
        storage: the storage root (default ``$HPSEARCH_STORAGE`` or ``./runs``).
        tracking_uri: MLflow's (default ``sqlite:///<storage>/mlflow.db``).
        address: a Ray cluster's address (default: a local Ray, started once per
            process and reused by later searches).
        overwrite: replace a search of the same name.
        export: evaluate the best trial once on the test split and bundle it.
        refit: with ``export``, train the chosen configuration again on the training
            and validation splits before its test evaluation (``--refit``), on the
            search's Ray, as an MLflow child run tagged ``refit``; overrides the spec's
            ``export.refit`` (``False`` turns a spec's refit off).
        refit_epochs: the refit's epochs (``--refit-epochs``; default: the spec's
            ``export.epochs``, else the epoch at which the chosen trial peaked).
        verbose: a line per epoch of every trial.
        progress: one live progress display (in a notebook, updated in place).

    Every check of ``hpsearch run`` is made before anything starts. Raises
    :class:`~hpsearch.SpecError` for bad input, :class:`~hpsearch.SearchFailed` when no
    trial reported the objective, when Ray's daemons died under the search or its
    storage root's disk filled up (every MLflow run ended; :func:`resume` continues
    it), ``KeyboardInterrupt`` when interrupted by a signal (its MLflow runs ended
    KILLED, ``stop_reason`` interrupted; :func:`resume` finishes it).
    """
    check_refit_wanted(refit, refit_epochs, export)
    call = _call("run", spec, locals())
    specs = specs_with([spec], {"name": name, **_spec_overrides(locals())}, smoke=smoke)
    with _invoked(call):
        [search] = run_specs(specs, storage=storage, tracking_uri=tracking_uri, address=address,
                             resource_wait=resource_wait, overwrite=overwrite, export=export,
                             verbose=verbose, progress=progress)
    if not search.result.ok:
        raise SearchFailed(f"search {search.name!r} {search.result.status}; "
                           f"hpsearch.load({search.name!r}).trials shows its trials")
    return search


def run_many(specs: Sequence[str | Path | dict | SearchSpec], *,
             samples: int | None = None, max_epochs: int | None = None,
             concurrency: int | None = None, seed: int | None = None,
             cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
             data: str | None = None, recheck: str | dict | None = None,
             time_budget: str | float | None = None, smoke: bool = False,
             storage: str | Path | None = None, tracking_uri: str | None = None,
             address: str | None = None, resource_wait: float | None = None,
             overwrite: bool = False, export: bool = False, refit: bool | None = None,
             refit_epochs: int | None = None, verbose: bool = False,
             progress: bool = True) -> list[Search]:
    """Several searches, one after another on one Ray session, each exported when
    ``export``; all are validated (and their data checked) before the first starts.
    A search that fails does not stop the ones after it: each returned
    :class:`~hpsearch.Search` says how it ended in ``.result`` (``.result.ok``).
    The options are :func:`run`'s, each applying to every spec (``time_budget`` to each
    search on its own)."""
    check_refit_wanted(refit, refit_epochs, export)
    call = _call("run_many", specs, locals())
    parsed = specs_with(specs, _spec_overrides(locals()), smoke=smoke)
    with _invoked(call):
        return run_specs(parsed, storage=storage, tracking_uri=tracking_uri, address=address,
                         resource_wait=resource_wait, overwrite=overwrite, export=export,
                         verbose=verbose, progress=progress)


def check_refit_wanted(refit: bool | None, refit_epochs: int | None, export: bool,
                       origin: Callable[[str], str] = keyword) -> None:
    """A refit is part of the export: asking for one (or for its epochs) without the
    export is bad input, not a silent no-op."""
    if export:
        return
    for key, value in (("refit", refit), ("refit_epochs", refit_epochs)):
        if value is not None and value is not False:
            raise SpecError(f"{origin(key)}: the refit trains the model the export bundles; "
                            f"add {origin('export')} (or drop {origin(key)})")


def _spec_overrides(args: dict) -> dict:
    return {k: args[k] for k in OVERRIDES if k != "name" and k in args}


def _call(function: str, first: Any, args: dict) -> str:
    """How a search was asked for in Python (``hpsearch.run('spaces/x.yaml', smoke=True)``),
    for its hpsearch.json: the keywords given other than their defaults."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(globals()[function]).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    given = [f"{k}={args[k]!r}" for k, default in defaults.items()
             if k in args and args[k] != default and k != "progress"]
    specs = first if isinstance(first, (list, tuple)) else [first]
    shown = [str(x) if isinstance(x, (str, Path)) else
             f"<spec {x.get('name', '?')}>" if isinstance(x, dict) else "<spec>" for x in specs]
    what = repr(shown[0]) if not isinstance(first, (list, tuple)) else f"[{', '.join(map(repr, shown))}]"
    return f"hpsearch.{function}({', '.join([what, *given])})"


@contextlib.contextmanager
def _invoked(call: str):
    """Record ``call`` as the command of the searches started inside the block."""
    from hpsearch.results.storage import INVOCATION

    token = INVOCATION.set(call)
    try:
        yield
    finally:
        INVOCATION.reset(token)


def run_specs(specs: list, *, storage=None, tracking_uri: str | None = None,
              address: str | None = None, resource_wait: float | None = None,
              overwrite: bool = False, export: bool = False, verbose: bool = False,
              progress: bool = True, echo: Callable[[str], None] = print,
              tables: bool = False) -> list[Search]:
    """Validated specs -> the checks -> the searches. ``tables``: print each finished
    search's trial table and, for several, the summary table (the command line)."""
    from hpsearch._search import Search
    from hpsearch.results.storage import Storage
    from hpsearch.search import preflight

    environment_defaults()
    storage = storage if isinstance(storage, Storage) else Storage.resolve(
        str(storage) if storage is not None else None)
    if address:  # reaching a cluster: its token must be in the environment before Ray
        from hpsearch.cluster.local import use_cluster_token

        use_cluster_token()
    checks = preflight.check_run(specs, storage, overwrite=overwrite, address=address,
                                 resource_wait=resource_wait, tracking_uri=tracking_uri)
    from hpsearch.search.batch import run_specs as run_batch

    results = run_batch(specs, storage=storage, tracking_uri=tracking_uri, address=address,
                        overwrite=overwrite, export=export, resource_wait=resource_wait,
                        verbose=verbose, progress=progress, checks=checks, echo=echo,
                        tables=tables)
    return [Search(r.name, storage=storage, result=r) for r in results]


def resume(name: str, *, samples: int | None = None, storage: str | Path | None = None,
           address: str | None = None, progress: bool = True) -> Search:
    """Finish a search whose driver died (or that was interrupted): finished trials are
    kept, in-flight ones resume from their last checkpoint, TPE keeps its history and
    the MLflow runs re-attach to their trials. Returns the :class:`~hpsearch.Search`.

    ``samples``: continue the search (finished, stopped or just finished here) to this
    many trials in total, its sampler starting from every earlier trial (pruned ones as
    PRUNED, so TPE models them at once), the new trials numbered after the old ones and
    tracked under the same MLflow parent run."""
    return resume_search(name, storage=storage, address=address, samples=samples,
                         progress=progress, echo=print, tables=False)


def resume_search(name: str, *, storage=None, address: str | None = None,
                  samples: int | None = None, progress: bool = False,
                  echo: Callable[[str], None] = print, tables: bool = False) -> Search:
    from hpsearch._search import Search
    from hpsearch.results.storage import Storage
    from hpsearch.search.batch import outcome_failure, print_outcome

    environment_defaults()
    if address:
        from hpsearch.cluster.local import use_cluster_token

        use_cluster_token()
    from hpsearch.search.engine import extend_search
    from hpsearch.search.engine import resume_search as resume_engine

    storage = storage if isinstance(storage, Storage) else Storage.resolve(
        str(storage) if storage is not None else None)
    meta = storage.read_meta(name)  # an unknown search says so before the storage is checked
    storage.check_writable()
    state = None
    if samples is not None:
        from hpsearch.results.mlflow_runs import _client

        state = _client(meta["tracking_uri"]).get_run(meta["parent_run_id"]).info.status
        if state == "RUNNING":
            raise SpecError(f"search {name!r} is still running (or its driver died: "
                            f"`hpsearch resume {name}` first); more trials can be added to a "
                            "search that ended")
    if samples is None or state == "KILLED":  # an interrupted search finishes first
        outcome = resume_engine(name, storage=storage, address=address, echo=echo)
        print_outcome(outcome, storage, echo=echo, table=tables and samples is None)
    if samples is not None:
        outcome = extend_search(name, storage=storage, samples=samples, address=address,
                                echo=echo, progress={} if progress else None)
        print_outcome(outcome, storage, echo=echo, table=tables)
    failure = outcome_failure(outcome, storage)
    if failure:
        raise SearchFailed(failure)
    return Search(name, storage=storage)


def load(name: str, *, storage: str | Path | None = None) -> Search:
    """A search under the storage root, finished, running or interrupted, as a
    :class:`~hpsearch.Search` (its trials come from MLflow, the system of record)."""
    from hpsearch._search import Search

    return Search(name, storage=storage)


def searches(*, storage: str | Path | None = None) -> pd.DataFrame:
    """Every search under the storage root, oldest first: trainable, when it started,
    trials ended and running, the best objective and the export's test score."""
    import pandas as pd

    from hpsearch.results.status import overview
    from hpsearch.results.storage import Storage

    header, rows = overview(Storage.resolve(str(storage) if storage is not None else None))
    return pd.DataFrame(rows, columns=header)


def plan(spec: str | Path | dict | SearchSpec, *, steps: int = 10, name: str | None = None,
         samples: int | None = None, max_epochs: int | None = None,
         concurrency: int | None = None, cpus_per_trial: float | None = None,
         gpus_per_trial: float | None = None, data: str | None = None,
         time_budget: str | float | None = None, smoke: bool = False,
         check: bool = True) -> Plan:
    """Measure the spec's largest trial on this machine's device: a few real training
    steps per batch size give its peak memory, step time, how many trials fit on a GPU
    and the search's estimated wall time (``print(plan)`` or ``plan.lines()``).
    With ``check``, a largest trial that does not fit its GPU share raises
    :class:`~hpsearch.SpecError` (as ``hpsearch plan`` exits 2) after measuring.
    On a machine without a CUDA GPU the measurement is bounded (under a minute) and
    the plan says it was made on the CPU. ``time_budget``: the plan says how much of
    the estimated search fits in it."""
    from hpsearch.search import preflight
    from hpsearch.search.plan import make_plan

    loaded = specs_with([spec], {"name": name, "samples": samples, "max_epochs": max_epochs,
                                 "concurrency": concurrency, "cpus_per_trial": cpus_per_trial,
                                 "gpus_per_trial": gpus_per_trial, "data": data,
                                 "time_budget": time_budget},
                        smoke=smoke)[0]
    preflight.check_trainable(loaded)
    preflight.check_data(loaded)
    result = make_plan(loaded, steps=steps)
    if check:
        result.check_fits()
    return result


def predict(bundle: str | Path, inputs: Any, *, use_weights: bool = False) -> list[dict]:
    """Predict with an exported bundle alone, from raw inputs: image files, folders of
    them or uint8 pixel arrays (H×W, H×W×C or a batch of them); texts or ``.txt`` files
    (one text per line); a forecaster's table rows (a pandas DataFrame or a CSV file).
    Returns one dict per input (``class``, ``index``, ``probability``), or per forecast
    step (``target``, ``steps_ahead``, ``forecast``). The same preprocessing serves
    ``hpsearch predict`` and the model registered in MLflow."""
    from hpsearch.results.predict import predict as run_predict

    return run_predict(Path(bundle), inputs, use_weights=use_weights)
