"""The trainer overfits a few dozen faces, resumes a killed run to identical weights, and exports checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from emoji_mirror.checkpoint import load_model, read_checkpoint
from training import train
from training.data.synthetic import fer2013_rows, write_fer2013
from training.evaluate.model_card import render_card

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Synthetic Kaggle layout (PNG), 5 distinct faces per class; PublicTest repeats the training faces, PrivateTest is new."""
    rows = fer2013_rows({"train": 5, "private_test": 2}, seed=0)
    rows += [("public_test", label, pixels) for split, label, pixels in rows if split == "train"]
    return write_fer2013(rows, tmp_path_factory.mktemp("tiny") / "fer2013", fmt="PNG")


def common_flags(data: Path, out: Path, cache: Path) -> list[str]:
    return ["--data", str(data), "--cache-dir", str(cache), "--output-dir", str(out), "--workers", "0", "--amp", "off",
            "--no-progress", "--device", "cpu", "--batch-size", "16"]


@pytest.mark.slow
def test_overfits_a_few_dozen_faces(tiny_data, tmp_path):
    flags = common_flags(tiny_data, tmp_path / "runs", tmp_path / "cache")
    code = train.main(["--model", "baseline_cnn", "--epochs", "40", "--lr", "3e-3", "--augment", "none", "--patience", "40",
                       "--export-dir", str(tmp_path / "export"), *flags])
    assert code == 0
    history = [json.loads(line) for line in (tmp_path / "runs" / "baseline_cnn" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_accuracy"] >= 90
    assert max(r["fer2013/public_test/accuracy"] for r in history) >= 90  # PublicTest = the training faces here
    exported = load_model(tmp_path / "export" / "baseline_cnn.pt")
    meta = exported.meta
    assert meta["selection_split"] == "fer2013/public_test"
    assert set(meta["metrics"]) == {"fer2013/public_test", "fer2013/private_test"}
    assert meta["data_fingerprint"] and meta["commit"] and meta["config"]["lr"] == 3e-3
    assert meta["params"] == sum(p.numel() for p in exported.model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["seed", "ours"])
def test_killed_run_resumes_to_the_same_weights(tiny_data, tmp_path, recipe):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    model_flags = ["--model", "attention_cnn", "--recipe", recipe, "--epochs", "5", "--patience", "50", "--max-train-images", "30"]
    assert train.main([*model_flags, *common_flags(tiny_data, straight, tmp_path / "cache")]) == 0

    # Kill a real training process once it has written epoch 2, then resume it.
    log = killed / "attention_cnn" / "metrics.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *model_flags, *common_flags(tiny_data, killed, tmp_path / "cache")],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    epochs_done = read_checkpoint(killed / "attention_cnn" / "last.pt")["train_state"]["epoch"]
    assert 2 <= epochs_done < 5
    assert train.main([*model_flags, "--resume", *common_flags(tiny_data, killed, tmp_path / "cache")]) == 0

    a, b = read_checkpoint(straight / "attention_cnn" / "last.pt"), read_checkpoint(killed / "attention_cnn" / "last.pt")
    assert a["train_state"]["epoch"] == b["train_state"]["epoch"] == 5
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    if recipe == "ours":  # the EMA weights are what is selected and shipped; they must match as well
        for key, value in a["raw_state_dict"].items():
            torch.testing.assert_close(b["raw_state_dict"][key], value, rtol=0, atol=0, msg=key)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(a["train_state"]["history"]) == strip(b["train_state"]["history"])


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tiny_data, tmp_path, capsys):
    flags = ["--model", "baseline_cnn", "--epochs", "1", "--max-train-images", "14", *common_flags(tiny_data, tmp_path, tmp_path / "cache")]
    assert train.main(flags) == 0
    assert train.main([*flags, "--resume", "--lr", "0.5"]) == 2
    assert "other settings (lr)" in capsys.readouterr().err


@pytest.mark.slow
def test_cosine_schedule_refuses_a_changed_epoch_budget(tiny_data, tmp_path, capsys):
    flags = ["--model", "baseline_cnn", "--recipe", "ours", "--max-train-images", "14", *common_flags(tiny_data, tmp_path, tmp_path / "cache")]
    assert train.main([*flags, "--epochs", "1"]) == 0
    assert train.main([*flags, "--epochs", "2", "--resume"]) == 2
    assert "other settings (epochs)" in capsys.readouterr().err


@pytest.mark.slow
def test_tracked_split_is_logged_but_never_selects(tiny_data, tmp_path, capsys):
    flags = ["--model", "baseline_cnn", "--recipe", "ours", "--epochs", "2", "--max-train-images", "14", *common_flags(tiny_data, tmp_path, tmp_path / "cache")]
    assert train.main([*flags, "--track", "public_test"]) == 2
    assert "not a report split" in capsys.readouterr().err
    assert train.main([*flags, "--track", "private_test"]) == 0
    ckpt = read_checkpoint(tmp_path / "baseline_cnn" / "best.pt")
    history = ckpt["meta"]["history"]
    assert all("fer2013/private_test/accuracy (tracked)" in r and r["elapsed_seconds"] > 0 for r in history)
    assert ckpt["meta"]["selection_split"] == "fer2013/public_test"
    assert ckpt["meta"]["config"]["recipe"] == "ours" and ckpt["meta"]["config"]["ema_decay"] == 0.999
    card = render_card(tmp_path / "baseline_cnn" / "best.pt")
    assert "`ours` recipe: SGD-Nesterov" in card and "Time to accuracy** on `fer2013/private_test`" in card


def test_clear_errors_for_bad_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EMOJI_MIRROR_DATA", raising=False)
    assert train.main(["--model", "nope_net"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert train.main(["--model", "baseline_cnn", "--data", str(tmp_path / "missing.zip")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_soft_targets_are_the_ensembles_mean_and_refuse_other_data(tiny_data, tmp_path, capsys):
    from conftest import make_checkpoint

    from training import distill
    from training.data import DataError, FaceDataset, load_dataset
    from training.evaluate.scoring import split_probabilities

    members = [str(make_checkpoint(tmp_path / f"t{seed}.pt", seed=seed)) for seed in (0, 1)]
    out = tmp_path / "teacher.npz"
    assert distill.main(["--ensemble", ",".join(members), "--data", str(tiny_data), "--cache-dir", str(tmp_path / "cache"),
                              "--tta", "none", "--out", str(out)]) == 0
    dataset = load_dataset(tiny_data, tmp_path / "cache")
    probs = distill.load_soft_targets(out, dataset)
    faces = dataset.splits["train"].labelled().images
    expected = np.mean([split_probabilities(load_model(m).model, faces, load_model(m).preprocessing) for m in members], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-3)  # stored fp16: about 3 significant digits, plenty for soft labels
    info = distill.soft_targets_info(out)
    assert info["member_sha256"] == [distill.weights_sha256(m) for m in members] and info["splits"] == ["train"]
    assert distill.main(["--ensemble", ",".join(members), "--data", str(tiny_data), "--cache-dir", str(tmp_path / "cache"),
                              "--tta", "none", "--bf16", "--out", str(tmp_path / "bf16.npz")]) == 0
    fast = distill.load_soft_targets(tmp_path / "bf16.npz", dataset)  # bf16 autocast: close to fp32, not bit-equal
    assert np.abs(fast - expected).max() < 0.05 and (fast.argmax(1) == expected.argmax(1)).mean() > 0.9 and not np.array_equal(fast, probs)
    other = FaceDataset(dataset.name, dataset.classes, dataset.splits, "another-fingerprint")
    with pytest.raises(DataError, match="made for other data"):
        distill.load_soft_targets(out, other)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a soft-label file"):
        distill.load_soft_targets(tmp_path / "junk.npz", dataset)


@pytest.mark.slow
def test_distilled_student_follows_the_teacher_not_the_labels(tiny_data, tmp_path):
    """A teacher that answers (label + 1) mod 7: with alpha 1 the student learns the teacher's answers on the training faces."""
    from training import distill
    from training.data import load_dataset

    dataset = load_dataset(tiny_data, tmp_path / "cache")
    labels = dataset.splits["train"].labelled().labels
    teacher = np.full((len(labels), 7), 0.02, dtype=np.float32)
    teacher[np.arange(len(labels)), (labels + 1) % 7] = 0.88
    distill.save_soft_targets(tmp_path / "teacher.npz", teacher, dataset, ["made-up"], "none")
    flags = ["--model", "baseline_cnn", "--epochs", "40", "--lr", "3e-3", "--augment", "none", "--patience", "40",
             "--teacher", str(tmp_path / "teacher.npz"), "--distill-alpha", "1.0", *common_flags(tiny_data, tmp_path / "runs", tmp_path / "cache")]
    assert train.main(flags) == 0
    student = load_model(tmp_path / "runs" / "baseline_cnn" / "last.pt")
    from training.evaluate.scoring import split_probabilities

    answers = split_probabilities(student.model, dataset.splits["train"].labelled().images, student.preprocessing).argmax(1)
    assert (answers == (labels + 1) % 7).mean() >= 0.9
    assert read_checkpoint(tmp_path / "runs" / "baseline_cnn" / "last.pt")["meta"]["config"]["distill_alpha"] == 1.0


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [(False, False, None), (True, False, torch.bfloat16), (False, True, torch.bfloat16)])
def test_amp_auto_uses_bf16_only_on_cpus_that_compute_it_natively(monkeypatch, avx512_bf16, amx, expected):
    # oneDNN emulates bf16 on plain AVX512 (its own check says "supported"), which trains 2.6x slower than fp32.
    from training.runtime import setup_runtime

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert setup_runtime("cpu", "auto").amp_dtype == expected
    assert setup_runtime("cpu", "off").amp_dtype is None and setup_runtime("cpu", "on").amp_dtype == torch.bfloat16


@pytest.mark.slow
def test_init_from_starts_at_the_checkpoints_weights_and_refuses_another_model(tiny_data, tmp_path, capsys):
    from conftest import make_checkpoint

    from training.distill import weights_sha256

    start = make_checkpoint(tmp_path / "start.pt", seed=5)
    flags = ["--model", "baseline_cnn", "--epochs", "1", "--lr", "1e-9", "--ema-decay", "0", "--augment", "none", "--patience", "0"]
    assert train.main([*flags, "--init-from", str(start), *common_flags(tiny_data, tmp_path / "tuned", tmp_path / "cache")]) == 0
    assert train.main([*flags, *common_flags(tiny_data, tmp_path / "fresh", tmp_path / "cache")]) == 0
    ours = read_checkpoint(start)["state_dict"]
    tuned = read_checkpoint(tmp_path / "tuned" / "baseline_cnn" / "last.pt")
    fresh = read_checkpoint(tmp_path / "fresh" / "baseline_cnn" / "last.pt")["state_dict"]
    weights = [name for name in ours if name.endswith(".weight") and ours[name].dim() >= 2]  # convolutions and linear layers
    assert weights and all(torch.allclose(tuned["state_dict"][name], ours[name], atol=1e-6) for name in weights)
    assert not all(torch.allclose(fresh[name], ours[name], atol=1e-6) for name in weights)  # without it: the seed's own start
    assert tuned["meta"]["config"]["init_from"] == str(start) and tuned["meta"]["init_sha256"] == weights_sha256(start)
    other = make_checkpoint(tmp_path / "other.pt", arch="attention_cnn")
    assert train.main([*flags, "--init-from", str(other), *common_flags(tiny_data, tmp_path / "refused", tmp_path / "cache")]) == 2
    assert "cannot start this run: architecture 'baseline_cnn' against its 'attention_cnn'" in capsys.readouterr().err
