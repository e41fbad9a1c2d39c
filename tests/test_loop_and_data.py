"""The shared loop driven by a plain callback (no Ray), and the data sources."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hpsearch.trainables import data as data_sources
from hpsearch.trainables.loop import augment_batch, gpu_options, train

BASE = {"trainable": "resnet18", "base_width": 8, "stem": "cifar",
        "data": {"source": "digits", "seed": 0}, "optimizer": "adam", "lr": 3e-3,
        "batch_size": 64, "seed": 0}
CONTRACT = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds",
            "samples_per_second", "lr"}


def run(config, restore=None):
    rows, states = [], []
    # state holds live tensors (as state_dict() does): snapshot it at report time
    train(config, lambda m, s: (rows.append(m), states.append(copy.deepcopy(s))), restore=restore)
    return rows, states


def test_reports_contract_metrics_every_epoch_and_learns():
    rows, states = run({**BASE, "max_epochs": 3})
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert CONTRACT <= set(r) and all(math.isfinite(r[k]) for k in CONTRACT)
    assert rows[-1]["trial_finished"] and not rows[0]["trial_finished"]
    assert rows[-1]["val_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert states[-1]["config"]["lr"] == BASE["lr"], "checkpoints carry the full config"


def test_seeded_runs_repeat_and_resume_continues():
    full, states = run({**BASE, "max_epochs": 2})
    again, _ = run({**BASE, "max_epochs": 2})
    assert [r["val_loss"] for r in full] == pytest.approx([r["val_loss"] for r in again])
    resumed, _ = run({**BASE, "max_epochs": 2}, restore=states[0])
    assert [r["epoch"] for r in resumed] == [2]
    assert resumed[0]["val_loss"] == pytest.approx(full[1]["val_loss"], rel=1e-4)


def test_early_stopping_ends_the_trial():
    rows, _ = run({**BASE, "max_epochs": 30, "lr": 0.0, "early_stopping_patience": 2})
    accs = [r["val_accuracy"] for r in rows]
    best_epoch = max(range(len(accs)), key=lambda i: (accs[i], -i)) + 1
    assert len(rows) < 30 and len(rows) - best_epoch == 2  # two epochs without improvement
    assert rows[-1]["early_stopped"] and rows[-1]["trial_finished"]


def test_a_nonfinite_loss_is_a_divergence_stop():
    """NaN from the first step: seen at the end of epoch 1 when no check ran (an epoch
    shorter than check_every, or health off), at the first check when one runs."""
    from hpsearch.trainables.health import Unhealthy

    poisoned = {**BASE, "trainable": "plugins.nan_probe", "poison": True, "max_epochs": 2}
    for health in (False, True):
        with pytest.raises(Unhealthy, match=r"^divergence \(loss nan at step \d+\)$") as e:
            run({**poisoned, "health": health})
        assert e.value.failed and e.value.check == "divergence"
    with pytest.raises(Unhealthy, match=r"^divergence \(loss nan at step 10\)$"):
        run({**poisoned, "batch_size": 8, "health": {**PROBE["health"]}})


@pytest.mark.parametrize("optimizer,scheduler", [("sgd", "plateau"), ("rmsprop", "step"),
                                                 ("adamw", "cosine")])
def test_optimizers_and_schedulers(optimizer, scheduler):
    rows, _ = run({**BASE, "optimizer": optimizer, "lr_scheduler": scheduler, "lr": 0.01,
                   "max_epochs": 2, "step_size": 1, "gamma": 0.5, "init": "xavier"})
    if scheduler == "step":
        assert rows[1]["lr"] == pytest.approx(rows[0]["lr"] * 0.5)


def test_onecycle_warms_up_then_anneals_per_step_and_label_smoothing_raises_the_loss():
    rows, _ = run({**BASE, "optimizer": "sgd", "lr_scheduler": "onecycle", "lr": 0.05,
                   "max_epochs": 3})
    lrs = [r["lr"] for r in rows]  # the learning rate after each epoch's last step
    assert lrs[0] > 0.05 / 25 and lrs[1] < lrs[0] and lrs[2] < 1e-4
    plain, _ = run({**BASE, "max_epochs": 1})
    smoothed, _ = run({**BASE, "max_epochs": 1, "label_smoothing": 0.2})
    # the same steps (same seed) scored against softer targets: a higher training loss
    assert smoothed[0]["train_loss"] > plain[0]["train_loss"]


def test_a_refit_trains_on_train_and_val_without_scoring_validation():
    """search/refit.py's trial: train+val as one training split (preprocessing as the
    trial's), every epoch run, training metrics only, a plateau trial's LRs replayed."""
    data = data_sources.load(BASE["data"])
    refit = {"fit_on": "train+val", "lr_by_epoch": [0.02, 0.02, 0.002]}
    rows, states = run({**BASE, "optimizer": "sgd", "lr_scheduler": "plateau", "max_epochs": 3,
                        "early_stopping_patience": 1, "refit": refit})
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["trial_finished"]
    assert [r["lr"] for r in rows] == pytest.approx([0.02, 0.02, 0.002])
    assert not [k for r in rows for k in r if k.startswith("val_")]
    assert all(not k.startswith("val_") for k in states[-1]["metrics"])
    info = states[-1]["data_info"]
    assert info["fit_on"] == "train+val"
    assert info["fit_size"] == len(data.train[1]) + len(data.val[1])
    assert info["mean"] == data.info["mean"], "normalized as the chosen trial's inputs were"
    assert rows[0]["samples_per_second"] > 0 and rows[-1]["train_accuracy"] > 0.5


def test_gpu_switches_default_on_for_cuda_off_on_cpu_and_are_checked():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # a device object needs no GPU
    assert gpu_options({}, cuda) == {"amp": True, "channels_last": True, "data_on_device": True,
                                     "cuda_graphs": True, "cudnn_benchmark": False}
    plain = {"precision": "fp32", "channels_last": False, "data_on_device": False,
             "cuda_graphs": False}
    assert not any(gpu_options(plain, cuda).values())
    assert gpu_options({"cudnn_benchmark": True}, cuda)["cudnn_benchmark"]
    assert not any(gpu_options({}, cpu).values()), "CPU trains fp32 NCHW from host memory"
    with pytest.raises(ValueError, match="precision must be bf16 or fp32, got 'fp16'"):
        gpu_options({"precision": "fp16"}, cpu)
    # the switches change nothing on CPU: same losses with and without them
    a, _ = run({**BASE, "max_epochs": 1})
    b, _ = run({**BASE, "max_epochs": 1, **plain})
    assert a[0]["val_loss"] == pytest.approx(b[0]["val_loss"])


def test_augment_batch_keeps_shape_and_moves_pixels():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    outs = [augment_batch(x, g) for _ in range(5)]
    assert all(o.shape == x.shape for o in outs)
    assert any(not torch.equal(o, x) for o in outs)


def test_digits_split_is_stratified_disjoint_and_train_normalized():
    d = data_sources.load({"source": "digits", "seed": 3})
    sizes = d.info["sizes"]
    assert sum(sizes.values()) == 1797 and d.info["num_classes"] == 10
    for split in (d.train, d.val, d.test):
        counts = torch.bincount(split[1], minlength=10).float()
        assert counts.min() / counts.max() > 0.7  # every class in every split
    # training split is normalized with its own statistics
    assert d.train[0].mean().abs() < 1e-4 and abs(d.train[0].std() - 1) < 0.05
    # the same seed gives the same split; another seed another
    again = data_sources.load({"source": "digits", "seed": 3})
    other = data_sources.load({"source": "digits", "seed": 4})
    assert torch.equal(again.test[1], d.test[1]) and not torch.equal(other.test[0], d.test[0])


def test_fashion_mnist_real_files(fashion_mnist_ready):
    d = data_sources.load({"source": "fashion-mnist", "per_class": 50, "seed": 0})
    assert d.info["classes"][0] == "T-shirt/top" and d.info["num_classes"] == 10
    assert d.train[0].shape[1:] == (1, 28, 28)
    assert sum(d.info["sizes"].values()) == 500
    assert torch.bincount(d.test[1], minlength=10).min() >= 7


def test_idx_reader_matches_torchvision_and_rejects_a_damaged_file(fashion_mnist_ready, tmp_path):
    # the product reads IDX itself (no torchvision import per trial worker): same arrays
    import numpy as np
    from torchvision.datasets import FashionMNIST

    from hpsearch.trainables.data import fashion_mnist

    x, y, _ = fashion_mnist.load()
    raw = fashion_mnist.fetch(log=lambda *_: None)
    parts = [FashionMNIST(str(raw.parent.parent), train=t, download=False) for t in (True, False)]
    assert np.array_equal(x[:, 0], np.concatenate([p.data.numpy() for p in parts]))
    assert np.array_equal(y, np.concatenate([p.targets.numpy() for p in parts]))
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes((raw / fashion_mnist.FILES[2]).read_bytes()[:1000])
    with pytest.raises(fashion_mnist.DataNotFound, match="truncated"):
        fashion_mnist.read_idx(cut)
    (tmp_path / "text").write_text("not idx")
    with pytest.raises(fashion_mnist.DataNotFound, match="not an IDX file"):
        fashion_mnist.read_idx(tmp_path / "text")


def test_imagefolder_source(tmp_path):
    from PIL import Image

    for c, colour in (("cars", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.new("RGB", (40, 30), tuple(max(0, v - i) for v in colour)).save(
                tmp_path / c / f"{i}.png")
    d = data_sources.load({"source": f"imagefolder:{tmp_path}", "image_size": 16,
                           "val_fraction": 0.2, "test_fraction": 0.2})
    assert d.info["classes"] == ["cars", "dogs"] and d.train[0].shape[1:] == (3, 16, 16)
    assert sum(d.info["sizes"].values()) == 20


def test_every_training_batch_has_one_shape_and_worker_caches_are_reused():
    from hpsearch.trainables import step as step_module
    from hpsearch.trainables.loop import model_facts
    from hpsearch.trainables.step import TrainStep, batch_plan, resident

    assert batch_plan(1257, 64) == (64, 19)  # ragged last batch dropped: one shape, one graph
    assert batch_plan(40, 64) == (40, 1)     # a split smaller than a batch: one step of all
    shapes = []
    original = TrainStep.__call__

    def spy(self, xb, yb):
        shapes.append(tuple(xb.shape))
        return original(self, xb, yb)

    TrainStep.__call__ = spy
    try:
        rows, _ = run({**BASE, "max_epochs": 1, "batch_size": 100})
    finally:
        TrainStep.__call__ = original
    assert len(set(shapes)) == 1 and shapes[0][0] == 100
    train_n = data_sources.load(BASE["data"]).info["sizes"]["train"]
    assert len(shapes) == train_n // 100
    assert rows[0]["samples_per_second"] > 0 and rows[0]["setup_seconds"] >= 0
    assert rows[0]["cuda_graphs"] == 0.0, "no CUDA graphs on CPU"
    # the device copy of the training split is made once per worker, not once per trial
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
    first = resident(x, y, torch.device("cpu"))
    assert resident(x, y, torch.device("cpu")) is first
    assert resident(x.clone(), y, torch.device("cpu")) is not first
    assert step_module._Resident.entry[0] is not x, "one entry: the old copy is freed"
    # model facts: once per architecture; a dropout rate is not a new architecture
    from hpsearch.trainables.loop import build_model
    info = data_sources.load(BASE["data"]).info
    a = build_model({**BASE, "dropout": 0.1}, info)
    b = build_model({**BASE, "dropout": 0.4}, info)
    example = data_sources.load(BASE["data"]).train[0]
    facts = model_facts(a, example)
    calls = []
    import hpsearch.trainables.loop as loop_module
    summary = loop_module.model_summary
    loop_module.model_summary = lambda *a_, **k: calls.append(1) or summary(*a_, **k)
    try:
        assert model_facts(b, example) == facts and not calls
        wider = build_model({**BASE, "base_width": 16}, info)
        assert model_facts(wider, example)["num_params"] > facts["num_params"] and calls
    finally:
        loop_module.model_summary = summary


# ---------------------------------------------------------------- training-health stops

PROBE = {"trainable": "plugins.health_probe", "data": {"source": "digits", "seed": 0},
         "optimizer": "sgd", "lr": 0.05, "batch_size": 8, "seed": 0, "max_epochs": 3,
         "health": {"divergence": 10.0, "chance_after": 0.5, "grad_ratio": 0.0, "check_every": 10}}


def test_a_diverging_trial_is_stopped_within_its_first_epoch():
    from hpsearch.trainables.health import Unhealthy

    rows = []
    with pytest.raises(Unhealthy, match=r"divergence \(loss .* at epoch 1, step \d+, above 10 x") as e:
        train({**PROBE, "mode": "diverge"}, lambda m, s: rows.append(m))
    assert e.value.failed and rows == [], "stopped inside epoch 1, before any report"


def test_a_trial_stuck_at_chance_is_pruned_after_half_its_first_epoch():
    rows, _ = run({**PROBE, "mode": "chance"})
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    assert rows[0]["unhealthy"].startswith("accuracy at chance (")
    assert "(chance 0.100) at epoch 1, step 100 of 157" in rows[0]["unhealthy"]
    assert rows[0]["trial_finished"] is False, "pruned, so Optuna is told PRUNED"
    assert 0 <= rows[0]["val_accuracy"] < 0.2, "its validation metrics, measured at the stop"
    # health: false turns the checks off: the same trial trains its three epochs
    rows, _ = run({**PROBE, "mode": "chance", "health": False})
    assert len(rows) == 3 and "unhealthy" not in rows[-1]


def test_health_checks_leave_healthy_trials_alone():
    """Checks every 10 steps over 157 steps an epoch: a learning net (the probe's
    linear model, and a small ResNet-18 as the shipped specs train it) is never stopped."""
    rows, _ = run({**PROBE, "mode": "healthy", "max_epochs": 2})
    assert len(rows) == 2 and rows[-1]["trial_finished"] and "unhealthy" not in rows[-1]
    rows, _ = run({**BASE, "batch_size": 8, "lr": 1e-3, "max_epochs": 1, "health": PROBE["health"]})
    assert len(rows) == 1 and "unhealthy" not in rows[0] and rows[0]["trial_finished"]
