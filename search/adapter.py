"""The one module that calls Ray's reporting and checkpoint API.

Ray has moved this API three times (``session.report``, ``train.report``,
``tune.report``); on Ray 2.60 only ``ray.tune.report`` / ``ray.tune.Checkpoint``
/ ``ray.tune.get_checkpoint`` work inside Tune trials. Everything else in the
product talks to ``trainables.loop.train(config, report)`` and never sees Ray.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hpsearch.results.checkpoints import STATE_FILE, load_state  # noqa: F401 (refit's too)


def trial(config: dict) -> None:
    """Tune function trainable: one trial of the shared loop."""
    import ray
    import torch
    from ray import tune

    from hpsearch.results.storage import is_disk_full
    from hpsearch.trainables import get as get_trainable
    from hpsearch.trainables.health import Unhealthy
    from hpsearch.trainables.loop import train

    node_id = ray.get_runtime_context().get_node_id()  # recorded as a tag of the trial's run
    restore = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure, or `hpsearch resume`
        with checkpoint.as_directory() as d:
            restore = load_state(d)

    def report(metrics: dict, state: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="hpsearch-ckpt-") as d:
            torch.save(state, Path(d) / STATE_FILE)
            # tune.report persists the directory to the storage root before returning
            tune.report({**metrics, "node_id": node_id},
                        checkpoint=tune.Checkpoint.from_directory(d))

    failure: dict | None = None
    try:
        train(config, report, restore=restore)
    except Unhealthy as e:
        # a diverged loss, NaN and infinity included (health stops that prune report
        # themselves). Deterministic: a FailureConfig retry from the last checkpoint
        # would only diverge again; the run ends FAILED, "unhealthy: divergence (...)"
        failure = {"unhealthy": str(e), "diverged": True}
    except torch.cuda.OutOfMemoryError as e:
        # The same config on the same GPU runs out of memory again: no retry either.
        failure = {"error": f"OutOfMemory: {str(e).splitlines()[0] if str(e) else 'CUDA out of memory'}"}
    except Exception as e:
        if not is_disk_full(e):
            raise
        # A checkpoint that did not fit: a retry would fail the same way, and the search
        # stops (search/stopping.py, DiskWatch) so the others need not find out one by one
        where = _trial_storage()
        failure = {"error": f"DiskFull: {str(e).splitlines()[0] if str(e) else e!r}",
                   "stop_reason": f"error: disk full ({where})", "disk_full": True}
    if failure is None:
        return
    if failure.get("error", "").startswith("OutOfMemory"):
        # Out of the except block, the traceback (and with it the loop's frames holding
        # the model, optimizer state and batches) is gone: the memory can go back to the
        # GPU before this worker takes its next trial (reuse_actors keeps the process).
        release_memory()
    # The objective and every metric non-finite: ASHA ignores the trial (nanpercentile),
    # Optuna is told FAIL (search/searcher.py); trial_finished, so not taken for pruned.
    metrics = dict.fromkeys(get_trainable(config["trainable"]).metrics, float("nan"))
    tune.report({**metrics, "trial_finished": True, **failure})


def _trial_storage() -> str:
    """The trial's folder under the storage root (where its checkpoints go)."""
    from ray import tune

    context = tune.get_context()
    try:
        return context.get_storage().trial_fs_path
    except Exception:  # noqa: BLE001 - another Ray: its local folder still says which trial
        return context.get_trial_dir()


def release_memory() -> None:
    """Free what a failed trial left: unreachable objects, then PyTorch's cached GPU
    blocks, so the next trial on this worker starts with the whole memory."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def recheck_trial(config: dict) -> None:
    """A seed re-check run (search/recheck.py): the trial of the configuration it carries."""
    trial(config["recheck"]["config"])


def refit_trial(config: dict) -> None:
    """A refit (search/refit.py): the trial of the configuration it carries."""
    trial(config["refit_job"]["config"])
