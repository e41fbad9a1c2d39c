"""Contract over every registered trainable and every spec in spaces/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from hpsearch import trainables
from hpsearch.search.space import sample_configs
from hpsearch.search.spec import RESERVED, load_spec
from hpsearch.trainables.constraints import GIVEN, Derived, File
from hpsearch.trainables.loop import build_model, init_weights, make_optimizer, train
from hpsearch.trainables.resnet import resnet
from hpsearch.trainables.vgg import vgg

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "spaces").glob("*.yaml"))
# small widths keep the contract fast; the architecture (depth, blocks) is unchanged
SMALL = {"resnet18": {"base_width": 8}, "resnext": {"base_width": 8},
         "vgg16": {"width_mult": 0.125, "fc_width": 32},
         "vgg13": {"width_mult": 0.125, "fc_width": 32},
         "vgg_deep": {"width_mult": 0.125, "fc_width": 32},
         "metric_resnet18": {"base_width": 8}, "small_vgg": {"width": 8},
         "cnn3": {"width": 8, "hidden": 32}, "transfer": {"backbone": "shufflenet_v2"}}


def data_info(channels=1, size=28, classes=10):
    return {"in_channels": channels, "image_size": size, "num_classes": classes}


def example(info: trainables.TrainableInfo, size: int = 28):
    """(data_info, inputs, targets, output shape) of the trainable's data kind."""
    if info.data == "series":  # 14 past steps of 5 columns -> the next 2 values
        return ({"input_size": 5, "horizon": 2}, torch.randn(4, 14, 5), torch.randn(4, 2), (4, 2))
    y = torch.tensor([0, 1, 0, 1])
    if info.name == "text_baseline":  # features of 30 n-grams -> 2 classes
        return {"n_features": 30, "num_classes": 2}, torch.rand(4, 30), y, (4, 2)
    if info.data == "text":  # token ids, 0 = padding at the end
        x = torch.randint(2, 60, (4, 12))
        x[1, 5:] = 0
        x[3, 9:] = 0
        return {"vocab_size": 60, "num_classes": 2}, x, y, (4, 2)
    return data_info(size=size), torch.randn(4, 1, size, size), y, (4, 10)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(trainables.REGISTRY))
def test_trainable_contract(name, torch_hub_weights):
    info = trainables.REGISTRY[name]
    module = info.load()
    assert (ROOT / info.default_spec).is_file(), f"{name}: default spec missing"
    torch.manual_seed(0)
    config = {"trainable": name, **SMALL.get(name, {})}
    dinfo, x, y, shape = example(info)
    model = build_model(config, dinfo)
    if not getattr(module, "KEEP_INIT", False):
        init_weights(model, "kaiming")
    out = model(x)
    assert torch.isfinite(out).all()
    if hasattr(module, "fit"):  # fitted by scikit-learn, not SGD: buffers round-trip
        assert out.shape == shape and not list(model.parameters())
        clone = build_model(config, dinfo)
        clone.load_state_dict(torch.load(_saved(model), weights_only=True))
        assert torch.equal(model(x), clone(x))
        return
    if hasattr(module, "training_loss"):  # embeddings, scored by the module's own loss
        assert out.shape[0] == 4
        loss = module.training_loss(model, out, y, config)
    elif info.task == "regression":
        assert out.shape == shape
        loss = torch.nn.functional.mse_loss(out, y)
    else:
        assert out.shape == shape
        loss = torch.nn.functional.cross_entropy(out, y)
    # one optimizer step changes the weights and keeps them finite
    opt = make_optimizer({"optimizer": "sgd", "lr": 0.1},
                         [p for p in model.parameters() if p.requires_grad])
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # checkpoint round trip: weights_only load into a fresh model gives equal outputs
    clone = build_model(config, dinfo)
    clone.load_state_dict(torch.load(_saved(model), weights_only=True))
    model.eval(), clone.eval()
    assert torch.allclose(model(x), clone(x))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_spec_draws_build_valid_configs(path, torch_hub_weights):
    """20 seeded draws per spec: conditionals hold, every config builds a model."""
    spec = load_spec(path)
    draws = sample_configs(spec, 20, seed=0)
    assert draws == sample_configs(spec, 20, seed=0), "draws must be reproducible"
    for cfg in draws:
        for p in spec.space:
            holds = all(cfg.get(parent) in allowed for parent, allowed in p.when)
            assert (p.name in cfg) == holds, f"{p.name}: conditional violated in {cfg}"
            if p.name in cfg and p.kind != "choice":
                assert p.args[0] <= cfg[p.name] <= p.args[1]
        if spec.trainable != "transfer":
            cfg = {**cfg, **SMALL.get(spec.trainable, {})}
        dinfo, x, _, shape = example(trainables.get(spec.trainable),
                                     size=spec.data.get("image_size", 28))
        model = build_model(cfg, dinfo)
        model.eval()
        out = model(x[:2])
        assert out.shape[0] == 2 and torch.isfinite(out).all()


def _saved(model) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    return buf


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


def test_unknown_module_path_trainable_is_rejected(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="cannot import trainable module"):
        trainables.get("nowhere.model")
    probe = trainables.get("plugins.nan_probe")
    assert probe.task == "classification" and [p.name for p in probe.model_params] == ["poison"]
    # a module of one's own declares its parameters like a registered one
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "model.py").write_text(
        "TASK = 'classification'\n\ndef build(config, data_info):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyError, match=r"must define build\(config, data_info\), TASK in .* and "
                                       r"PARAMS, a tuple of trainables.constraints.Param"):
        trainables.get("userpkg.model")


def test_vgg_deep_tracks_gradient_norms_of_every_conv():
    from hpsearch.trainables.loop import train

    rows = []
    train({"trainable": "vgg_deep", "width_mult": 0.125, "fc_width": 32, "optimizer": "sgd",
           "momentum": 0.0, "lr": 0.01, "max_epochs": 2, "track_grad_norms": True,
           "grad_norm_every": 5, "data": {"source": "digits", "image_size": 16}},
          lambda m, s: rows.append(m))
    for r in rows:
        norms = [r[f"grad_norm/conv{i:02d}"] for i in range(1, 18)]
        assert len(norms) == 17 and all(v >= 0 and v == v for v in norms)
        assert "grad_norm/conv18" not in r
        assert r["grad_norm_ratio_first_last"] == pytest.approx(norms[0] / norms[-1])
    assert rows[0]["num_params"] > 0 and rows[0]["macs_per_sample"] > 0


def test_vgg_deep_batch_norm_builds_the_twin_and_is_off_by_default():
    def batch_norms(**config):
        model = build_model({"trainable": "vgg_deep", **SMALL["vgg_deep"], **config},
                            data_info(size=16))
        return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    assert trainables.REGISTRY["vgg_deep"].params["batch_norm"].default is False
    assert batch_norms() == [] and batch_norms(batch_norm=False) == []
    twin = batch_norms(batch_norm=True)
    assert len(twin) == 17  # one after every conv
    plain = build_model({"trainable": "vgg_deep", **SMALL["vgg_deep"]}, data_info(size=16))
    convs = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [b.num_features for b in twin] == [c.out_channels for c in convs]


def test_transfer_freezes_the_backbone_and_only_the_head_learns(torch_hub_weights):
    config = {"trainable": "transfer", "backbone": "resnet18", "finetune": "freeze_backbone"}
    model = build_model(config, data_info(channels=1, size=32, classes=3))
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items() if "fc." not in k}
    opt = make_optimizer({"optimizer": "sgd", "lr": 0.5, "momentum": 0.0},
                         [p for p in model.parameters() if p.requires_grad])
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)),
                                             torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items()), "a frozen weight moved"
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "backbone.fc.weight", "backbone.fc.bias"]
    # last_k: the last stage trains too; all: everything trains
    last = build_model({**config, "finetune": "last_k", "last_k": 1},
                       data_info(channels=1, size=32, classes=3))
    trainable = {n.split(".")[1] for n, p in last.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}


def test_transfer_without_weights_names_the_file(tmp_path, monkeypatch):
    from hpsearch.trainables.transfer import WeightsNotFound

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound) as e:
        build_model({"trainable": "transfer", "backbone": "mobilenet_v3"}, data_info())
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "mobilenet_v3_small-") in msg
    assert "download https://" in msg and "\n" not in msg


# ---------------------------------------------------------------- declared parameters


class RecordingConfig(dict):
    """A trial config that records every key the code reads, and the default it
    passes to ``get``. Reading it whole (iterating, copying, ``{**config}``) raises:
    a copy would hide the reads made on it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: set[str] = set()
        self.defaults: dict[str, list] = {}

    def __getitem__(self, key):
        self.reads.add(key)
        return super().__getitem__(key)

    def get(self, key, *default):
        self.reads.add(key)
        if default:
            self.defaults.setdefault(key, []).append(default[0])
        return super().get(key, *default)

    def __contains__(self, key):
        self.reads.add(key)
        return super().__contains__(key)

    def _whole(self, *args, **kwargs):
        raise TypeError("read the trial config key by key: a copy hides the reads made on it")

    __iter__ = keys = items = values = copy = _whole


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory, torch_hub_weights):
    """One tiny data block per data kind, and a file for each file-valued parameter."""
    import datetime
    import math

    root = tmp_path_factory.mktemp("tiny")
    start = datetime.date(2020, 1, 1)
    rows = ["date,y,x"] + [f"{start + datetime.timedelta(days=d)},{math.sin(d / 5):.4f},"
                           f"{math.cos(d / 7):.4f}" for d in range(120)]
    (root / "series.csv").write_text("\n".join(rows) + "\n")
    words = {0: "bland stale awful dull", 1: "great tasty lovely fresh"}
    texts = ["text,label"] + [f"{words[k]} {words[k].split()[i % 4]} item {i},{k}"
                              for i in range(30) for k in (0, 1)]
    (root / "texts.csv").write_text("\n".join(texts) + "\n")
    (root / "vectors.txt").write_text("great 1 2 3 4\nbland 4 3 2 1\n")
    backbone_file = torch_hub_weights / "hub" / "checkpoints"
    return {
        "data": {"image": {"source": "digits", "per_class": 10, "image_size": 16},
                 "series": {"source": f"csv:{root / 'series.csv'}", "target": "y",
                            "time_column": "date"},
                 "text": {"source": f"csv:{root / 'texts.csv'}", "text": "text",
                          "label": "label"}},
        "files": {"embeddings": str(root / "vectors.txt"),
                  "weights": str(next(backbone_file.glob("shufflenetv2*")))},
    }


def variants(info: trainables.TrainableInfo, files: dict) -> list[dict]:
    """The defaults, plus configs under which every conditional (``when``) parameter is
    read: each condition not met by the defaults joins the first variant it fits."""
    params, out = info.params, [{}]
    for p in params.values():
        for parent, values in p.when:
            value = files[parent] if values[0] is GIVEN else values[0]
            if value == params[parent].default:
                continue
            fits = next((v for v in out[1:] if v.get(parent, value) == value), None)
            if fits is None:
                out.append(fits := {})
            fits[parent] = value
    return out


@pytest.mark.parametrize("name", sorted(trainables.REGISTRY))
def test_declared_parameters_are_exactly_the_ones_read(name, tiny_sources):
    """One epoch of the real loop (or fit) per variant, on a config that records its
    reads: every read key is declared, every declared key is read, with its default."""
    info = trainables.REGISTRY[name]
    declared = info.params
    reads, defaults = set(), {}
    for variant in variants(info, tiny_sources["files"]):
        config = RecordingConfig({"trainable": name, "data": tiny_sources["data"][info.data],
                                  "max_epochs": 1, "seed": 0, **SMALL.get(name, {}), **variant})
        train(config, lambda metrics, state: None)
        reads |= config.reads
        for key, seen in config.defaults.items():
            defaults.setdefault(key, []).extend(seen)
    undeclared = reads - set(declared) - RESERVED
    assert not undeclared, f"{name} reads {sorted(undeclared)} but does not declare them"
    unread = set(declared) - reads
    if not torch.cuda.is_available():  # GPU-only switches are not read on CPU
        unread -= {p.name for p in declared.values() if p.gpu}
    assert not unread, f"{name} declares {sorted(unread)} but never reads them"
    for key, seen in defaults.items():
        if key in declared and not isinstance(declared[key].default, Derived):
            assert set(seen) == {declared[key].default}, \
                f"{name}: `{key}` defaults to {seen} in the code, {declared[key].default!r} declared"


@pytest.mark.parametrize("name", sorted(trainables.REGISTRY))
def test_declarations_are_consistent(name):
    """Defaults lie in their domains; `when` names a declared parent and its values; the
    registry's flags say what the module does."""
    info = trainables.REGISTRY[name]
    params = info.params
    for p in params.values():
        if not isinstance(p.default, Derived):
            assert p.accepts(p.default) or any(isinstance(c, File) for c in p.domain), p
        for parent, values in p.when:
            assert parent in params, f"{p.name}: `when` names undeclared {parent!r}"
            assert all(v is GIVEN or params[parent].accepts(v) for v in values), p
    module = info.load()
    assert info.fits == hasattr(module, "fit")
    assert info.keeps_init == getattr(module, "KEEP_INIT", False)
    assert info.preflight == hasattr(module, "preflight")
    assert not info.fits or not info.loop_params, "a fitted model takes no loop parameters"


def _options(name: str, param: str) -> set:
    return {v for c in trainables.REGISTRY[name].params[param].domain for v in getattr(c, "values", ())}


def test_declared_options_match_the_modules_tables():
    from hpsearch.trainables import cnn3, forecaster, resnet, sentiment, small_vgg, transfer
    from hpsearch.trainables import vgg as vgg_module
    from hpsearch.trainables.data import text

    assert _options("resnet18", "arch") == _options("resnext", "arch") == set(resnet.ARCHS)
    assert _options("vgg16", "vgg_config") == set(vgg_module.CONFIGS) - {"deep"}
    assert _options("small_vgg", "activation") == set(small_vgg.ACTIVATIONS)
    assert _options("cnn3", "variant") == set(cnn3.VARIANTS)
    assert _options("transfer", "backbone") == set(transfer.BACKBONES)
    assert _options("forecaster", "cell") == _options("sentiment", "cell") == set(sentiment.CELLS)
    assert set(forecaster.CELLS) == set(sentiment.CELLS)
    assert _options("sentiment", "design") == set(sentiment.DESIGNS)
    assert _options("sentiment", "tokenizer") == set(text.TOKENIZERS)


def test_every_declared_loop_option_is_understood():
    from hpsearch.trainables.loop import gpu_options, make_scheduler, regression_loss

    model = torch.nn.Linear(3, 2)
    for optimizer in _options("resnet18", "optimizer"):
        opt = make_optimizer({"optimizer": optimizer}, model.parameters())
        for scheduler in _options("resnet18", "lr_scheduler"):
            make_scheduler({"lr_scheduler": scheduler}, opt, 3)
    for scheme in _options("resnet18", "init"):
        init_weights(model, scheme)
    for precision in _options("resnet18", "precision"):
        gpu_options({"precision": precision}, torch.device("cpu"))
    for loss in _options("forecaster", "loss"):
        regression_loss(torch.zeros(2), torch.ones(2), loss)
