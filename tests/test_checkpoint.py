"""Checkpoints round-trip with their metadata, load from anywhere, and fail with clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from conftest import make_checkpoint
from emoji_mirror.checkpoint import CheckpointError, load_model, read_checkpoint
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.labels import FER2013_CLASSES
from emoji_mirror.paths import CHECKPOINT_DIR, REPO_ROOT, resolve_checkpoint


@pytest.mark.parametrize("arch", ["baseline_cnn", "attention_cnn", pytest.param("vit_tiny", marks=pytest.mark.slow)])
def test_round_trip_keeps_weights_and_metadata(tmp_path, arch):
    path = make_checkpoint(tmp_path / f"{arch}.pt", arch, meta={"metrics": {"fer2013/private_test": {"accuracy": 50.0}}, "selection_split": "fer2013/public_test"})
    torch.manual_seed(0)
    from emoji_mirror.models import create_model

    reference = create_model(arch).eval()
    loaded = load_model(path)
    assert loaded.arch == arch and loaded.classes == FER2013_CLASSES
    assert loaded.meta["selection_split"] == "fer2013/public_test"
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reference(x))


def test_bad_files_get_clear_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an Emoji Mirror checkpoint"):
        load_model(foreign)


def test_unsafe_pickle_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "emoji-mirror-checkpoint", "payload": Boom()}, evil, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="unsafe"):
        load_model(evil)


def test_weights_that_do_not_fit_the_architecture(tmp_path, tiny_checkpoint):
    payload = read_checkpoint(tiny_checkpoint)
    payload["arch"] = "attention_cnn"
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match="do not fit architecture 'attention_cnn'"):
        load_model(wrong)
    payload["arch"] = "no_such_net"
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match="unknown model 'no_such_net'"):
        load_model(wrong)


def test_paths_resolve_from_any_working_directory(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    local = make_checkpoint(tmp_path / "sub" / "mine.pt")
    assert resolve_checkpoint("sub/mine.pt") == local.resolve()
    assert resolve_checkpoint(str(local)) == local.resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_checkpoint("~/sub/mine.pt") == local.resolve()
    monkeypatch.setenv("EMOJI_MIRROR_CHECKPOINT", str(local))
    assert resolve_checkpoint(None) == local.resolve()
    with pytest.raises(FileNotFoundError, match="tried"):
        resolve_checkpoint("nowhere/none.pt")


@pytest.mark.slow
def test_shipped_checkpoints_resolve_by_name_from_elsewhere(tmp_path, monkeypatch):
    shipped = sorted(CHECKPOINT_DIR.glob("*.pt"))
    if not shipped:
        pytest.skip("no shipped checkpoints in checkpoints/")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOJI_MIRROR_CHECKPOINT", raising=False)
    for path in shipped:
        assert resolve_checkpoint(path.stem) == path.resolve()
        assert resolve_checkpoint(str(path.relative_to(REPO_ROOT))) == path.resolve()
        meta = load_model(path).meta
        # every shipped checkpoint says what it was chosen on, and reports a different split of its dataset
        dataset = meta["dataset"]
        assert dataset in ("fer2013", "ferplus")
        assert meta["selection_split"] == f"{dataset}/public_test"
        assert f"{dataset}/private_test" in meta["metrics"]
        assert meta["data_fingerprint"] and meta["commit"]
    assert resolve_checkpoint(None).parent == CHECKPOINT_DIR


def test_classifier_batches_crops_of_any_size(tiny_checkpoint):
    clf = EmotionClassifier.from_checkpoint(str(tiny_checkpoint))
    faces = [torch.randint(0, 255, (s, s), dtype=torch.uint8).numpy() for s in (48, 100, 31)]
    probs = clf.predict(faces)
    assert probs.shape == (3, 7)
    torch.testing.assert_close(torch.from_numpy(probs).sum(1), torch.ones(3))
    assert clf.predict([]).shape == (0, 7)
    assert clf.emojis[FER2013_CLASSES.index("happy")] == "😄"


def test_int8_and_fp16_storage_agree_with_fp32_on_real_faces(tmp_path, fer2013_zip):
    from real_faces import astronaut_crops, fer2013_test_faces
    from training.export import compact

    shipped = CHECKPOINT_DIR / "attention_cnn_gpu.pt"  # trained by us, stored fp16; widened to fp32 it is the reference
    payload = read_checkpoint(shipped)
    payload["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    torch.save(payload, tmp_path / "fp32.pt")
    files = {precision: tmp_path / f"{precision}.pt" for precision in ("fp16", "int8")}
    for precision, path in files.items():
        compact(tmp_path / "fp32.pt", path, precision)
    int8 = read_checkpoint(files["int8"])
    assert int8["meta"]["storage"] == "int8" and int8["state_dict"]["stem.0.weight"].dtype == torch.int8
    assert files["int8"].stat().st_size < 0.6 * files["fp16"].stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size
    faces = astronaut_crops() + fer2013_test_faces(fer2013_zip, 200)
    probs = {name: EmotionClassifier.from_checkpoint(str(path)).predict(faces) for name, path in {"fp32": tmp_path / "fp32.pt", **files}.items()}
    assert abs(probs["fp16"] - probs["fp32"]).max() < 5e-3
    assert (probs["int8"].argmax(1) == probs["fp32"].argmax(1)).mean() >= 0.95 and abs(probs["int8"] - probs["fp32"]).mean() < 0.01


def test_int8_weights_without_a_valid_scale_are_refused(tmp_path, tiny_checkpoint):
    from emoji_mirror.checkpoint import quantize_int8

    good = quantize_int8(read_checkpoint(tiny_checkpoint))
    name = next(iter(good["int8_scales"]))
    cases = {
        "no int8 weight of that name": {**good, "int8_scales": {**good["int8_scales"], "ghost.weight": torch.ones(4, 1)}},
        "negative, NaN or infinite": {**good, "int8_scales": {**good["int8_scales"], name: -good["int8_scales"][name]}},
        "one floating-point scale per output channel": {**good, "int8_scales": {**good["int8_scales"], name: torch.ones(1)}},
    }
    for message, payload in cases.items():
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            load_model(tmp_path / "bad.pt")
    stripped = {**good, "int8_scales": {}}  # int8 weights read as plain integers would answer nonsense
    torch.save(stripped, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "bad.pt")


def test_hostile_weights_and_sizes_are_refused_before_anything_large_is_built(tmp_path, tiny_checkpoint):
    good = read_checkpoint(tiny_checkpoint)
    name, weight = next((k, v) for k, v in good["state_dict"].items() if v.dim() >= 2)
    cases = {
        "dense": {**good, "state_dict": {**good["state_dict"], name: weight.to_sparse()}},
        "repeated elements": {**good, "state_dict": {**good["state_dict"], name: torch.zeros(1).expand(*weight.shape)}},
        "not floating point": {**good, "state_dict": {**good["state_dict"], name: weight.to(torch.int64)}},
    }
    huge = {**good, "arch": "resnet18_fer", "arch_kwargs": {"widths": [2048] * 4, "depths": [16] * 4}}
    cases["refused before building it"] = huge
    for message, payload in cases.items():
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            load_model(tmp_path / "bad.pt")
