"""`python -m training.export --onnx`: the ONNX file gives the served network's probabilities on real faces (PyTorch's, or with
`--float` for a checkpoint calibrated for int8; ONNX Runtime's int8 ones without) and carries the metadata."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime
import pytest
import torch

from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.labels import emoji_for
from emoji_mirror.paths import resolve_checkpoint
from emoji_mirror.preprocessing import normalize
from real_faces import astronaut_crops, fer2013_test_faces
from training.export import main

TOLERANCE = 1e-4  # max abs difference of fp32 probabilities


def export(checkpoint, tmp_path, *flags: str) -> onnxruntime.InferenceSession:
    out = tmp_path / "model.onnx"
    assert main(["--onnx", str(checkpoint), "--out", str(out), *flags]) == 0
    return onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])


def onnx_probabilities(session: onnxruntime.InferenceSession, faces: list[np.ndarray], classifier: EmotionClassifier) -> np.ndarray:
    """The ONNX model's probabilities for uint8 face crops, normalised by the one preprocessing definition."""
    batch = normalize(torch.from_numpy(np.stack(faces)), classifier.preprocessing).numpy()
    logits = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return torch.from_numpy(logits).softmax(-1).numpy()


def assert_same_predictions(session, faces, classifier) -> None:
    expected = classifier.predict(faces)
    for batch in (faces[:1], faces[:2], faces):  # the batch axis is dynamic
        got = onnx_probabilities(session, batch, classifier)
        assert np.abs(got - expected[: len(batch)]).max() < TOLERANCE
        assert (got.argmax(1) == expected[: len(batch)].argmax(1)).all()


@pytest.fixture(scope="module")
def default_classifier():
    return EmotionClassifier.from_checkpoint()


@pytest.fixture(scope="module")
def served_default_classifier():
    """The default as the app serves it: int8 on ONNX Runtime (it carries an activation calibration)."""
    classifier = EmotionClassifier.from_checkpoint(backend="onnxruntime", threads=1)
    assert classifier.model.int8
    return classifier


def test_default_checkpoint_exports_exactly_as_served_on_astronaut_crops(served_default_classifier, tmp_path):
    session = export(resolve_checkpoint(), tmp_path)
    assert json.loads(session.get_modelmeta().custom_metadata_map["activations"]) == "int8"
    assert_same_predictions(session, astronaut_crops(served_default_classifier.preprocessing), served_default_classifier)


def test_default_checkpoint_exports_exactly_as_served_on_fer2013_test_faces(served_default_classifier, tmp_path, fer2013_zip):
    session = export(resolve_checkpoint(), tmp_path)
    assert_same_predictions(session, fer2013_test_faces(fer2013_zip, 64), served_default_classifier)


def test_default_checkpoint_exports_pytorchs_float_network_with_float_flag(default_classifier, tmp_path, fer2013_zip):
    session = export(resolve_checkpoint(), tmp_path, "--float")
    assert json.loads(session.get_modelmeta().custom_metadata_map["activations"]) == "float"
    assert_same_predictions(session, fer2013_test_faces(fer2013_zip, 64) + astronaut_crops(default_classifier.preprocessing), default_classifier)


def test_metadata_round_trips(tiny_checkpoint, tmp_path):
    session = export(tiny_checkpoint, tmp_path)
    classifier = EmotionClassifier.from_checkpoint(str(tiny_checkpoint))
    metadata = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    assert metadata == {
        "arch": "baseline_cnn",
        "classes": list(classifier.classes),
        "emojis": [emoji_for(c) for c in classifier.classes],
        "preprocessing": classifier.preprocessing.to_dict(),
        "activations": "float",
        "checkpoint_sha256": hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest(),
    }
    assert_same_predictions(session, astronaut_crops(classifier.preprocessing), classifier)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    out = tmp_path / "corrupt.onnx"
    assert main(["--onnx", str(corrupt), "--out", str(out)]) == 2
    assert f"error: {corrupt} is not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_float_flag_goes_with_onnx_only(capsys):
    with pytest.raises(SystemExit):
        main(["--int8", "X", "--out", "o.pt", "--float"])
    assert "--float goes with --onnx" in capsys.readouterr().err
