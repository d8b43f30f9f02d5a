"""The training kit and the checkpoint paths under bad input: one clear line, nothing lost (issue 18, items 6, 14, 16, 17)."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest
import torch

from emoji_mirror.checkpoint import atomic_torch_save
from emoji_mirror.paths import CHECKPOINT_ENV, resolve_checkpoint
from training import export, train
from training.data import load_dataset
from training.data.synthetic import make_fer2013


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory) -> Path:
    return make_fer2013(tmp_path_factory.mktemp("data") / "fer2013.zip")


def refused(capsys, argv: list[str], expected: str) -> None:
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and err.count("\n") == 1, err


@pytest.mark.parametrize("flags, expected", [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--max-train-images", "-5"], "--max-train-images must be at least 1"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-0.1"], "--lr must be positive"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number"),
    (["--model-kwargs", '{"widths": [100000]}'], "100000"),
    (["--model-kwargs", '{"widths": [2048, 2048, 2048, 2048], "depths": [16, 16, 16, 16]}'], "refused before building it"),
    (["--model-kwargs", '{"pretrained": true}'], "resnet_fer_fast takes no setting pretrained"),
    (["--model-kwargs", "[1, 2]"], "must be a JSON object"),
])
def test_the_trainer_refuses_a_bad_command_line_before_reading_data(capsys, tmp_path, flags, expected):
    refused(capsys, ["--model", "resnet_fer_fast", "--data", str(tmp_path / "absent.zip"), "--output-dir", str(tmp_path / "runs"), *flags], expected)


@pytest.mark.parametrize("flag", ["--output-dir", "--export-dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_training(capsys, tmp_path, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    refused(capsys, ["--model", "baseline_cnn", "--data", str(tmp_path / "absent.zip"), flag, str(blocker / "sub" if flag == "--export-dir" else blocker)],
            "cannot be a folder here")
    assert blocker.read_text() == "keep me"


def test_a_full_disk_is_one_clear_error_and_leaves_no_half_file(tmp_path, monkeypatch):
    """torch's writer fails with 'unexpected pos' on a full disk: the caller gets an OSError naming the file."""
    target = tmp_path / "last.pt"

    def full_disk(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": 1}, target)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_costs_a_warning_not_the_run(tiny_zip, tmp_path, capsys):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    dataset = load_dataset(tiny_zip, cache_dir=not_a_folder)
    assert len(dataset.splits["train"]) > 0
    assert "decoded data not cached" in capsys.readouterr().err


def test_a_run_being_trained_elsewhere_is_refused_not_overwritten(tiny_zip, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "same"
    run_dir.mkdir(parents=True)
    held = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another training process holds the run
        refused(capsys, ["--model", "baseline_cnn", "--name", "same", "--data", str(tiny_zip), "--cache-dir", str(tmp_path / "cache"),
                         "--output-dir", str(tmp_path / "runs"), "--epochs", "1", "--device", "cpu", "--no-progress"],
                "being trained by another process")
    finally:
        os.close(held)
    assert list(run_dir.iterdir()) == []


def test_export_never_overwrites_the_checkpoint_it_reads(tiny_checkpoint, tmp_path, capsys):
    before = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    for argv, expected in ((["--onnx", str(tiny_checkpoint), "--out", str(tiny_checkpoint)], "would be overwritten"),
                           (["--int8", str(tiny_checkpoint), "--out", str(tiny_checkpoint)], "would be overwritten"),
                           (["--onnx", str(tiny_checkpoint), "--out", str(tmp_path)], "is a folder")):
        assert export.main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    assert hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest() == before
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert export.main(["--fp16", str(tiny_checkpoint), "--out", str(blocker / "x.pt")]) == 2
    assert "error:" in capsys.readouterr().err


def test_an_overlong_checkpoint_name_is_not_found_not_an_oserror(monkeypatch):
    with pytest.raises(FileNotFoundError) as raised:
        resolve_checkpoint("x" * 5000)
    assert len(str(raised.value)) < 1000
    monkeypatch.setenv(CHECKPOINT_ENV, "y" * 5000)
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint()


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_a_member_larger_than_a_face_can_be_is_refused_unread(tmp_path, monkeypatch, form):
    """A zip of a few MB with a 4 GiB member of zeros used 7.3 GB and ended in MemoryError; its declared size is checked first."""
    import shutil
    import zipfile

    from training.data import DataError, forms

    source = make_fer2013(tmp_path / "fer2013.zip")
    with zipfile.ZipFile(source, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/angry/bomb.jpg", bytes(2 << 20))  # 2 MiB of zeros: over the 1 MiB a face may be
    if form == "folder":
        shutil.unpack_archive(source, tmp_path / "tree")
        source = tmp_path / "tree"
    opened = []
    monkeypatch.setattr(forms, "decode_image", lambda data, name: opened.append(name) or forms.np.zeros((48, 48), forms.np.uint8))
    with pytest.raises(DataError, match=r"train/angry/bomb.jpg: declares 2,097,152 bytes, more than a face image of this dataset can be"):
        load_dataset(source, cache_dir=tmp_path / "cache")
    assert "train/angry/bomb.jpg" not in opened
