"""Checks made before anything starts: the same for the command line and the Python API.

A spec that parses can still describe a search that cannot run: the trainable's own
files (pretrained weights) missing, a data set not on disk, a user's table no trial
could train on, named vectors to fetch, a largest trial too big for its GPU share, an
output folder that cannot be written, a storage root without room for the search's
checkpoints. Each is bad input (:class:`SpecError`, one
line, exit code 2 on the command line) raised here, before Ray starts or anything is
written; ``hpsearch run``, ``plan``, ``export`` and ``hpsearch.run(...)`` call the
same functions. What the checks print (a data set being fetched once) goes to
``log``, by default standard error.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from hpsearch.errors import SpecError
from hpsearch.search.spec import SearchSpec


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_trainable(spec: SearchSpec) -> None:
    """The trainable module's own checks (``preflight(values)``: transfer's pretrained
    weight files). It imports the module (torch), so it is not part of parsing, and
    runs only for modules the registry says have one."""
    from hpsearch import trainables

    info = trainables.get(spec.trainable)
    if not info.preflight:
        return
    try:
        info.load().preflight(spec.values)
    except (ValueError, OSError) as e:
        raise SpecError(f"{spec.source}: {e}") from None


def check_data(spec: SearchSpec, log: Callable[[str], None] = _stderr) -> None:
    """Every trial's data is there before the first trial starts: a Debian-shipped data
    set fetched once, the user's own files read once, named vectors fetched once."""
    from hpsearch.trainables.data import fashion_mnist, modeldata
    from hpsearch.trainables.data.debian import DataNotFound

    source = spec.data.get("source")
    module = {"fashion-mnist": fashion_mnist, "fine-foods": modeldata,
              "chicago-ridership": modeldata}.get(source)
    if module is not None and not module.available():
        log(f"{source}: not found locally, fetching it once")
        try:
            module.fetch()
        except DataNotFound as e:
            raise SpecError(f"{spec.source}: `data.source`: {e}") from None
    check_user_data(spec)
    check_vectors(spec, log)


def check_user_data(spec: SearchSpec) -> None:
    """The user's own files (a csv: table, an imagefolder:) read once here, so that one
    no trial could train on is bad input, not an error in every trial. Local and cheap,
    unlike the data sets :func:`check_data` may fetch (``run --dry-run`` makes only this)."""
    source = str(spec.data.get("source"))
    if source.startswith("csv:"):
        check_table(spec)
    elif source.startswith("imagefolder:"):
        from hpsearch.trainables.data.images import check_imagefolder

        try:
            check_imagefolder(Path(source.split(":", 1)[1]))
        except ValueError as e:
            raise SpecError(f"{spec.source}: `data`: {e}") from None


def check_table(spec: SearchSpec) -> None:
    """A user's CSV read by the loader the trials use (a target holding text, dates
    that are not dates, too few rows, a label with fewer than 3 rows), then cut into
    windows of the space's longest ``seq_length``."""
    from hpsearch import trainables
    from hpsearch.trainables import data as data_sources

    try:
        loaded = data_sources.load(spec.data)
    except (ValueError, KeyError, OSError) as e:
        raise SpecError(f"{spec.source}: `data`: {e}") from None
    if "seq_length" in trainables.get(spec.trainable).params:
        from hpsearch.trainables.data.series import windows

        longest = max(int(v) for v in spec.values("seq_length"))
        try:
            windows(loaded, longest)
        except ValueError as e:
            where = "space.seq_length" if any(p.name == "seq_length" for p in spec.space) \
                else "fixed.seq_length"
            raise SpecError(f"{spec.source}: `{where}`: {e}") from None


def check_vectors(spec: SearchSpec, log: Callable[[str], None] = _stderr) -> None:
    """Fetch named pretrained vectors (``embeddings: glove.6B.100d``) once, before
    any trial needs them."""
    from hpsearch import trainables
    from hpsearch.trainables.data import vectors
    from hpsearch.trainables.data.debian import DataNotFound

    if "embeddings" not in trainables.get(spec.trainable).params:
        return
    for name in [v for v in spec.values("embeddings") if v in vectors.NAMED]:
        if not vectors.available(name):
            try:
                vectors.fetch(name, log=log)
            except DataNotFound as e:
                raise SpecError(f"{spec.source}: `embeddings`: {e}") from None


def check_destination(to: str | Path | None, storage) -> None:
    """A command that writes results (``to``, else under the storage root) checks the
    folder is writable before it loads or evaluates anything."""
    from hpsearch.results.storage import check_writable

    if to:
        check_writable(Path(to).expanduser().resolve(), "--to")
    else:
        storage.check_writable()


def check_plan(spec: SearchSpec, log: Callable[[str], None] = _stderr):
    """On a machine with a CUDA GPU: the space's largest trial, trained for a few steps,
    must fit the spec's GPU share (:class:`~hpsearch.search.plan.DoesNotFit` otherwise).
    Returns the plan, or None where nothing was measured (no GPU, a CPU-only spec, a
    probe that failed: said in ``log``, and the search starts without the check)."""
    from hpsearch.search.plan import PlanError, check_before_run

    try:
        plan = check_before_run(spec)
    except PlanError as e:
        log(f"hpsearch: warning: {e}; starting the search without the memory check")
        return None
    if plan is not None:
        log(f"GPU memory check: the largest trial needs {plan.per_trial_bytes / 2**30:.1f} GiB; "
            f"{spec.gpus_per_trial:g} of {plan.result['device']} gives "
            f"{spec.gpus_per_trial * plan.result['total_bytes'] * 0.95 / 2**30:.1f} GiB")
    return plan


# no checkpoint of a model of this course weighs more (VGG-16 with Adam's state: 1.6 GiB):
# a storage root with room for this many per kept checkpoint needs no measurement
CHECKPOINT_CEILING = 2 * 2**30


class NoRoom(SpecError):
    """The storage root has less free space than the search's checkpoints take."""


def check_space(spec: SearchSpec, storage, plan=None, *, taken: int = 0,
                log: Callable[[str], None] = _stderr) -> int:
    """The storage root must have room for the search's checkpoints: every trial keeps
    two, each the size of the largest trial's model and optimizer state, as `plan`
    measures it (``plan``'s measurement, else a probe of one step in a child process;
    not made where even the heaviest model of the course would fit). ``taken``: bytes
    the searches before this one in the same run will take. Raises :class:`NoRoom`;
    returns the bytes this search takes (0 where not measured)."""
    from hpsearch.results.storage import RESERVE_BYTES, size
    from hpsearch.search.plan import CHECKPOINTS_KEPT, PlanError, checkpoint_plan

    free = storage.free_space()[0] - taken
    if free >= spec.samples * CHECKPOINTS_KEPT * CHECKPOINT_CEILING:
        return 0
    if plan is None or not plan.state_bytes:
        try:
            plan = checkpoint_plan(spec)
        except PlanError as e:
            log(f"hpsearch: warning: {e}; starting the search without the disk space check")
            return 0
    need = plan.checkpoint_bytes() + RESERVE_BYTES
    if plan.result.get("fit_only") or need <= free:
        return need
    origin = "" if storage.origin == "storage root" else f" ({storage.origin})"
    raise NoRoom(
        f"{spec.source}: storage root {storage.root}{origin} has {size(free)} free"
        + (" after the searches before it" if taken else "") + f", but the search's "
        f"checkpoints take up to {size(need)} ({spec.samples} trials x {CHECKPOINTS_KEPT} "
        f"kept x {size(plan.state_bytes)}, the largest trial's model and optimizer state); "
        "free space there, give --storage a folder with room, or lower --samples")


def plan_checks_in_background(specs: list[SearchSpec], log: Callable[[str], None] = _stderr,
                              storage=None) -> Callable[[], dict[str, float]]:
    """Start :func:`check_plan` (and, with ``storage``, :func:`check_space`) for each
    spec in a thread while Ray starts; the returned function waits for them and gives
    plan's epoch time per search name (the progress line's first estimate), or raises
    DoesNotFit for a spec whose largest trial does not fit, NoRoom for one whose
    checkpoints the storage root cannot hold. The engine calls it once Ray is up,
    before any search writes anything. Each check is a child process (on the GPU):
    ~10 s that no longer come before Ray's start."""
    out: dict = {}

    def work() -> None:
        try:
            taken = 0
            for spec in specs:
                plan = check_plan(spec, log)
                if plan is not None:
                    out[spec.name] = plan.epoch_seconds()
                if storage is not None:
                    taken += check_space(spec, storage, plan, taken=taken, log=log)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            out["error"] = e

    thread = threading.Thread(target=work, name="hpsearch-plan", daemon=True)
    thread.start()

    def wait() -> dict[str, float]:
        thread.join()
        if "error" in out:
            raise out.pop("error")
        return out

    return wait


def check_run(specs: list[SearchSpec], storage, *, overwrite: bool = False,
              address: str | None = None, resource_wait: float | None = None,
              tracking_uri: str | None = None, log: Callable[[str], None] = _stderr):
    """Everything ``run`` checks before Ray starts, in the order a user would want to
    hear of problems (the cheap, local ones first): the storage root, the trainables'
    files, the names against each other and the storage root, the data, the resource
    wait on a cluster. Returns the GPU memory and disk space checks started in the
    background (see :func:`plan_checks_in_background`), or None on a cluster (whose
    nodes' disks are not this machine's)."""
    from hpsearch.search.batch import check_batch

    storage.check_writable()
    for spec in specs:
        check_trainable(spec)
    check_batch(specs, storage, overwrite=overwrite)  # names, before any data is fetched
    for spec in specs:
        if spec.warm_start:  # the earlier search it starts from exists
            from hpsearch.search.history import check_source

            check_source(spec, storage, storage.tracking_uri(tracking_uri))
        check_data(spec, log)
    if address:
        from hpsearch.search.stopping import resource_wait as checked_wait

        try:
            checked_wait(resource_wait)
        except ValueError as e:
            raise SpecError(str(e)) from None
        return None
    # a local GPU: the largest trial must fit; the storage root: the checkpoints
    return plan_checks_in_background(specs, log, storage)


def check_dry_run(specs: list[SearchSpec], storage, n: int = 3) -> list[list[dict]]:
    """``run --dry-run``: the local checks (storage, the trainables' files, the user's own
    data; no data set fetched, no Ray) and ``n`` sampled configurations per spec, the
    searched parameters only."""
    from hpsearch.search.space import sample_configs

    storage.check_writable()
    out = []
    for spec in specs:
        check_trainable(spec)
        check_user_data(spec)
        searched = {p.name for p in spec.space}
        out.append([{k: v for k, v in cfg.items() if k in searched}
                    for cfg in sample_configs(spec, n, seed=spec.seed)])
    return out
