"""Bad input through the real CLI that is not in the spec itself: storage roots and
output folders that cannot be written, missing pretrained weights; and the
commands that show the declared parameters. Exit 2, one line, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpsearch import trainables
from hpsearch.search.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "spaces" / "cluster_digits.yaml")  # digits: nothing to fetch
FORBIDDEN = "/proc/forbidden/x"  # /proc takes no new folders, not even from root


def rejected(args: list[str], capsys) -> str:
    """Run the CLI; assert exit 2 and a one-line error; return the line."""
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---------------------------------------------------------------- storage and output folders


@pytest.mark.parametrize("command", [["run", SPEC], ["run", SPEC, "--dry-run"],
                                     ["tracking", "serve"], ["export", "some-search"]],
                         ids=["run", "dry-run", "tracking-serve", "export"])
def test_storage_that_cannot_be_created_is_bad_input(command, capsys):
    err = rejected([*command, "--storage", FORBIDDEN], capsys)
    assert f"{FORBIDDEN} (--storage): cannot create folders in /proc" in err
    assert not Path(FORBIDDEN).parent.exists()


@pytest.mark.parametrize("layout", ["is-a-file", "inside-a-file"])
def test_storage_that_is_or_lies_in_a_file(layout, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder\n")
    root = blocker if layout == "is-a-file" else blocker / "runs"
    before = tree(tmp_path)
    err = rejected(["run", SPEC, "--storage", str(root)], capsys)
    expected = ("is a file, not a folder" if layout == "is-a-file"
                else f"lies inside {blocker}, which is a file, not a folder")
    assert f"{root} (--storage): {expected}" in err
    assert tree(tmp_path) == before and blocker.read_text() == "not a folder\n"


def test_storage_from_the_environment_names_its_origin(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("")
    monkeypatch.setenv("HPSEARCH_STORAGE", str(blocker / "runs"))
    err = rejected(["run", SPEC, "--dry-run"], capsys)
    assert f"{blocker / 'runs'} ($HPSEARCH_STORAGE): lies inside" in err
    assert tree(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("command", [["run", SPEC], ["status", "some-search"], ["submit", SPEC, "--address",
                                                                "http://127.0.0.1:9", "--"]],
                         ids=["run", "status", "submit"])
def test_an_object_store_uri_is_refused_not_made_a_local_folder(command, tmp_path, monkeypatch,
                                                                 capsys):
    """`--storage s3://b/p` once became a local folder named `s3:` (on a cluster: a probe
    failure on every other node); it is one line saying to give a shared folder, and
    nothing is written. A `file://` URI is the folder it names."""
    monkeypatch.chdir(tmp_path)
    err = rejected([*command, "--storage", "s3://bucket/hpsearch"], capsys)
    assert err.startswith("hpsearch: error: s3://bucket/hpsearch (--storage): the storage root "
                          "must be a folder"), err
    assert "e.g. --storage /mnt/shared/hpsearch" in err and tree(tmp_path) == []
    assert main(["run", SPEC, "--dry-run", "--storage", (tmp_path / "runs").as_uri()]) == 0
    assert f"storage root {tmp_path / 'runs'}" in capsys.readouterr().out


def test_read_only_storage_is_bad_input(unprivileged_cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for storage, expected in ((locked / "runs", f"cannot create folders in {locked} (Permission denied)"),
                              (locked, f"{locked} (--storage): cannot write in it (Permission denied)")):
        code, err = unprivileged_cli(["run", SPEC, "--storage", str(storage)])
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", [["export", "a"], ["report", "a"], ["compare", "a", "b"]])
def test_output_folder_that_cannot_be_written_is_bad_input(command, tmp_path, capsys):
    """Checked before the command loads or evaluates anything (the test split included)."""
    storage = tmp_path / "runs"
    err = rejected([*command, "--to", FORBIDDEN, "--storage", str(storage)], capsys)
    assert f"{FORBIDDEN} (--to): cannot create folders in /proc" in err
    assert not storage.exists()


def test_a_writable_storage_is_left_as_it_was(tmp_path, capsys):
    """The probe that proves a root writable leaves nothing behind (dry-run writes nothing)."""
    assert main(["run", SPEC, "--dry-run", "--storage", str(tmp_path / "new" / "runs")]) == 0
    assert "is valid" in capsys.readouterr().out
    assert tree(tmp_path) == []


# ---------------------------------------------------------------- pretrained weights


def test_missing_transfer_weights_stop_the_run_before_anything_starts(tmp_path, monkeypatch,
                                                                      capsys):
    """`run spaces/transfer.yaml --smoke` without the weights: the trial's own message,
    as one line, before Ray or MLflow start (it used to start and fail every trial)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    storage = tmp_path / "runs"
    for extra in ([], ["--dry-run"]):
        err = rejected(["run", str(ROOT / "spaces" / "transfer.yaml"), "--smoke", "--storage",
                        str(storage), *extra], capsys)
        assert re.search(r"transfer\.yaml: pretrained weights for shufflenet_v2 not found at "
                         + re.escape(str(tmp_path / "torch" / "hub" / "checkpoints"))
                         + r"/shufflenetv2_x1-\w+\.pth; download https://download\.pytorch\.org/"
                         r"models/shufflenetv2_x1-\w+\.pth and put it there", err), err
    assert tree(tmp_path) == []


def test_weights_are_checked_for_every_backbone_the_search_may_build(torch_hub_weights,
                                                                    tmp_path, capsys):
    doc = yaml.safe_load((ROOT / "spaces" / "transfer.yaml").read_text())
    spec = tmp_path / "transfer.yaml"
    spec.write_text(yaml.safe_dump(doc))
    storage = str(tmp_path / "runs")
    assert main(["run", str(spec), "--dry-run", "--storage", storage]) == 0  # all three there
    capsys.readouterr()
    missing = next((torch_hub_weights / "hub" / "checkpoints").glob("mobilenet_v3_small*"))
    hidden = missing.rename(missing.with_suffix(".hidden"))
    try:
        err = rejected(["run", str(spec), "--dry-run", "--storage", storage], capsys)
        assert f"pretrained weights for mobilenet_v3 not found at {missing}" in err
        doc["fixed"]["weights"] = str(hidden)  # a weights file of one's own: no hub lookup
        doc["space"]["backbone"] = {"choice": ["mobilenet_v3"]}
        spec.write_text(yaml.safe_dump(doc))
        assert main(["run", str(spec), "--dry-run", "--storage", storage]) == 0
        doc["fixed"]["weights"] = str(tmp_path / "nope.pth")
        spec.write_text(yaml.safe_dump(doc))
        err = rejected(["run", str(spec), "--dry-run", "--storage", storage], capsys)
        assert f"`fixed.weights`: file '{tmp_path / 'nope.pth'}' does not exist" in err
    finally:
        hidden.rename(missing)
    assert tree(tmp_path) == ["transfer.yaml"]


# ---------------------------------------------------------------- declared parameters


@pytest.mark.parametrize("name", sorted(trainables.REGISTRY))
def test_trainables_name_prints_every_declared_parameter(name, capsys):
    assert main(["trainables", name]) == 0
    out = capsys.readouterr().out
    info = trainables.REGISTRY[name]
    for p in info.params.values():
        assert re.search(rf"^  {p.name} +{re.escape(p.type_name)} +{re.escape(p.domain_text)} ",
                         out, re.M), f"{p.name} missing from:\n{out}"
    assert ("none of the shared loop's" in out) == info.fits


def test_trainables_unknown_name_suggests_one(capsys):
    err = rejected(["trainables", "resnet19"], capsys)
    assert "unknown trainable 'resnet19'; did you mean 'resnet18'?" in err


def test_trainables_lists_every_registered_name_without_torch():
    code = ("import sys; from hpsearch.search.cli import main; main(['trainables']); "
            "main(['trainables', 'sentiment']); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "False", r.stderr
    for name in trainables.REGISTRY:
        assert re.search(rf"^{name} ", r.stdout, re.M)
