"""Tuner assembly: spec -> OptunaSearch (TPE) + ASHA + resources + storage -> fit.

The path of one search: validate (before anything starts), write the search's
metadata, open the MLflow parent run, fit the Tuner with the tracking
callback, and in every case (success, trial errors, Ctrl-C, a crash) end the
parent run and any child run still RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hpsearch.errors import SearchFailed, SpecError
from hpsearch.results.storage import INVOCATION, Storage
from hpsearch.search.spec import SearchSpec


class SearchExists(SpecError):
    """A search of that name exists and may not be replaced."""


class ResourceMismatch(SpecError):
    """The spec asks for resources no node of the cluster has."""


class ResourcesUnavailable(SearchFailed):
    """No node of the cluster could run a trial within the resource wait."""


class SearchInterrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP stopped the search; its in-flight trials' runs ended KILLED."""

    def __init__(self, name: str, signum: int, undelivered: int = 0) -> None:
        super().__init__(name)
        self.name, self.signum, self.undelivered = name, signum, undelivered


class ClusterLost(SearchFailed):
    """Ray's daemons died under the search: every run ended FAILED (error: ray cluster
    lost), the finished trials kept; ``hpsearch resume`` continues it once Ray is back."""


class DiskFull(SearchFailed):
    """A write under the storage root failed on a full disk; every run ended, the
    finished trials kept; ``hpsearch resume`` continues it once there is room."""


LOST_REASON = "error: ray cluster lost"
UNWIND_WAIT = 5.0  # s the main thread gets to leave Tune's loop once Ray is gone


@dataclass
class SearchOutcome:
    name: str
    experiment_dir: Path
    tracking_uri: str
    parent_run_id: str
    seconds: float
    num_trials: int
    num_errors: int
    num_scored: int = -1   # trials that reported a finite objective
    undelivered: int = 0   # MLflow writes left in the outbox file (the store did not answer)
    outbox: Path | None = None


def versions() -> dict:
    import mlflow
    import optuna
    import ray
    import torch

    return {"python": sys.version.split()[0], "ray": ray.__version__, "optuna": optuna.__version__,
            "mlflow": mlflow.__version__, "torch": torch.__version__}


def init_ray(address: str | None, spec: SearchSpec) -> None:
    import ray

    if ray.is_initialized():
        return
    # Ray's own INFO lines ("Started a local Ray instance", Tune's "Wrote the latest
    # version of all result files ...") and its notice that token authentication is on
    # (the default this project relies on) would interleave with the progress lines;
    # warnings and errors still show, and HPSEARCH_DEBUG=1 shows everything
    debug = bool(os.environ.get("HPSEARCH_DEBUG"))
    level = logging.INFO if debug else logging.WARNING
    if not debug:
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR)
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=level)
        return
    # A local cluster sized to this machine. Ray 2.60 generates an auth token
    # for a local cluster on its own; the dashboard stays on 127.0.0.1.
    with daemons_in_own_session():
        ray.init(num_cpus=os.cpu_count(), num_gpus=None, include_dashboard=False,
                 dashboard_host="127.0.0.1", log_to_driver=False, logging_level=level,
                 runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}})


@contextlib.contextmanager
def daemons_in_own_session():
    """Start the local Ray instance's daemons (GCS, raylet, their agents) in a session
    of their own. Ray 2.60 starts them with ``subprocess.Popen`` in the driver's process
    group, blocking only SIGINT in them (``ray/_private/services.py``,
    ``start_ray_process``), so the SIGTERM or SIGHUP that ``timeout``, ``kill -- -PGID``
    or a closing terminal sends to the group killed the GCS under the driver, and the
    driver's graceful stop then waited 60 s for it before Ray's core aborted. Outside
    the group, they outlive the signal and the search stops the way Ctrl-C stops it;
    they still die with the driver (Ray sets PR_SET_PDEATHSIG in them)."""
    from ray._private import services

    popen = getattr(services, "ConsolePopen", None)
    if popen is None:  # another Ray: start it as it is
        yield
        return

    class SessionPopen(popen):
        def __init__(self, *args, **kwargs):
            kwargs["start_new_session"] = True
            super().__init__(*args, **kwargs)

    services.ConsolePopen = SessionPopen
    try:
        yield
    finally:
        services.ConsolePopen = popen


class StorageUnreachable(SpecError):
    """The storage root cannot be written from every node of the cluster."""


def check_storage(root) -> None:
    """Tune's storage must be reachable from every node: write and read a probe
    file there from a task pinned to each alive node (a path on a shared file
    system passes; a path local to the driver's machine fails on other machines)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = str(root)

    @ray.remote(num_cpus=0)
    def probe(path: str, token: str) -> str | None:
        import os as _os
        import socket

        try:
            f = _os.path.join(path, f".probe-{token}")
            with open(f, "w") as fh:
                fh.write(token)
            _os.remove(f)
            return None
        except OSError as e:
            return f"{socket.gethostname()}: {e}"

    import uuid

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(root, uuid.uuid4().hex) for n in nodes]
    errors = [e for e in ray.get(refs, timeout=120) if e]
    if errors:
        raise StorageUnreachable(
            f"storage root {root} is not writable from every node ({'; '.join(errors[:3])}); "
            "give --storage a folder on a file system every node mounts (NFS, EFS, Filestore)")


def connect(spec: SearchSpec, storage: Storage, address: str | None, echo=print) -> SearchSpec:
    """Start or reach Ray; on a cluster check the storage from every node; fit the
    spec's resources to what the cluster has. Shared by run and resume."""
    init_ray(address, spec)
    if address:
        storage.root.mkdir(parents=True, exist_ok=True)
        check_storage(storage.root.resolve())
    return fit_resources(spec, local=address is None, echo=echo)


def trial_dirname(trial) -> str:
    """Short trial folder names: Tune's default packs every config value into them."""
    return f"trial_{trial.trial_id}"


def fit_resources(spec: SearchSpec, *, local: bool, echo=print) -> SearchSpec:
    """Match the spec's per-trial resources to the cluster before anything starts.

    A shipped spec asks for fractional GPUs so it packs trials on a GPU node;
    on a local cluster without any GPU those trials would wait forever, so
    they run on CPU instead (said once). A remote cluster may be autoscaling
    GPU nodes in, so there the request stands.
    """
    import dataclasses

    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest_cpu = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
    total_gpu = sum(n["Resources"].get("GPU", 0) for n in nodes)
    if spec.gpus_per_trial > 0 and total_gpu == 0 and local:
        echo(f"no GPU in this Ray cluster: trials run on CPU "
             f"(gpus_per_trial {spec.gpus_per_trial:g} -> 0)")
        spec = dataclasses.replace(spec, gpus_per_trial=0)
    if local and spec.cpus_per_trial > largest_cpu:
        raise ResourceMismatch(
            f"{spec.source}: `resources.cpus_per_trial`: {spec.cpus_per_trial:g} CPUs per trial "
            f"but the largest node has {largest_cpu:g}; lower it (--cpus-per-trial)")
    return spec


def build_tuner(spec: SearchSpec, storage: Storage, callbacks: list, trainable=None,
                stopper=None, *, history: list | None = None, first: list | None = None,
                experiment: tuple[Path, str] | None = None):
    """The Tuner for a spec. ``trainable`` defaults to the shared loop's adapter;
    the orchestration benchmark passes a no-op one to time the rest. ``history``:
    Optuna trials the sampler knows before its first suggestion (an extended search's
    past, a warm start's). ``first``: full configs the first trials take, before
    ``search.cover``'s points (a warm start's best, trained again). ``experiment``:
    (folder, name) of the Tune experiment, by default the search's own
    (``<storage>/<name>``)."""
    import optuna
    from optuna.samplers import RandomSampler, TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from hpsearch.results.objective import Objective
    from hpsearch.search.adapter import trial
    from hpsearch.search.moasha import MultiObjectiveASHA
    from hpsearch.search.progress import SilentReporter
    from hpsearch.search.searcher import SchedulerAwareOptunaSearch
    from hpsearch.search.space import define_by_run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (TPESampler(seed=spec.seed, n_startup_trials=spec.startup_trials,
                          constant_liar=spec.constant_liar)
               if spec.algorithm == "tpe" else RandomSampler(seed=spec.seed))
    many = spec.multi_objective  # several objectives: Optuna's multi-objective TPE
    # search.cover: OptunaSearch enqueues each point (study.enqueue_trial), so the first
    # trials take them; the define-by-run space samples what a point leaves out
    searcher = SchedulerAwareOptunaSearch(
        space=define_by_run(spec), metric=spec.metrics if many else spec.metric,
        mode=spec.modes if many else spec.mode, sampler=sampler,
        points_to_evaluate=[*(first or []), *spec.cover_points()] or None, history=history,
        constraints=spec.constraints)
    if spec.scheduler == "asha" and many:
        scheduler = MultiObjectiveASHA(
            objectives=[Objective(m, d) for m, d in spec.objectives],
            time_attr="training_iteration", max_t=spec.max_epochs,
            grace_period=spec.grace_period, reduction_factor=spec.reduction_factor,
            brackets=spec.brackets,
            log_path=str((experiment[0] if experiment else storage.root / spec.name)
                         / "moasha.jsonl"))
    elif spec.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=spec.metric,
                                  mode=spec.mode, max_t=spec.max_epochs,
                                  grace_period=spec.grace_period,
                                  reduction_factor=spec.reduction_factor,
                                  brackets=spec.brackets)
    else:
        scheduler = FIFOScheduler()
    folder, name = experiment or (storage.root, spec.name)
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    return tune.Tuner(
        tune.with_resources(trainable or trial, resources),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=spec.samples,
            max_concurrent_trials=spec.concurrency,
            # one worker process serves many trials: no ~1 s actor start per trial,
            # and the dataset stays loaded in the worker between trials
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(folder), callbacks=callbacks, stop=stopper,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1,  # the best by the objective; Ray always keeps the latest too
                checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode),
            verbose=0,  # our tracker prints one line per epoch instead of Tune's tables
            # in a notebook Tune would pick its Jupyter reporter, which clears the cell's
            # output (the search's own progress display with it) to redraw an empty table
            progress_reporter=SilentReporter(),
        ),
    )


def check_name_free(spec: SearchSpec, storage: Storage, overwrite: bool) -> Path:
    """The search's folder, unless a search of that name exists and may not be replaced."""
    exp_dir = storage.search_dir(spec.name)
    if exp_dir.exists() and any(exp_dir.iterdir()) and not overwrite:
        raise SearchExists(
            f"a search named {spec.name!r} already exists in {exp_dir}; pass --name NEW, "
            f"--overwrite to replace it, or `hpsearch status {spec.name}` to see it")
    return exp_dir


@dataclass(frozen=True)
class Instruments:
    """What a benchmark swaps into a search to measure it (never the product's path):
    the trainable (a no-op one times the rest), the tracker class (one that records
    results), a stopper (an epoch budget)."""
    trainable: object = None
    tracker_class: type | None = None
    stopper: object = None


def run_search(spec: SearchSpec, *, storage: Storage, tracking_uri: str | None = None,
               address: str | None = None, overwrite: bool = False, echo=print,
               resource_wait: float | None = None, verbose: bool = True,
               progress: dict | None = None) -> SearchOutcome:
    """Run a validated search to the end. Raises SearchExists before starting anything.
    On a cluster (``address``) a search whose trials no node can hold ends after
    ``resource_wait`` seconds (see :func:`search.stopping.resource_wait`).
    ``verbose``: a line per epoch of every trial (else one per trial that ends).
    ``progress``: show the live progress line (:mod:`hpsearch.search.progress`), with these
    keyword arguments (e.g. ``prefix``, ``epoch_seconds_hint``; ``{}`` for none)."""
    return instrumented_search(spec, Instruments(), storage=storage, tracking_uri=tracking_uri,
                               address=address, overwrite=overwrite, echo=echo,
                               resource_wait=resource_wait, verbose=verbose, progress=progress)


def instrumented_search(spec: SearchSpec, instruments: Instruments, *, storage: Storage,
                        tracking_uri: str | None = None, address: str | None = None,
                        overwrite: bool = False, echo=print,
                        resource_wait: float | None = None, verbose: bool = True,
                        progress: dict | None = None) -> SearchOutcome:
    """:func:`run_search` with a benchmark's :class:`Instruments` in place."""
    from hpsearch.results.outbox import outbox_path
    from hpsearch.search import stopping, tracking

    exp_dir = check_name_free(spec, storage, overwrite)
    spec = connect(spec, storage, address, echo)  # before anything is written
    uri = storage.tracking_uri(tracking_uri)
    warm = None
    if spec.warm_start:  # read before anything is written (or replaced)
        from hpsearch.search.history import warm_start

        warm = warm_start(spec, storage, uri)
    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    storage.root.mkdir(parents=True, exist_ok=True)
    artifact_location = None
    if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
        artifact_location = (storage.artifact_root / spec.name).as_uri()
    experiment_id = tracking.ensure_experiment(uri, spec.name, artifact_location)
    spec_text = yaml.safe_dump(spec.raw, sort_keys=False)
    vers = versions()
    parent = tracking.start_parent(
        uri, experiment_id, run_name=f"search-{time.strftime('%Y%m%d-%H%M%S')}",
        params=_flatten(spec.raw), spec_text=spec_text,
        tags={"hpsearch.spec_file": spec.source, "seed": str(spec.seed),
              **{f"version.{k}": v for k, v in vers.items()},
              **({"warm_start": warm.source, "warm_start.reused": str(len(warm.trials)),
                  "warm_start.finished": str(warm.finished),
                  "warm_start.rerun": str(len(warm.rerun))} if warm else {})})
    if warm:
        echo(warm.line())
    storage.write_meta(spec.name, {
        "name": spec.name, "spec": spec.raw, "spec_file": spec.source,
        "tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent,
        "storage": str(storage.root), "versions": vers, "created": time.time(),
        "command": INVOCATION.get(),
    })
    outbox = str(outbox_path(exp_dir))
    callbacks = []
    budget = stopping.TimeBudget(spec.time_budget) if spec.time_budget else None
    if progress is not None:
        from hpsearch.search.plan import EpochsLeft
        from hpsearch.search.progress import progress_view

        view = progress_view(name=spec.name, samples=spec.samples,
                              expected_epochs=EpochsLeft.of(spec), metric=spec.metric,
                              mode=spec.mode, concurrency=spec.concurrency,
                              time_budget=budget, **progress)
        callbacks.append(view)
        echo = view.above(echo)
    trainable, stopper = instruments.trainable, instruments.stopper
    tracker = (instruments.tracker_class or tracking.MlflowTracker)(
        tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent,
        param_names=[p.name for p in spec.space], metric=spec.metric, mode=spec.mode,
        max_epochs=spec.max_epochs, samples=spec.samples, echo=echo,
        outbox=outbox, verbose=verbose, objectives=spec.objectives)
    callbacks.insert(0, tracker)
    from ray.tune.stopper import CombinedStopper

    stoppers = [s for s in (stopper, stopping.StopRequests()) if s is not None]
    if address:  # locally, connect() already fitted the spec to this machine
        watch = stopping.ResourceWatch(stopping.resource_wait(resource_wait))
        callbacks.append(watch)
        stoppers.append(watch)
    callbacks.append(stopping.DiskWatch(tracker, str(storage.root)))
    if budget is not None:
        callbacks.append(budget)
    stopper = CombinedStopper(*stoppers)
    then = None
    if spec.recheck:
        def then(grid) -> None:  # inside the search: the parent run stays open until it ends
            from hpsearch.search.recheck import run_recheck

            tracker.close()  # the search's results are all in MLflow before ranking them
            run_recheck(spec, storage, grid, tracking_uri=uri, experiment_id=experiment_id,
                        parent_run_id=parent, echo=echo, outbox=outbox)
    history = warm.trials if warm else None
    return _fit(spec, storage, tracker, uri, experiment_id, parent, address,
                lambda: build_tuner(spec, storage, callbacks, trainable, stopper,
                                    history=history, first=warm.rerun if warm else None),
                echo, then)


def extend_search(name: str, *, storage: Storage, samples: int, address: str | None = None,
                  echo=print, verbose: bool = False,
                  progress: dict | None = None) -> SearchOutcome:
    """More trials for a search that ended: ``samples`` in total. The sampler starts from
    the study the search's own sampler saved (every earlier trial, pruned ones as PRUNED;
    see :mod:`hpsearch.search.history`); the new trials run as a Tune experiment in the
    search's folder (``extend-N``), numbered after the old ones, their MLflow runs under
    the same parent run, which is re-opened and then ended again."""
    from mlflow.tracking import MlflowClient

    from hpsearch.results.outbox import outbox_path
    from hpsearch.results.status import trial_rows
    from hpsearch.search import stopping, tracking
    from hpsearch.search.history import EXTENSION, experiments, past_trials
    from hpsearch.search.spec import parse_spec

    meta = storage.read_meta(name)
    exp_dir = storage.search_dir(name)
    _, rows = trial_rows(name, storage)
    if samples <= len(rows):
        raise SpecError(f"--samples {samples}: search {name!r} has {len(rows)} trials already; "
                        f"ask for more than {len(rows)} in total")
    past = past_trials(exp_dir)
    # cover's points, a warm start and its re-runs were the first run's beginning: the
    # extension begins from the search's own study, which holds them all
    doc = {**meta["spec"], "search": {**meta["spec"]["search"], "samples": samples - len(rows),
                                      "cover": [], "warm_start": None, "warm_start_rerun": 0}}
    spec = parse_spec(doc, source=meta.get("spec_file", name))
    uri, experiment_id, parent = meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"]
    _deliver_outbox(storage, name, uri, experiment_id, parent, echo)
    spec = connect(spec, storage, address, echo)
    folder = EXTENSION.format(len(experiments(exp_dir)))
    MlflowClient(uri).update_run(parent, status="RUNNING")  # re-opened; _fit ends it again
    meta["spec"]["search"]["samples"] = samples
    meta.setdefault("extensions", []).append({"experiment": folder, "from": len(rows),
                                              "to": samples, "at": time.time()})
    storage.write_meta(name, meta)
    echo(f"extending search {name!r} from {len(rows)} to {samples} trials; its sampler starts "
         f"from the {len(past)} earlier trial(s) ({exp_dir / folder})")
    callbacks = []
    # the spec's time budget: an extension is a run of its own, and gets all of it
    budget = stopping.TimeBudget(spec.time_budget) if spec.time_budget else None
    if progress is not None:
        from hpsearch.search.plan import EpochsLeft
        from hpsearch.search.progress import progress_view

        view = progress_view(name=name, samples=spec.samples, expected_epochs=EpochsLeft.of(spec),
                             metric=spec.metric, mode=spec.mode, concurrency=spec.concurrency,
                             time_budget=budget, **progress)
        callbacks.append(view)
        echo = view.above(echo)
    tracker = tracking.MlflowTracker(
        tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent,
        param_names=[p.name for p in spec.space], metric=spec.metric, mode=spec.mode,
        max_epochs=spec.max_epochs, samples=samples, echo=echo,
        outbox=str(outbox_path(exp_dir)), verbose=verbose, objectives=spec.objectives)
    tracker.first_index = max((r.index for r in rows), default=0) + 1
    callbacks.insert(0, tracker)
    callbacks.append(stopping.DiskWatch(tracker, str(storage.root)))
    callbacks += [budget] if budget is not None else []
    return _fit(spec, storage, tracker, uri, experiment_id, parent, address,
                lambda: build_tuner(spec, storage, callbacks, stopper=stopping.StopRequests(),
                                    history=past, experiment=(exp_dir, folder)), echo)


class NothingToResume(SpecError):
    """The search has no Tune state to resume from."""


def resume_search(name: str, *, storage: Storage, address: str | None = None,
                  echo=print) -> SearchOutcome:
    """Finish a search whose driver died (SIGKILL, a lost machine): Tune restores the
    experiment from its storage (finished trials stay finished, in-flight ones resume
    from their last checkpoint, the Optuna searcher from its saved state, so TPE keeps
    its history), MLflow child runs re-attach to their trials by the trial_id tag,
    and runs the crash left RUNNING are ended."""
    from mlflow.tracking import MlflowClient
    from ray import tune

    from hpsearch.search.adapter import trial
    from hpsearch.search.spec import parse_spec

    meta = storage.read_meta(name)
    exp_dir = storage.search_dir(name)
    if not tune.Tuner.can_restore(str(exp_dir)):
        raise NothingToResume(f"search {name!r} has no Tune experiment state in {exp_dir} to "
                              "resume from; start it again with `hpsearch run --overwrite`")
    spec = parse_spec(meta["spec"], source=meta.get("spec_file", name))
    uri, experiment_id, parent = meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"]
    _deliver_outbox(storage, name, uri, experiment_id, parent, echo)
    spec = connect(spec, storage, address, echo)
    _settle_lost(exp_dir, uri, experiment_id, parent, echo)
    MlflowClient(uri).update_run(parent, status="RUNNING")
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}

    def make_tuner():
        tuner = tune.Tuner.restore(str(exp_dir), trainable=tune.with_resources(trial, resources),
                                   resume_unfinished=True, resume_errored=True)
        return tuner

    tracker = _RestoredTracker(echo)
    echo(f"resuming search {name!r} from {exp_dir}")
    return _fit(spec, storage, tracker, uri, experiment_id, parent, address, make_tuner, echo)


def _settle_lost(exp_dir, uri: str, experiment_id: str, parent: str, echo) -> None:
    """Runs of trials Tune's saved state lacks (started after its last save) go out of
    the search before Tune starts their configurations again as new trials."""
    from ray.tune import ExperimentAnalysis

    from hpsearch.results.mlflow_runs import settle_lost_runs
    from hpsearch.search.tracking import MlflowTracker

    known = {t.trial_id for t in ExperimentAnalysis(str(exp_dir)).trials}
    deleted, kept, highest = settle_lost_runs(uri, experiment_id, parent, known)
    # the restored tracker numbers new trials after every run's (a lost one's too)
    MlflowTracker.restored_index_floor = highest + 1
    if deleted or kept:
        echo(f"{deleted + kept} trial(s) started after Tune last saved the search: their "
             f"configurations run again as new trials ({deleted} run(s) without a metric "
             f"deleted, {kept} kept in MLflow tagged lost)")


def _deliver_outbox(storage: Storage, name: str, uri: str, experiment_id: str, parent: str,
                    echo) -> None:
    """Writes an earlier run kept for a silent store go first: delivered after the resume's
    own, an old "end" would overwrite a newer one."""
    from hpsearch.results.outbox import outbox_path, pending_in, replay

    path = outbox_path(storage.search_dir(name))
    if not pending_in(path):
        return
    delivered, left = replay(path, uri, experiment_id, parent)
    if left:
        raise SearchFailed(f"{left} MLflow write(s) of {name!r} wait in {path} and {uri} does "
                           f"not answer; deliver them first (`hpsearch status {name} --sync`)")
    echo(f"delivered {delivered} MLflow write(s) kept in {path}")


class _RestoredTracker:
    """Tune restores the search's own MlflowTracker from the experiment state (callbacks
    are pickled there); this stand-in only closes it at the end, as _fit expects."""

    def __init__(self, echo):
        self.echo = echo

    def interrupt(self) -> None:
        self.stopping("KILLED", "interrupted")

    def stopping(self, status: str, reason: str) -> None:
        from hpsearch.search.tracking import MlflowTracker

        for tracker in MlflowTracker.live:
            tracker.stopping(status, reason)

    def abandon(self, status: str, reason: str) -> None:
        from hpsearch.search.tracking import MlflowTracker

        for tracker in list(MlflowTracker.live):
            tracker.abandon(status, reason)

    def close(self) -> int:
        from hpsearch.search.tracking import MlflowTracker

        left = 0
        while MlflowTracker.live:  # drained: a later resume in this process starts empty
            left += MlflowTracker.live.pop().close()
        return left


def _fit(spec, storage, tracker, uri, experiment_id, parent, address, make_tuner, echo,
         then=None):
    """Fit the search's Tuner (then ``then(grid)``, e.g. the seed re-check, inside the
    same signal handling and before the parent run ends), and end its MLflow runs
    however it ends (see :class:`_Fit`)."""
    return _Fit(spec, storage, tracker, uri, experiment_id, parent, echo).fit(make_tuner, then)


class _Fit:
    """One fit of a search and the end of its MLflow runs, whatever ends it:

    - its trials (the parent run ends FINISHED, or FAILED when no trial scored);
    - its time budget or a full disk (:class:`~search.stopping.GracefulStop` requests:
      Tune saves its state, the trials still running end KILLED ``time_budget``, or
      FAILED ``error: disk full (<storage root>)`` and :class:`DiskFull` is raised);
    - a signal (KILLED ``interrupted``, :class:`SearchInterrupted`; a second one at once);
    - Ray's daemons dying (:class:`ClusterLost`): the watchdog's thread ends the runs,
      since Tune's loop cannot, then wakes the main thread; if that is stuck in Ray's
      core, the process exits with the closing line rather than wait for Ray to abort.
    """

    def __init__(self, spec, storage, tracker, uri, experiment_id, parent, echo) -> None:
        import threading

        from hpsearch.results.outbox import outbox_path
        from hpsearch.results.storage import Reserve
        from hpsearch.search.stopping import GracefulStop

        self.spec, self.storage, self.tracker, self.echo = spec, storage, tracker, echo
        self.uri, self.experiment_id, self.parent = uri, experiment_id, parent
        self.outbox = outbox_path(storage.search_dir(spec.name))
        self.stop = GracefulStop(self._on_stop)
        self.reserve = Reserve(storage.search_dir(spec.name))
        self.lost: str | None = None      # what of Ray died (the watchdog's line)
        self.unwound = threading.Event()  # the main thread left Tune after Ray died
        self._lock = threading.Lock()
        self._ended: tuple[int, int] | None = None  # (runs ended, writes kept) once ended

    # ------------------------------------------------------------ events

    def _on_stop(self, signum: int | None, requested: tuple | None) -> None:
        """A signal (in its handler: no buffered I/O here) or a request of the search's."""
        import signal

        if signum is None:
            self.tracker.stopping(*requested)
            return
        self.tracker.interrupt()
        os.write(2, f"hpsearch: {signal.Signals(signum).name}: stopping the search; in-flight "
                    "trials end as interrupted (send it again to stop at once)\n".encode())

    def _on_lost(self, message: str) -> None:
        """The watchdog's thread: Ray died. End the runs from here, then wake the main thread."""
        self.lost = message
        status, reason = ("KILLED", "interrupted") if self.stop.signum else ("FAILED", LOST_REASON)
        self.tracker.abandon(status, reason)
        self._end(status, status, reason)
        self.stop.wake(message)
        if self.unwound.wait(UNWIND_WAIT):
            return
        # the main thread is blocked in Ray's core, which aborts the process after 60 s
        import signal

        code = 128 + self.stop.signum if self.stop.signum else 1
        line = (f"interrupted ({signal.Signals(self.stop.signum).name}) and {self.lost_line()}"
                if self.stop.signum else self.lost_line())
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if os.environ.get("HPSEARCH_DEBUG"):  # where the main thread was held
            import faulthandler

            faulthandler.dump_traceback(all_threads=True)
        os.write(2, f"hpsearch: error: {line}\n".encode())
        os._exit(code)

    def lost_line(self) -> str:
        name = self.spec.name
        return (f"{self.lost} during search {name!r}: its runs ended ({LOST_REASON}), the "
                f"finished trials are kept; `hpsearch resume {name}` continues it once Ray "
                "is back")

    def _beat(self, first: bool) -> None:
        from hpsearch.results.heartbeat import beat
        from hpsearch.results.mlflow_runs import _client

        beat(_client(self.uri), self.parent, first=first)

    # ------------------------------------------------------------ the fit

    def fit(self, make_tuner, then):
        import signal

        from hpsearch.results.heartbeat import period
        from hpsearch.results.storage import QuietStorageNoise, is_disk_full
        from hpsearch.search.stopping import RayGone, ResourceWatch
        from hpsearch.search.watchdog import Watchdog

        spec, stop, t0 = self.spec, self.stop, time.time()
        status, orphans, missing, full = "FAILED", ("FAILED", "error: search failed"), None, None
        self.reserve.hold()
        # its writer gives it back on a full disk (a resumed search's tracker has it from
        # Tune's saved state: the same file)
        self.tracker.reserve = self.reserve
        try:
            self.echo(f"search {spec.name!r}: {spec.samples} trials of {spec.trainable}, "
                      f"{spec.algorithm.upper()} + {spec.scheduler.upper()} "
                      f"(max {spec.max_epochs} epochs, concurrency {spec.concurrency}"
                      + (f", time budget {_duration(spec.time_budget)})" if spec.time_budget
                         else ")"))
            with stop, QuietStorageNoise(), Watchdog(on_lost=self._on_lost, beat=self._beat,
                                                 beat_every=period()):
                grid = make_tuner().fit()
                if then is not None and not stop.signum and not stop.requested \
                        and _scored(grid, spec.metric):
                    then(grid)
            if self.lost is not None:  # Tune's loop ended as Ray died under it
                raise RayGone(self.lost)
            # a watch that stopped the search (a restored one on resume)
            missing = next((w.missing for w in ResourceWatch.live if w.missing), None)
            scored = _scored(grid, spec.metric)
            requested = stop.requested or ("", "")
            full = requested[1] if requested[1].startswith("error: disk full") else None
            status = ("KILLED" if stop.signum else
                      "FAILED" if missing or scored == 0 or full else "FINISHED")
            orphans = ("KILLED", "interrupted") if stop.signum else stop.requested or orphans
        except BaseException as e:
            if self.lost is not None:  # Ray died (RayGone, or what Tune raised as it did):
                self.unwound.set()     # the watchdog ends the runs (as below, should it not)
                status, orphans = "FAILED", ("FAILED", LOST_REASON)
                _forget_ray()
                raise ClusterLost(self.lost_line()) from None
            if isinstance(e, KeyboardInterrupt):  # a second signal, or one before Tune's loop
                status, orphans = "KILLED", ("KILLED", "interrupted")
                self.tracker.interrupt()
                stop.signum = stop.signum or signal.SIGINT
                raise
            if not (isinstance(e, Exception) and is_disk_full(e)):
                raise
            # a write of Tune's own into a full disk (a result logger, its state)
            full = f"error: disk full ({self.storage.root})"
            orphans = ("FAILED", full)
            self.tracker.stopping(*orphans)
            raise self._disk_full() from None
        finally:
            ResourceWatch.live.clear()
            if stop.signum is not None:  # an error while stopping comes from the stop
                status, orphans = "KILLED", ("KILLED", "interrupted")
            if full:
                status = "FAILED"
            self.reserve.release()  # room for the last MLflow writes on a full disk
            self._end(status, *orphans)  # (done already when the watchdog ended them)
            ended, undelivered = self._ended or (0, 0)
            if ended:
                self.echo(f"ended {ended} trial run(s) left open ({orphans[1]})")
            if undelivered:
                self.echo(f"{undelivered} MLflow write(s) wait in {self.outbox}: `hpsearch "
                          f"status {spec.name} --sync` delivers them once {self.uri} answers")
            if stop.signum is not None:
                raise SearchInterrupted(spec.name, stop.signum, undelivered)
        if missing:
            raise ResourcesUnavailable(missing)
        if full:
            raise self._disk_full()
        if spec.multi_objective or spec.constraints:  # the front, a table of the parent run
            _log_front(spec, self.storage, self.echo)
        errors = sum(1 for r in grid if r.error is not None)
        return SearchOutcome(spec.name, self.storage.search_dir(spec.name), self.uri,
                             self.parent, time.time() - t0, len(grid), errors, scored,
                             undelivered, self.outbox if undelivered else None)

    def _disk_full(self) -> DiskFull:
        given = self.reserve.nbytes if self.reserve.held else 0  # free again: say so
        return DiskFull(self.storage.full_message(self.spec.name, given))

    def _end(self, status: str, orphan_status: str, orphan_reason: str) -> None:
        """Deliver the tracker's writes, end the runs left open and the parent run: once,
        from whichever thread gets here first (the main one, or the watchdog's)."""
        from hpsearch.results.outbox import finish_search

        with self._lock:
            if self._ended is not None:
                return
            undelivered = self.tracker.close()
            ended, spooled = finish_search(
                self.uri, self.experiment_id, self.parent, status=status, path=self.outbox,
                orphan_status=orphan_status, orphan_reason=orphan_reason)
            self._ended = (ended, undelivered + spooled)


def _forget_ray() -> None:
    """After Ray died under a search: disconnect this process from it, so that a later
    search in the same process (a notebook) starts a new local instance."""
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()


def _duration(seconds: float) -> str:
    from hpsearch.search.progress import duration

    return duration(seconds)


def _log_front(spec: SearchSpec, storage: Storage, echo) -> None:
    from hpsearch.results.front import log_front
    from hpsearch.results.status import trial_rows

    try:
        meta, rows = trial_rows(spec.name, storage)
        table = log_front(meta, rows)
    except Exception as e:  # the search stands without its summary table
        echo(f"hpsearch: warning: the Pareto front was not logged to MLflow ({e})")
        return
    echo(f"Pareto front: {len(table)} trial(s) ({', '.join(t['trial_id'] for t in table)}), "
         "logged as front.json on the search's run")


def _scored(grid, metric: str) -> int:
    """Trials that reported a finite objective at least once."""
    from hpsearch.results.objective import finite

    n = 0
    for r in grid:
        df = r.metrics_dataframe
        if df is not None and metric in df:
            values = df[metric].tolist()
        else:
            values = [(r.metrics or {}).get(metric)]
        n += any(finite(v) for v in values)
    return n


def _flatten(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "space":
            out.update(_flatten(v, key + "."))
        elif k == "space":
            for pk, pv in v.items():
                out[f"space.{pk}"] = pv
        else:
            out[key] = v
    return out
