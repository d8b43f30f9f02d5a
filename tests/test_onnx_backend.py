"""The classifier's ONNX Runtime backend gives the torch backend's probabilities on real face crops, for every architecture
(within float rounding; a checkpoint calibrated for int8 activations, as the shipped default is, within int8 rounding)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_checkpoint
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.models import list_models
from emoji_mirror.onnx_backend import OnnxNetwork, onnx_bytes
from real_faces import astronaut_crops, fer2013_test_faces

TOLERANCE = 1e-4  # max abs difference of fp32 probabilities
INT8_TOLERANCE, INT8_AGREEMENT = 0.15, 0.9  # int8 activations: max abs difference of probabilities, share of equal answers


def assert_backends_agree(spec: str, faces: list[np.ndarray], tta: str = "none", threads: int | None = None) -> None:
    torch_probs = EmotionClassifier.from_checkpoint(spec, tta=tta).predict(faces)
    onnx_classifier = EmotionClassifier.from_checkpoint(spec, tta=tta, backend="onnxruntime", threads=threads)
    int8 = onnx_classifier.model.int8
    for batch in (faces[:1], faces):
        onnx_probs = onnx_classifier.predict(batch)
        assert onnx_probs.shape == (len(batch), len(onnx_classifier.classes))
        assert np.abs(onnx_probs - torch_probs[: len(batch)]).max() < (INT8_TOLERANCE if int8 else TOLERANCE)
        assert (onnx_probs.argmax(1) == torch_probs[: len(batch)].argmax(1)).mean() >= (INT8_AGREEMENT if int8 else 1)


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_default_checkpoint_on_astronaut_crops(tta):
    assert_backends_agree(None, astronaut_crops(), tta, threads=1)


def test_default_checkpoint_on_fer2013_test_faces(fer2013_zip):
    assert_backends_agree(None, fer2013_test_faces(fer2013_zip, 64), threads=2)


LARGER_MODELS = {"resnet18_fer", "resnet_fer_small", "vit_tiny"}  # a second or more each on a 2-core CPU


@pytest.mark.parametrize("arch", [pytest.param(arch, marks=pytest.mark.slow) if arch in LARGER_MODELS else arch for arch in list_models()])
def test_every_architecture_on_astronaut_crops(arch, tmp_path):
    assert_backends_agree(str(make_checkpoint(tmp_path / f"{arch}.pt", arch)), astronaut_crops())


@pytest.mark.slow
def test_vit_on_its_convolutional_stem_on_astronaut_crops(tmp_path):
    assert_backends_agree(str(make_checkpoint(tmp_path / "vit_conv.pt", "vit_tiny", arch_kwargs={"stem": "conv"})), astronaut_crops())


def test_onnx_classifier_reports_no_faces_and_keeps_the_checkpoint_facts(tiny_checkpoint):
    classifier = EmotionClassifier.from_checkpoint(str(tiny_checkpoint), backend="onnxruntime")
    assert classifier.predict([]).shape == (0, len(classifier.classes))
    assert classifier.loaded.arch == "baseline_cnn" and classifier.emojis[3] == "😄"


def test_unknown_backend_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        EmotionClassifier.from_checkpoint(str(tiny_checkpoint), backend="tensorrt")


@pytest.mark.parametrize("int8", [False, True])
def test_model_benchmark_times_onnx_runtime(tmp_path, int8, monkeypatch):
    import benchmarks.models
    from benchmarks.models import main as benchmark_main

    networks = []  # (model, the network timed)
    real_network = benchmarks.models.inference_network
    monkeypatch.setattr(benchmarks.models, "inference_network", lambda *args: networks.append((args[0], real_network(*args))) or networks[-1][1])
    figures = tmp_path / "onnx.json"
    assert benchmark_main(["--models", "baseline_cnn", "--backend", "onnxruntime", "--batch-sizes", "1,2", "--min-run-time", "0.01",
                           "--json", str(figures), *(["--int8"] if int8 else [])]) == 0
    (row,) = json.loads(figures.read_text())["models"]
    assert row["backend"] == ("onnxruntime (int8)" if int8 else "onnxruntime")
    assert row["ms_per_face_batch1"] > 0 and row["ms_per_face_batch2"] > 0 and "train_images_per_s" not in row
    ((model, network),) = networks
    faces = torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    difference = (network(faces) - OnnxNetwork(onnx_bytes(model, 48))(faces)).abs().max().item()
    assert network.int8 == int8 and (difference > 1e-6) == int8  # int8: another computation than the float graph's


def test_model_benchmark_int8_needs_onnx_runtime(capsys):
    from benchmarks.models import main as benchmark_main

    with pytest.raises(SystemExit):
        benchmark_main(["--models", "baseline_cnn", "--int8"])
    assert "--int8 needs --backend onnxruntime" in capsys.readouterr().err
