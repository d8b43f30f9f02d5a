"""Packed ensembles (`python -m training.export --ensemble`): one checkpoint that scores the mean of its members'
probabilities on real faces, with each member's own photometry, in PyTorch and ONNX Runtime alike; bad packs are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoji_mirror.checkpoint import CheckpointError, atomic_torch_save, checkpoint_payload, load_model, read_checkpoint
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.labels import FER2013_CLASSES, FERPLUS_CLASSES
from emoji_mirror.models import create_model, list_models
from emoji_mirror.preprocessing import Preprocessing, normalize
from real_faces import astronaut_crops
from training.distill import weights_sha256
from training.evaluate.report import saliency_maps
from training.export import main

TOLERANCE = 1e-5  # max abs difference of fp32 probabilities


def member(path, seed: int, photometry: str = "none", classes=FER2013_CLASSES, selection: str = "fer2013/public_test"):
    """An untrained resnet_fer_fast checkpoint (BatchNorm statistics perturbed, so that members answer differently)."""
    torch.manual_seed(seed)
    model = create_model("resnet_fer_fast", num_classes=len(classes))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    meta = {"dataset": "fer2013", "data_fingerprint": "f" * 64, "selection_split": selection, "metrics": {}, "epoch": seed,
            "config": {"recipe": "camera", "seed": seed}}
    atomic_torch_save(checkpoint_payload(model, "resnet_fer_fast", {}, classes, Preprocessing(photometry=photometry), meta), path)
    return path


def pack(paths, out) -> int:
    return main(["--ensemble", ",".join(map(str, paths)), "--out", str(out)])


@pytest.fixture
def members(tmp_path):
    return [member(tmp_path / "plain.pt", 1), member(tmp_path / "standardized.pt", 2, photometry="standardize")]


def test_a_packed_ensemble_is_the_mean_of_its_members_on_real_faces(members, tmp_path):
    out = tmp_path / "pair.pt"
    assert pack(members, out) == 0
    faces = astronaut_crops()
    each = [EmotionClassifier.from_checkpoint(str(path)).predict(faces) for path in members]
    assert np.abs(each[0] - each[1]).max() > 0.01  # the members disagree, so the mean below is not trivial
    packed = EmotionClassifier.from_checkpoint(str(out))
    assert packed.loaded.arch == "ensemble" and packed.preprocessing.photometry == "none"  # the member standardizes its own input
    assert np.abs(packed.predict(faces) - np.mean(each, axis=0)).max() < TOLERANCE
    onnx = EmotionClassifier.from_checkpoint(str(out), backend="onnxruntime")
    assert np.abs(onnx.predict(faces) - packed.predict(faces)).max() < 1e-4


def test_the_pack_records_its_members_and_stores_int8(members, tmp_path, capsys):
    out, small = tmp_path / "pair.pt", tmp_path / "pair_int8.pt"
    assert pack(members, out) == 0
    meta = read_checkpoint(out)["meta"]
    assert [m["name"] for m in meta["members"]] == ["plain", "standardized"]
    assert [m["weights_sha256"] for m in meta["members"]] == [weights_sha256(p) for p in members]
    assert meta["selection_split"] == "fer2013/public_test" and meta["data_fingerprint"] == "f" * 64
    card = out.with_suffix(".md").read_text()
    assert "`ensemble` of `resnet_fer_fast` + `resnet_fer_fast` (input standardized)" in card and "**Members**" in card and "`standardized`" in card
    assert "training.export --ensemble plain,standardized" in card
    assert main(["--int8", str(out), "--out", str(small)]) == 0
    assert small.stat().st_size < out.stat().st_size / 3
    faces = astronaut_crops()
    full, compact = (EmotionClassifier.from_checkpoint(str(p)).predict(faces) for p in (out, small))
    assert np.abs(full - compact).max() < 0.02


@pytest.mark.parametrize(("change", "message"), [
    ({"classes": FERPLUS_CLASSES}, "its classes ("),
    ({"selection": "fer2013/private_test"}, "its selection split (fer2013/private_test) is not the other's"),
])
def test_members_of_other_classes_or_selection_are_refused(tmp_path, capsys, change, message):
    other = member(tmp_path / "other.pt", 3, **change)
    assert pack([member(tmp_path / "a.pt", 1), other], tmp_path / "bad.pt") == 2
    assert message in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()


def test_one_member_or_a_nested_ensemble_is_refused(members, tmp_path, capsys):
    assert pack(members[:1], tmp_path / "one.pt") == 2
    assert "at least two" in capsys.readouterr().err
    assert pack(members, tmp_path / "pair.pt") == 0
    assert pack([tmp_path / "pair.pt", members[0]], tmp_path / "nested.pt") == 2
    assert "cannot be a member of an ensemble" in capsys.readouterr().err


@pytest.mark.parametrize(("members_field", "message"), [
    ([{"arch": "resnet9000"}, {"arch": "resnet_fer_fast"}], "unknown model 'resnet9000'"),
    ([{"arch": "resnet_fer_fast", "arch_kwargs": {"widths": [10**6]}}, {"arch": "resnet_fer_fast"}], "arch_kwargs/members/0/arch_kwargs/widths/0"),
])
def test_a_checkpoint_naming_bad_members_is_refused_with_a_clear_error(members, tmp_path, members_field, message):
    out = tmp_path / "pair.pt"
    assert pack(members, out) == 0
    payload = read_checkpoint(out)
    payload["arch_kwargs"]["members"] = members_field
    atomic_torch_save(payload, out)
    with pytest.raises(CheckpointError, match=message):
        load_model(out)


def test_ensembles_are_loadable_but_not_offered_for_training():
    assert "ensemble" not in list_models() and "ensemble" in list_models(packed=True)
    with pytest.raises(ValueError, match="at least two members"):
        create_model("ensemble")


def test_attention_maps_of_a_pack_average_its_members(members, tmp_path):
    out = tmp_path / "pair.pt"
    assert pack(members, out) == 0
    loaded = load_model(out)
    x = normalize(torch.from_numpy(np.stack(astronaut_crops()[:4])), loaded.preprocessing)
    maps, predicted, method = saliency_maps(loaded.model, x)
    assert maps.shape == (4, 48, 48) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert predicted.tolist() == loaded.model(x).argmax(1).tolist() and method.startswith("mean of the members' maps")
