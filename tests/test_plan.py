"""`hpsearch plan`: the largest configuration, ASHA's epoch budget, the memory check,
and a real probe of a spec's largest trial through the CLI (on CPU here)."""

from __future__ import annotations

import math

import pytest

from hpsearch.search.cli import main
from hpsearch.search.plan import (
    GIB,
    DoesNotFit,
    Plan,
    asha_epochs,
    batch_sizes,
    largest_config,
    variants,
)
from hpsearch.search.spec import load_spec, parse_spec

SPEC = {
    "name": "plan-test", "trainable": "small_vgg", "data": {"source": "digits"},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "scheduler": {"name": "asha", "max_epochs": 30, "grace_period": 2, "reduction_factor": 3},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0.25},
    "space": {"batch_size": {"choice": [32, 128, 64]}, "width": {"int": [8, 32]},
              "optimizer": {"choice": ["sgd", "adamw"]}, "augment": {"choice": [False, True]},
              "activation": {"choice": ["relu", "elu", "gelu"]}, "lr": {"loguniform": [1e-4, 1e-1]}},
}


def test_largest_config_takes_the_costliest_value_of_every_parameter():
    spec = parse_spec(SPEC, source="t.yaml")
    config = largest_config(spec)
    assert config["batch_size"] == 128 and config["width"] == 32
    assert config["optimizer"] == "adamw", "the optimizer with the most state per parameter"
    assert config["augment"] is True
    assert batch_sizes(spec, config) == [32, 64, 128]
    # string options that may change the model are each probed; loop-only ones are not
    assert variants(spec) == [{"activation": "elu"}, {"activation": "gelu"}]


def test_asha_epoch_budget():
    spec = parse_spec(SPEC, source="t.yaml")
    # rungs at 2, 6, 18; a third of the trials go on at each: 2 + 4/3 + 12/9 + 12/27
    assert asha_epochs(spec) == pytest.approx(2 + 4 / 3 + 12 / 9 + 12 / 27)
    fifo = parse_spec({**SPEC, "scheduler": {"name": "fifo", "max_epochs": 7}}, source="t.yaml")
    assert asha_epochs(fifo) == 7
    # two brackets: the second starts at 6 (rungs 6, 18), with odds e**2 to the first's e**3
    two = parse_spec({**SPEC, "scheduler": {**SPEC["scheduler"], "brackets": 2}}, source="t.yaml")
    second = 6 + 12 / 3 + 12 / 9
    assert asha_epochs(two) == pytest.approx(
        (asha_epochs(spec) * math.e**3 + second * math.e**2) / (math.e**3 + math.e**2))


def _measured(peak_gib: float, total_gib: float = 80.0) -> dict:
    timing = {"batch_size": 128, "step_seconds": 0.003, "setup_seconds": 0.1,
              "train_samples": 1000, "val_samples": 200, "eval_seconds_per_sample": 1e-5,
              "gpu_busy": 0.5, "graphed": True}
    return {"device": "Some GPU", "total_bytes": int(total_gib * GIB), "candidates": 1,
            "largest": {**timing, "peak_reserved": int(peak_gib * GIB),
                        "peak_allocated": int(peak_gib * GIB), "context_bytes": int(0.5 * GIB),
                        "config": {"batch_size": 128, "width": 32}},
            "timings": [timing]}


def test_memory_check_refuses_a_trial_larger_than_its_gpu_share():
    spec = parse_spec(SPEC, source="t.yaml")
    Plan(spec, _measured(10.0)).check_fits()  # 10.5 GiB in 0.25 x 80 x 0.95 = 19 GiB: fits
    with pytest.raises(DoesNotFit) as e:
        Plan(spec, _measured(30.0)).check_fits()
    msg = str(e.value)
    assert msg.startswith("t.yaml: `resources.gpus_per_trial`: the largest trial (")
    assert "needs 30.5 GiB of GPU memory (measured), but 0.25 of this Some GPU is 19.0 GiB" in msg
    assert "raise it to 0.5 (--gpus-per-trial)" in msg
    plan = Plan(spec, _measured(1.5))
    assert plan.fits_per_gpu == int(0.95 * 80 // 2)
    assert plan.helpful_per_gpu() == 2, "one trial keeps the GPU half busy: two help"
    text = "\n".join(plan.lines())
    assert "2.00 GiB per trial" in text and "about 2 trials per GPU help" in text


def test_plan_probes_the_largest_trial_through_the_cli(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    import yaml

    momentum = {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}}  # not read by adamw
    spec.write_text(yaml.safe_dump({**SPEC, "space": {**SPEC["space"], "momentum": momentum,
                                                      "width": {"int": [4, 8]}},
                                    "search": {**SPEC.get("search", {}), "time_budget": 90},
                                    "export": {"refit": True, "epochs": 7}}))
    assert main(["plan", str(spec), "--steps", "2", "--samples", "6"]) == 0
    out = capsys.readouterr().out
    # a 5-minute spec is sized with its budget and the export's refit in view
    assert "time budget: 90 s" in out
    assert "refit: 7 epochs on train+val, one model alone: ~" in out
    assert "plan for" in out and "on the CPU (no CUDA GPU here; measured within" in out
    assert "batch   32:" in out and "batch  128:" in out  # every batch size of the space, timed
    assert "(the hungriest of 3 model variants)" in out
    assert "optimizer='adamw'" in out and "momentum=" not in out  # its conditions fail
    assert "6 trials x 5.1 expected epochs" in out and "estimated wall time" in out
    # run's pre-flight check needs a CUDA device; without one it measures nothing
    from hpsearch.search.plan import check_before_run

    assert check_before_run(load_spec(spec)) is None


def test_on_a_cpu_the_measurement_is_bounded():
    """Without a GPU the probe keeps to its budget: the steps that fit, at least one
    per batch size until the budget is spent, the rest estimated per sample."""
    import time

    from hpsearch.search.plan import measure

    spec = parse_spec(SPEC, source="t.yaml")
    config = largest_config(spec)
    t0 = time.monotonic()
    result = measure(config, batch_sizes(spec, config), steps=2000, variants=variants(spec),
                     cpu_budget=0.5)
    assert time.monotonic() - t0 < 60, "a tiny budget, whatever the machine's load"
    assert result["cpu_budget"] == 0.5 and result["probed"] >= 1
    timings = result["timings"]
    assert [t["batch_size"] for t in timings] == [32, 64, 128]
    assert timings[0]["steps"] >= 1 and not timings[0].get("estimated")
    assert all(t["steps"] < 2000 for t in timings), "none timed all its steps"
    plan = Plan(spec, result)
    text = "\n".join(plan.lines())
    assert "on the CPU (no CUDA GPU here; measured within 0.5 s)" in text
    assert "estimated from the time per sample measured above" in text or \
        all(not t.get("estimated") for t in timings)
    assert plan.state_bytes > 0 and "checkpoints: " in text


def test_plan_of_a_bad_spec_is_bad_input(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\n")
    assert main(["plan", str(spec)]) == 2
    assert "hpsearch: error:" in capsys.readouterr().err
