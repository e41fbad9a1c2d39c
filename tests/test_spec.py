"""Spec parsing and the bad-input table: one line, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpsearch import trainables
from hpsearch.search.cli import main
from hpsearch.search.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent

GOOD = {
    "name": "t",
    "trainable": "resnet18",
    "data": {"source": "digits"},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {"samples": 4, "seed": 1},
    "scheduler": {"max_epochs": 3},
    "space": {"optimizer": {"choice": ["sgd", "adam"]},
              "lr": {"loguniform": [1e-4, 1e-1]},
              "momentum": {"uniform": [0.8, 0.99], "when": {"optimizer": "sgd"}}},
}


def with_changes(**changes) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = doc
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is _DELETE:
            node.pop(leaf)
        else:
            node[leaf] = value
    return doc


_DELETE = object()


def test_good_spec_parses_with_defaults():
    spec = parse_spec(GOOD)
    assert spec.samples == 4 and spec.seed == 1 and spec.max_epochs == 3
    assert spec.scheduler == "asha" and spec.algorithm == "tpe"
    assert [p.name for p in spec.space] == ["optimizer", "lr", "momentum"]
    assert spec.space[2].when == (("optimizer", ("sgd",)),)
    assert spec.base_config()["data"] == {"source": "digits"}


def test_overrides_apply_before_validation():
    spec = parse_spec(GOOD, overrides={"search.samples": (9, "--samples"),
                                       "data.source": ("fashion-mnist", "--data")})
    assert spec.samples == 9 and spec.data["source"] == "fashion-mnist"
    with pytest.raises(SpecError, match=r"`search.samples` \(from --samples\): must be >= 1"):
        parse_spec(GOOD, overrides={"search.samples": (0, "--samples")})


def test_max_epochs_flag_below_grace_period_clamps_it():
    doc = with_changes(scheduler={"max_epochs": 10, "grace_period": 3})
    spec = parse_spec(doc, overrides={"scheduler.max_epochs": (1, "--max-epochs")})
    assert (spec.max_epochs, spec.grace_period) == (1, 1)
    with pytest.raises(SpecError, match="grace_period <= max_epochs"):  # in the file: an error
        parse_spec(with_changes(scheduler={"max_epochs": 1, "grace_period": 3}))


def test_search_levers_default_and_reach_the_sampler_and_scheduler(tmp_path):
    from hpsearch.results.storage import Storage
    from hpsearch.search.engine import build_tuner

    spec = parse_spec(GOOD)  # 4 samples: TPE's start-up is min(10, max(2, 4 // 3)) = 2
    assert (spec.startup_trials, spec.constant_liar, spec.brackets) == (2, True, 1)
    spec = parse_spec(with_changes(search={"samples": 4, "startup_trials": 3,
                                           "constant_liar": False},
                                   scheduler={"max_epochs": 9, "brackets": 2}))
    tuner = build_tuner(spec, Storage(tmp_path), callbacks=[])._local_tuner
    sampler = tuner._tune_config.search_alg._sampler
    assert (sampler._n_startup_trials, sampler._constant_liar) == (3, False)
    assert len(tuner._tune_config.scheduler._brackets) == 2


@pytest.mark.parametrize("value, seconds", [("30m", 1800), ("2h", 7200), ("90s", 90),
                                            ("1.5h", 5400), (45, 45), ("45", 45), (None, None)])
def test_a_time_budget_reads_as_people_write_it(value, seconds, tmp_path):
    """`search.time_budget`, `--time-budget` and `time_budget=` share one parser; the
    spec logs the value as written."""
    from hpsearch import load_spec as api_load_spec

    spec = parse_spec({**GOOD, "search": {"time_budget": value}}, source="t.yaml")
    assert spec.time_budget == seconds and spec.raw["search"]["time_budget"] == value
    assert api_load_spec(_write(tmp_path, GOOD), time_budget=value).time_budget == seconds


def test_smoke_shrinks_any_spec():
    spec = parse_spec(GOOD, smoke=True)
    assert (spec.samples, spec.max_epochs, spec.grace_period) == (2, 1, 1)
    assert spec.data["per_class"] <= 12 and spec.name.endswith("-smoke")


def test_cover_points_try_each_option_once_with_its_conditions():
    """`search.cover`: several covered parameters share trials (the longest list of
    options sets their number); a covered child of a `when` also fixes its parent;
    `--samples` below that is bad input naming the flag; `--smoke` drops the cover."""
    space = {"optimizer": {"choice": ["sgd", "adam", "adamw"]},
             "nesterov": {"choice": [False, True], "when": {"optimizer": "sgd"}},
             "batch_size": {"choice": [32, 64]}, "lr": {"loguniform": [1e-4, 1e-1]}}
    spec = parse_spec(with_changes(space=space, search={"samples": 4, "cover": ["batch_size",
                                                                             "optimizer"]}))
    assert spec.cover == ("batch_size", "optimizer")
    assert spec.cover_points() == [{"optimizer": "sgd", "batch_size": 32},
                                   {"optimizer": "adam", "batch_size": 64},
                                   {"optimizer": "adamw"}]
    spec = parse_spec(with_changes(space=space, search={"samples": 4,
                                                        "cover": ["optimizer", "nesterov"]}))
    assert spec.cover_points() == [{"optimizer": "sgd", "nesterov": False}, {"optimizer": "adam"},
                                   {"optimizer": "adamw"}, {"optimizer": "sgd", "nesterov": True}]
    spec = parse_spec(with_changes(space=space, search={"cover": ["nesterov"]}))
    assert spec.cover_points() == [{"optimizer": "sgd", "nesterov": False},
                                   {"optimizer": "sgd", "nesterov": True}]
    # what the search runs: the points first, the rest of each config sampled
    from hpsearch.search.space import sample_configs

    draws = sample_configs(spec, 4)
    assert [(d["optimizer"], d["nesterov"]) for d in draws[:2]] == [("sgd", False), ("sgd", True)]
    assert all(1e-4 <= d["lr"] <= 1e-1 for d in draws)
    with pytest.raises(SpecError, match=r"takes 4 trials, more than `samples` \(3, from "
                                        r"--samples\)"):
        parse_spec(with_changes(space=space, search={"cover": ["optimizer", "nesterov"]}),
                   overrides={"search.samples": (3, "--samples")})
    smoke = parse_spec(with_changes(space=space, search={"cover": ["optimizer"]}), smoke=True)
    assert smoke.cover == () and smoke.raw["search"]["cover"] == []


def test_children_are_sorted_after_their_parents():
    doc = with_changes(space={"momentum": {"uniform": [0.8, 0.9], "when": {"optimizer": "sgd"}},
                              "optimizer": {"choice": ["sgd", "adam"]}})
    assert [p.name for p in parse_spec(doc).space] == ["optimizer", "momentum"]


def test_fitted_trainable_takes_no_loop_parameter():
    doc = with_changes(trainable="text_baseline", data={"source": "fine-foods"},
                       space={"alpha": {"loguniform": [0.01, 1.0]}}, fixed={"lr": 0.1})
    with pytest.raises(SpecError, match="`fixed.lr`: trainable 'text_baseline' does not take "
                                        "`lr`: it is fitted by its module, not by the shared"):
        parse_spec(doc, source="t.yaml")
    doc = with_changes(trainable="transfer", fixed={"init": "xavier"})
    with pytest.raises(SpecError, match="keeps its pretrained weights, so the shared loop's "
                                        "`init` does not apply"):
        parse_spec(doc, source="t.yaml")


def test_validating_a_spec_imports_no_torch():
    code = ("import sys; from hpsearch.search.spec import load_spec; "
            "[load_spec(f) for f in sys.argv[1:]]; print('torch' in sys.modules)")
    files = [str(f) for f in sorted((ROOT / "spaces").glob("*.yaml"))]
    r = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_every_shipped_spec_is_valid():
    files = sorted((ROOT / "spaces").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        spec = load_spec(f)
        assert spec.name and spec.space


BAD = [
    # (case, doc changes or raw text, substring the one line must contain)
    ("unknown top-level key", {"colour": "red"}, "`colour`: unknown top-level key"),
    ("unknown trainable", {"trainable": "vgg99"},
     "unknown trainable 'vgg99'; did you mean 'vgg16'? registered: autoencoder, cnn3"),
    ("unknown space kind", {"space": {"lr": {"gaussian": [0, 1]}}}, "unknown space kind 'gaussian'"),
    ("low > high", {"space": {"lr": {"uniform": [0.5, 0.1]}}}, "`low <= high` must hold"),
    ("loguniform low <= 0", {"space": {"lr": {"loguniform": [0.0, 0.1]}}}, "log scale needs `low > 0`"),
    ("empty choice", {"space": {"optimizer": {"choice": []}}}, "non-empty list of options"),
    ("when unknown parameter",
     {"space": {"momentum": {"uniform": [0, 1], "when": {"optimizer": "sgd"}}}},
     "names unknown parameter 'optimizer'"),
    ("metric never reported", {"objective": {"metric": "val_bleu", "mode": "max"}},
     "'val_bleu' is never reported by trainable 'resnet18'"),
    ("objective the wrong way", {"objective": {"metric": "val_loss", "mode": "max"}},
     "`objective.mode`: val_loss is better when lower, so mode max would search for the worst "
     "trials; use mode: min"),
    ("unknown data source", {"data": {"source": "cifar-100"}}, "unknown data source 'cifar-100'"),
    ("samples 0", {"search": {"samples": 0}}, "`search.samples`: must be >= 1"),
    ("negative resources", {"resources": {"cpus_per_trial": -1}}, "`resources.cpus_per_trial`: must be > 0"),
    ("negative gpus", {"resources": {"gpus_per_trial": -0.5}}, "`resources.gpus_per_trial`: must be >= 0"),
    ("wrong type", {"search": {"samples": "many"}}, "must be an integer, got 'many'"),
    ("unknown nested key", {"scheduler": {"max_epoch": 3}}, "`scheduler.max_epoch`: unknown key"),
    ("grace above max", {"scheduler": {"max_epochs": 2, "grace_period": 5}}, "`grace_period <= max_epochs`"),
    # every key of space and fixed is a parameter the trainable declares, in its domain
    ("space key typo", {"space": {"dropuot": {"uniform": [0.1, 0.5]}}},
     "`space.dropuot`: trainable 'resnet18' does not take `dropuot`: did you mean 'dropout'?"),
    ("fixed key typo", {"fixed": {"stme": "cifar"}},
     "`fixed.stme`: trainable 'resnet18' does not take `stme`: did you mean 'stem'?"),
    ("key nothing reads", {"fixed": {"colour": "red"}},
     "`fixed.colour`: trainable 'resnet18' does not take `colour`: no such parameter "
     "(`hpsearch trainables resnet18` lists its parameters)"),
    ("loop key outside its scope", {"fixed": {"loss": "huber"}},
     "`fixed.loss`: trainable 'resnet18' does not take `loss`: the shared loop reads `loss` "
     "for regression only"),
    ("choice option out of domain", {"space": {"batch_size": {"choice": [0, 32]}}},
     "`space.batch_size.choice`: must be an int in [2, inf), got 0"),
    ("range bound out of domain", {"space": {"dropout": {"uniform": [0.2, 1.5]}}},
     "`space.dropout.uniform`: must be a float in [0, 1), got 1.5"),
    ("fixed value out of domain", {"fixed": {"lr": -0.1}},
     "`fixed.lr`: must be a float in (0, inf), got -0.1"),
    ("fixed value of the wrong type", {"fixed": {"augment": "yes"}},
     "`fixed.augment`: must be true or false, got 'yes'"),
    ("option typo", {"space": {"optimizer": {"choice": ["sgd", "adamm"]}}},
     "`space.optimizer.choice`: must be one of ['sgd', 'adam', 'adamw', 'rmsprop'], got "
     "'adamm'; did you mean 'adam'?"),
    ("continuous range for an int", {"space": {"batch_size": {"uniform": [16, 64]}}},
     "`space.batch_size.uniform`: `batch_size` takes int values ([2, inf)), not a uniform "
     "range; use {int: [low, high]}"),
    ("recheck top above samples", {"search": {"samples": 2, "recheck": {"top": 3, "seeds": 2}}},
     "`search.recheck.top`: `top <= samples` must hold, but got (top=3, samples=2)"),
    ("recheck one seed", {"search": {"recheck": {"top": 2, "seeds": 1}}},
     "`search.recheck.seeds`: must be >= 2, got 1"),
    # a model parameter one trainable declares and another does not take
    ("batch_norm not a bool", {"trainable": "vgg_deep", "fixed": {"batch_norm": "yes"}},
     "`fixed.batch_norm`: must be true or false, got 'yes'"),
    ("batch_norm option not a bool",
     {"trainable": "vgg_deep", "space": {"batch_norm": {"choice": [False, "on"]}}},
     "`space.batch_norm.choice`: must be true or false, got 'on'"),
    ("batch_norm typo", {"trainable": "vgg_deep", "fixed": {"batchnorm": True}},
     "`fixed.batchnorm`: trainable 'vgg_deep' does not take `batchnorm`: did you mean "
     "'batch_norm'?"),
    ("batch_norm on a model without the switch", {"fixed": {"batch_norm": False}},
     "`fixed.batch_norm`: trainable 'resnet18' does not take `batch_norm`: it is a parameter "
     "of vgg13, vgg16, vgg_deep, not of resnet18"),
    # the training-health checks (trainables/health.py)
    ("health unknown check", {"health": {"divergance": 5}}, "`health.divergance`: unknown key"),
    ("health ratio of 1 or less", {"health": {"divergence": 0.5}},
     "`health.divergence`: must be 0 (off) or > 1, got 0.5"),
    ("health fraction above 1", {"health": {"chance_after": 2}},
     "`health.chance_after`: is a fraction of the first epoch: must be in [0, 1]"),
    ("health not a mapping", {"health": "on"}, "`health`: must be a mapping with keys"),
    ("health is the engine's", {"fixed": {"health": False}}, "`fixed.health`: is set by the engine"),
    # the search-efficiency levers (benchmarks/search_efficiency.py)
    ("startup trials 0", {"search": {"startup_trials": 0}}, "`search.startup_trials`: must be >= 1"),
    ("constant liar not a bool", {"search": {"constant_liar": "yes"}},
     "`search.constant_liar`: must be true or false, got 'yes'"),
    ("brackets 0", {"scheduler": {"brackets": 0}}, "`scheduler.brackets`: must be >= 1, got 0"),
    # search.cover: every option of a choice parameter tried first
    ("cover unknown parameter", {"search": {"cover": ["batch_size"]}},
     "`search.cover`: 'batch_size' is not in `space`; only a choice parameter of `space` can "
     "be covered: ['optimizer']"),
    ("cover a range", {"search": {"cover": ["lr"]}},
     "`search.cover`: 'lr' is a loguniform range, not a choice"),
    ("cover more than samples", {"search": {"samples": 1, "cover": ["optimizer"]}},
     "`search.cover`: trying every option of ['optimizer'] takes 2 trials, more than "
     "`samples` (1); raise `samples` or cover fewer parameters"),
    ("cover not a list", {"search": {"cover": "optimizer"}},
     "`search.cover`: must be a list of choice parameters of `space`, like [kernel_size]"),
    # the export block: refit before the one test evaluation (search/refit.py)
    ("export unknown key", {"export": {"refit": True, "epoch": 30}},
     "`export.epoch`: unknown key; allowed keys under `export`: ['epochs', 'refit']"),
    ("export refit not a bool", {"export": {"refit": "yes"}},
     "`export.refit`: must be true or false, got 'yes'"),
    ("export epochs 0", {"export": {"refit": True, "epochs": 0}},
     "`export.epochs`: must be >= 1, got 0"),
    ("export epochs without refit", {"export": {"epochs": 30}},
     "`export.epochs`: sets the refit's epochs, but `export.refit` is false"),
    ("export not a mapping", {"export": "refit"}, "`export`: must be a mapping with keys"),
    ("refit is the engine's", {"fixed": {"refit": True}}, "`fixed.refit`: is set by the engine"),
    ("label smoothing for regression",
     {"trainable": "forecaster", "data": {"source": "seattle-weather"},
      "objective": {"metric": "val_rmse", "mode": "min"},
      "space": {"lr": {"loguniform": [1e-4, 1e-1]}}, "fixed": {"label_smoothing": 0.1}},
     "`fixed.label_smoothing`: trainable 'forecaster' does not take `label_smoothing`: the "
     "shared loop reads `label_smoothing` for classification only"),
    # search.time_budget: a duration
    ("time budget unit", {"search": {"time_budget": "30x"}},
     "`search.time_budget`: must be a duration such as 30m, 2h or 90s (units s, m, h; a plain "
     "number is seconds), got '30x'"),
    ("time budget zero", {"search": {"time_budget": 0}},
     "`search.time_budget`: must be more than 0 seconds, got 0"),
    ("time budget negative", {"search": {"time_budget": "-5m"}},
     "`search.time_budget`: must be a duration such as 30m"),
    ("range for a categorical", {"space": {"stem": {"int": [1, 3]}}},
     "`space.stem.int`: `stem` takes str values (imagenet | cifar), not an int range; "
     "use {choice: [...]}"),
]


def _write(tmp_path: Path, doc) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def _run_cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_rejected(code: int, err: str, expected: str, storage: Path):
    assert code == 2, err
    assert len(err.splitlines()) == 1, f"expected one line, got:\n{err}"
    assert expected in err, err
    assert not storage.exists(), "bad input must not write anything"


@pytest.mark.parametrize("case,changes,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_one_line_exit_2(case, changes, expected, tmp_path, capsys):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc.update(changes)
    path = _write(tmp_path, doc)
    storage = tmp_path / "runs"
    code, err = _run_cli(["run", str(path), "--storage", str(storage)], capsys)
    _assert_rejected(code, err, expected, storage)
    assert str(path) in err  # names the file


def test_missing_spec_file(tmp_path, capsys):
    code, err = _run_cli(["run", str(tmp_path / "nope.yaml"), "--storage", str(tmp_path / "runs")],
                         capsys)
    _assert_rejected(code, err, "spec file not found", tmp_path / "runs")


@pytest.mark.parametrize("kind,expected", [
    ("folder", "is a folder, not a spec file"),
    ("latin-1", "not a UTF-8 text file (byte 7 is 0xe9); give a YAML spec"),
    ("unreadable", "cannot read the spec file (Input/output error)"),
])
def test_spec_path_that_cannot_be_read_as_a_file(kind, expected, tmp_path, capsys):
    if kind == "folder":
        path = tmp_path / "spaces"
        path.mkdir()
    elif kind == "latin-1":
        path = tmp_path / "spec.yaml"
        path.write_bytes("name: t\xe9\n".encode("latin-1"))
    else:  # a regular file whose read fails, for root too
        path = Path("/proc/self/mem")
        if not path.is_file():
            pytest.skip("no /proc/self/mem here")
    code, err = _run_cli(["run", str(path), "--storage", str(tmp_path / "runs")], capsys)
    _assert_rejected(code, err, f"{path}: {expected}", tmp_path / "runs")


def test_spec_without_read_permission(unprivileged_cli, tmp_path):
    path = _write(tmp_path, GOOD)
    path.chmod(0)
    code, err = unprivileged_cli(["run", str(path), "--storage", str(tmp_path / "runs")])
    _assert_rejected(code, err, f"{path}: cannot read the spec file (Permission denied)",
                     tmp_path / "runs")


def test_yaml_syntax_error_names_line(tmp_path, capsys):
    path = _write(tmp_path, "name: t\nspace: {lr: [1, 2\n")
    code, err = _run_cli(["run", str(path), "--storage", str(tmp_path / "runs")], capsys)
    _assert_rejected(code, err, "YAML syntax error", tmp_path / "runs")
    assert "line " in err


def test_spec_yaml_reads_exponents_as_numbers_and_refuses_duplicate_keys(tmp_path, capsys):
    """``1e-3`` is a float, as in YAML 1.2 and Python (PyYAML's YAML 1.1 reads it, and
    ``1.0e3``, as a string, and the spec was refused: "must be a number, got '1e-3'");
    a key written twice is one line, exit 2, with both lines (PyYAML keeps the last)."""
    head = ("name: t\ntrainable: resnet18\ndata: {source: digits}\n"
            "objective: {metric: val_accuracy, mode: max}\nspace:\n")
    spec = load_spec(_write(tmp_path, head + "  lr: {loguniform: [1e-4, 1.0e-1]}\n"
                                             "  weight_decay: {loguniform: [1E-6, 1e-3]}\n"))
    assert {p.name: p.args for p in spec.space} == {"lr": (1e-4, 0.1),
                                                    "weight_decay": (1e-6, 1e-3)}
    twice = head + "  lr: {loguniform: [1e-4, 1e-1]}\n  lr: {loguniform: [1e-3, 1e-2]}\n"
    code, err = _run_cli(["run", str(_write(tmp_path, twice)), "--storage",
                          str(tmp_path / "runs")], capsys)
    _assert_rejected(code, err, "spec.yaml: line 7 column 3: duplicate key 'lr' (first at "
                                "line 6); keep one", tmp_path / "runs")


_DAYS = [f"2020-01-{d:02d}" for d in range(1, 32)] + [f"2020-02-{d:02d}" for d in range(1, 30)]
BAD_TABLES = [  # (case, csv text, data keys, what the one line says)
    ("target-text", "date,temp\n" + "".join(f"{d},{'warm' if i == 7 else i}\n"
                                            for i, d in enumerate(_DAYS)),
     {"target": "temp", "time_column": "date"}, "`target` 'temp' of csv:"),
    ("no-rows", "date,temp\n", {"target": "temp", "time_column": "date"},
     "has 0 rows (0 train, 0 validation, 0 test after `fill: interpolate`); a series needs "
     "at least 9 training rows"),
    ("not-dates", "date,temp\nsoon,1\nlater,2\n", {"target": "temp", "time_column": "date"},
     "`time_column` 'date' of csv:"),
    ("windows-too-long", "date,temp\n" + "".join(f"{d},{i}\n" for i, d in enumerate(_DAYS[:40])),
     {"target": "temp", "time_column": "date"},
     "`space.seq_length`: seq_length 30 leaves fewer than 8 training windows (28 training rows)"),
    ("one-label", "text,label\n" + "good food,1\n" * 20, {"text": "text", "label": "label"},
     "holds 1 label(s) ['1']; a classifier needs at least two"),
    ("rare-label", "text,label\n" + "good food,1\n" * 20 + "bad,0\nworse,0\n",
     {"text": "text", "label": "label"},
     "label '0' of ", ),
]


def test_hostile_yaml_is_one_short_line(tmp_path, capsys):
    """Nine levels of aliases each repeating the last nine times name 9**9 values: the
    spec is refused before any check expands them (it ran out of 4 GB after 33 s);
    PyYAML's duplicate-anchor error keeps its first half ("second occurrence" alone
    said nothing); nesting past the reader's recursion and a 5,000-digit integer are bad
    input, not a crash (exit 1); a huge value is quoted by its ends."""
    levels = ['&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    head = ("name: t\ntrainable: small_vgg\ndata: {source: digits}\n"
            "objective: {metric: val_accuracy, mode: max}\nspace:\n")
    bomb = head + f"  dropout: {{choice: [{', '.join(levels)}]}}\n"
    code, err = _run_cli(["run", str(_write(tmp_path, bomb)), "--storage", str(tmp_path / "runs")],
                         capsys)
    _assert_rejected(code, err, "spec.yaml: expands to more than 100,000 values", tmp_path / "runs")
    twice = head + "  batch_size: {choice: [&a 16]}\n  width: {choice: [&a 8]}\n"
    code, err = _run_cli(["run", str(_write(tmp_path, twice)), "--storage", str(tmp_path / "runs")],
                         capsys)
    _assert_rejected(code, err, "YAML syntax error: found duplicate anchor 'a'; first occurrence "
                                "(line 6), second occurrence", tmp_path / "runs")
    for text, expected in (  # deep nesting, a 5,000-digit number, a 20,000-item value
            (head + "  lr: " + "[" * 5000 + "]" * 5000 + "\n",
             "spec.yaml: nests lists or mappings deeper than the YAML reader can follow"),
            (head + "  lr: {loguniform: [1e-3, 1e-1]}\nfixed: {dropout: " + "9" * 5000 + "}\n",
             "spec.yaml: cannot read a value: Exceeds the limit (4300 digits)"),
            (head + "  lr: {loguniform: [1e-3, 1e-1]}\nfixed: {dropout: ["
             + ", ".join(map(str, range(20000))) + "]}\n",
             "`fixed.dropout`: must be a float in [0, 1), got [0, 1, 2, ")):
        code, err = _run_cli(["run", str(_write(tmp_path, text)), "--storage",
                              str(tmp_path / "runs")], capsys)
        _assert_rejected(code, err, expected, tmp_path / "runs")
        assert len(err) < 800 and (not err.endswith("]") or "19999]" in err)
    reuse = head + "  lr: &r {loguniform: [1e-3, 1e-1]}\n  weight_decay: *r\n"  # aliases work
    assert [p.args for p in load_spec(_write(tmp_path, reuse)).space] == [(1e-3, 0.1)] * 2


@pytest.mark.parametrize("case,table,keys,expected", BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_a_csv_no_trial_could_train_on_is_bad_input(case, table, keys, expected, tmp_path,
                                                     capsys):
    """A user's table is read before anything starts by the loader the trials use: one
    line, exit 2, nothing written, in `run` and in `run --dry-run` alike (each case once
    failed every trial with a bare ValueError instead)."""
    (tmp_path / "t.csv").write_text(table)
    text = "label" in keys
    doc = {"name": "t", "trainable": "sentiment_lstm" if text else "forecaster",
           "data": {"source": f"csv:{tmp_path / 't.csv'}", **keys},
           "objective": {"metric": "val_accuracy" if text else "val_r2", "mode": "max"},
           "space": ({"lr": {"loguniform": [1e-3, 1e-2]}} if text
                     else {"seq_length": {"choice": [7, 30]}})}
    path = _write(tmp_path, doc)
    for extra in ([], ["--dry-run"]):
        code, err = _run_cli(["run", str(path), *extra, "--storage", str(tmp_path / "runs")],
                             capsys)
        _assert_rejected(code, err, f"{path}: `", tmp_path / "runs")
        assert expected in err, err
    if case == "windows-too-long":  # the same table with windows it can cut is valid
        doc["space"]["seq_length"]["choice"] = [7, 14]
        code, err = _run_cli(["run", str(_write(tmp_path, doc)), "--dry-run", "--storage",
                              str(tmp_path / "runs")], capsys)
        assert code == 0, err


def test_aclimdb_folder_without_the_stanford_layout_is_bad_input(tmp_path, capsys):
    (tmp_path / "imdb" / "train" / "pos").mkdir(parents=True)
    doc = {"name": "t", "trainable": "sentiment_lstm",
           "data": {"source": f"aclimdb:{tmp_path / 'imdb'}"},
           "objective": {"metric": "val_accuracy", "mode": "max"},
           "space": {"lr": {"loguniform": [1e-3, 1e-2]}}}
    code, err = _run_cli(["run", str(_write(tmp_path, doc)), "--storage", str(tmp_path / "runs")],
                         capsys)
    _assert_rejected(code, err, "lacks train/neg/, test/neg/, test/pos/; expected the Stanford "
                                "layout", tmp_path / "runs")


def test_flag_errors_name_the_flag(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    code, err = _run_cli(["run", str(path), "--samples", "0", "--storage", str(tmp_path / "r")],
                         capsys)
    _assert_rejected(code, err, "(from --samples)", tmp_path / "r")
    code, err = _run_cli(["run", str(path), "--cpus-per-trial", "-2", "--storage",
                          str(tmp_path / "r")], capsys)
    _assert_rejected(code, err, "(from --cpus-per-trial): must be > 0", tmp_path / "r")
    code, err = _run_cli(["run", str(path), "--recheck", "3", "--storage", str(tmp_path / "r")],
                         capsys)
    _assert_rejected(code, err, "expected TOPxSEEDS such as 3x3, got '3'", tmp_path / "r")
    code, err = _run_cli(["run", str(path), "--recheck", "2x3", "--dry-run", "--storage",
                          str(tmp_path / "r")], capsys)
    assert code == 0, err
    code, err = _run_cli(["run", str(path), "--time-budget", "1 day", "--storage",
                          str(tmp_path / "r")], capsys)
    _assert_rejected(code, err, "`search.time_budget` (from --time-budget): must be a duration "
                                "such as 30m, 2h or 90s", tmp_path / "r")
    # --data of the wrong kind on a spec whose data block has a series' keys: the kind is
    # the error, not the keys an image source does not take
    forecast = str(Path(__file__).resolve().parent.parent / "spaces" / "forecast_seattle.yaml")
    for source, expected in (
            ("fashion-mnist", "`data.source` (from --data): 'fashion-mnist' is image data but "
                              "trainable 'forecaster' takes series data"),
            ("nope", "`data.source` (from --data): unknown data source 'nope'")):
        code, err = _run_cli(["run", forecast, "--data", source, "--storage", str(tmp_path / "r")],
                             capsys)
        _assert_rejected(code, err, expected, tmp_path / "r")


@pytest.mark.parametrize("layout,expected", [
    ("missing", "does not exist"),
    ("empty", "has no class sub-folders with images"),
    ("one-class", "has only one class"),
    ("corrupt", "cannot be read (cannot identify image file"),  # every trial failed on it
])
def test_bad_image_folder(layout, expected, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    if layout != "missing":
        folder.mkdir()
    if layout in ("one-class", "corrupt"):
        (folder / "dogs").mkdir()
        Image.new("RGB", (8, 8)).save(folder / "dogs" / "a.png")
    if layout == "corrupt":
        (folder / "cats").mkdir()
        Image.new("RGB", (8, 8)).save(folder / "cats" / "a.png")
        (folder / "cats" / "b.png").write_text("not an image")
    path = _write(tmp_path, with_changes(data={"source": f"imagefolder:{folder}"}))
    for extra in ([], ["--dry-run"]):
        code, err = _run_cli(["run", str(path), *extra, "--storage", str(tmp_path / "runs")],
                             capsys)
        _assert_rejected(code, err, expected, tmp_path / "runs")


def test_unknown_search_name_is_bad_input(tmp_path, capsys):
    code, err = _run_cli(["status", "nothing-here", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "no search named 'nothing-here'" in err
    code, err = _run_cli(["status", "--sync", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "name the search" in err
    assert main(["status", "--storage", str(tmp_path / "none")]) == 0
    assert "no searches under" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()  # looking creates nothing


def test_console_script_help_and_bad_input(tmp_path):
    exe = Path(sys.executable).parent / "hpsearch"
    for sub in ([], ["run"], ["status"], ["export"], ["ui"], ["trainables"], ["data"]):
        r = subprocess.run([str(exe), *sub, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage: hpsearch" in r.stdout, r.stderr
    r = subprocess.run([str(exe), "run", str(tmp_path / "missing.yaml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "spec file not found" in r.stderr
    r = subprocess.run([str(exe), "frobnicate"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_trials_the_scheduler_stopped_reach_tpe_as_pruned():
    """ASHA's stops are Optuna's PRUNED: TPE ranks every complete trial above them,
    and pruned ones by the rung they reached (a real OptunaSearch and study)."""
    from optuna.trial import TrialState

    from hpsearch.search.searcher import SchedulerAwareOptunaSearch

    searcher = SchedulerAwareOptunaSearch(
        space=lambda t: {"x": t.suggest_float("x", 0, 1)}, metric="acc", mode="max")
    for tid, accs, finished in (("stopped", [0.5, 0.7], False), ("done", [0.4, 0.6], True)):
        assert "x" in searcher.suggest(tid)
        for step, acc in enumerate(accs, 1):
            searcher.on_trial_result(tid, {"acc": acc, "training_iteration": step})
        last = {"acc": accs[-1], "training_iteration": len(accs), "trial_finished": finished}
        searcher.on_trial_complete(tid, last)
    # a diverged trial's non-finite objective: FAIL (Optuna refuses NaN as a value)
    assert "x" in searcher.suggest("diverged")
    searcher.on_trial_complete("diverged", {"acc": float("nan"), "trial_finished": True})
    states = [(t.state, t.value) for t in searcher._ot_study.trials]
    assert states == [(TrialState.PRUNED, 0.7), (TrialState.COMPLETE, 0.6), (TrialState.FAIL, None)]


def test_every_metric_with_a_better_direction_is_one_a_trainable_reports():
    reported = {m for metrics in trainables.METRICS.values() for m in metrics}
    assert set(trainables.BETTER) <= reported
    assert {"val_accuracy", "val_loss", "val_r2", "val_rmse"} <= set(trainables.BETTER)
