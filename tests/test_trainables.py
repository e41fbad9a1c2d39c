"""Contract over every registered trainable and every spec in spaces/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

import trainables
from search.space import sample_configs
from search.spec import load_spec
from trainables.loop import build_model, init_weights, make_optimizer
from trainables.resnet import resnet
from trainables.vgg import vgg

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "spaces").glob("*.yaml"))
SMALL = {"resnet18": {"base_width": 8}, "vgg16": {"width_mult": 0.125, "fc_width": 32}}


def data_info(channels=1, size=28, classes=10):
    return {"in_channels": channels, "image_size": size, "num_classes": classes}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(trainables.REGISTRY))
def test_trainable_contract(name):
    info = trainables.REGISTRY[name]
    assert (ROOT / info.default_spec).is_file(), f"{name}: default spec missing"
    torch.manual_seed(0)
    config = {"trainable": name, **SMALL.get(name, {})}
    model = build_model(config, data_info())
    init_weights(model, "kaiming")
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    # one optimizer step changes the weights and keeps them finite
    opt = make_optimizer({"optimizer": "sgd", "lr": 0.1}, model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # checkpoint round trip: weights_only load into a fresh model gives equal outputs
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    clone = build_model(config, data_info())
    clone.load_state_dict(torch.load(buf, weights_only=True))
    model.eval(), clone.eval()
    assert torch.allclose(model(x), clone(x))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_spec_draws_build_valid_configs(path):
    """20 seeded draws per spec: conditionals hold, every config builds a model."""
    spec = load_spec(path)
    info = trainables.get(spec.trainable)
    draws = sample_configs(spec, 20, seed=0)
    assert draws == sample_configs(spec, 20, seed=0), "draws must be reproducible"
    for cfg in draws:
        for p in spec.space:
            holds = all(cfg.get(parent) in allowed for parent, allowed in p.when)
            assert (p.name in cfg) == holds, f"{p.name}: conditional violated in {cfg}"
            if p.name in cfg and p.kind != "choice":
                assert p.args[0] <= cfg[p.name] <= p.args[1]
        cfg = {**cfg, **SMALL.get(spec.trainable, {})}
        model = info.load().build(cfg, data_info())
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_paper_parameter_counts():
    # VGG-16 configuration C: the paper's Table 2 rounds it to 134 million
    assert n_params(vgg("C", adapt_pools=False)) == 133_638_952
    assert n_params(vgg("D")) == 138_357_544  # torchvision's vgg16
    assert n_params(resnet("resnet18")) == 11_689_512  # torchvision's resnet18
    assert n_params(resnet("resnext50_32x4d")) == 25_028_904


def test_vgg_adapts_pools_to_small_inputs():
    model = vgg("B", in_channels=1, image_size=32, num_classes=10, fc_width=64)  # VGG-13
    pools = sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features)
    assert pools == 5  # 32 -> 1 keeps all five
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    model = vgg("C", in_channels=1, image_size=28, num_classes=10, fc_width=64)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features) == 4  # 28->14->7->3->1
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
               for m in model.features) == 3


def test_unknown_module_path_trainable_is_rejected():
    with pytest.raises(KeyError, match="cannot import trainable module"):
        trainables.get("nowhere.model")
    assert trainables.get("plugins.nan_probe").task == "classification"
