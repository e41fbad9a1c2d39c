"""A trial's checkpoints as the search leaves them under the storage root.

The Ray adapter (:mod:`hpsearch.search.adapter`) writes each epoch's state as
``state.pt`` in a Tune checkpoint folder of the trial's folder (``trial_<id>``, in the
search's experiment or one inside it: an extension's ``extend-N/``, the seed
re-check's ``recheck/``); export, report and refit read them back here, with
``weights_only=True``: tensors and plain values only, never pickled objects.
"""

from __future__ import annotations

from pathlib import Path

from hpsearch.results.objective import Objective

STATE_FILE = "state.pt"


def load_state(directory: str | Path) -> dict:
    """A checkpoint's state; tensors and plain values only (weights_only=True)."""
    import torch

    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)


def find_checkpoints(experiment_dir: Path, trial_id: str) -> list[Path]:
    """Checkpoint folders of one trial (Tune names trial folders after the trial id), in
    the search's experiment or one inside it (an extension's ``extend-N/``)."""
    dirs = [d for pattern in (f"trial_{trial_id}", f"*/trial_{trial_id}")
            for d in experiment_dir.glob(pattern) if d.is_dir()]
    return sorted(c for d in dirs for c in d.glob("checkpoint_*") if (c / STATE_FILE).is_file())


def best_state(experiment_dir: Path, trial_id: str, metric: str, mode: str) -> dict | None:
    """The state of the trial's checkpoint with the best ``metric`` (None: it has none)."""
    states = [load_state(c) for c in find_checkpoints(experiment_dir, trial_id)]
    if not states:
        return None
    objective = Objective(metric, mode)
    return max(states, key=lambda s: objective.key(s["metrics"].get(metric)))
