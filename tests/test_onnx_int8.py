"""Int8 activations on ONNX Runtime: `training.export --int8 --calibrate` measures activation ranges on training faces, the
checkpoint keeps them, the ONNX backend runs the network int8 from them and agrees with float on real faces; a calibration
that does not fit the export falls back to float with a warning."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from emoji_mirror.app.results import load_summary, shipped_table
from emoji_mirror.checkpoint import atomic_torch_save, float_state_dict, load_model, read_checkpoint
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.onnx_backend import INPUT_NAME, onnx_bytes
from emoji_mirror.onnx_int8 import calibrate, quantize
from emoji_mirror.paths import resolve_checkpoint, served_backend
from emoji_mirror.preprocessing import normalize
from real_faces import astronaut_crops, fer2013_test_faces
from training.export import main

TRAINED = "resnet_fer_fast"  # a shipped trained network: int8 error is only meaningful on real weights
CALIBRATION_FACES = 256


@pytest.fixture(scope="module")
def calibrated(fer2013_zip, tmp_path_factory):
    """The trained network stored int8 and calibrated on FER2013 training faces by the export command."""
    out = tmp_path_factory.mktemp("int8") / "calibrated.pt"
    assert main(["--int8", TRAINED, "--out", str(out), "--data", str(fer2013_zip), "--calibrate", str(CALIBRATION_FACES)]) == 0
    return out


def test_the_checkpoint_keeps_the_calibration_and_its_card_says_so(calibrated):
    meta = read_checkpoint(calibrated)["meta"]
    assert meta["onnx_int8"]["faces"] == f"fer2013/train: {CALIBRATION_FACES} random faces (seed 0)"
    assert meta["onnx_int8"]["cache"]["data"]  # activation ranges, one per tensor
    assert "runs int8 on ONNX Runtime" in calibrated.with_suffix(".md").read_text()


def test_the_onnx_backend_runs_int8_and_agrees_with_float_on_real_faces(calibrated, fer2013_zip):
    faces = fer2013_test_faces(fer2013_zip, 128) + astronaut_crops()
    int8 = EmotionClassifier.from_checkpoint(str(calibrated), backend="onnxruntime", threads=1)
    float_ = EmotionClassifier.from_checkpoint(str(calibrated))
    assert int8.model.int8
    got, expected = int8.predict(faces), float_.predict(faces)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
    assert np.abs(got - expected).max() < 0.15
    assert np.abs(got - expected).max() > 1e-6  # it really is another (int8) computation


def test_the_int8_graph_has_quantized_convolutions(calibrated):
    loaded = load_model(calibrated)
    graph = onnx.load_from_string(quantize(onnx_bytes(loaded.model, 48), loaded.meta["onnx_int8"]))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("QuantizeLinear") >= 5 and "Conv" in ops
    conv_inputs = {name for node in graph.graph.node if node.op_type == "Conv" for name in node.input}
    dequantized = {name for node in graph.graph.node if node.op_type == "DequantizeLinear" for name in node.output}
    assert conv_inputs & dequantized  # every convolution reads dequantized int8 tensors (QDQ)


def test_a_calibration_from_another_wiring_falls_back_to_float_with_a_warning(calibrated, tmp_path):
    payload = read_checkpoint(calibrated)
    payload["meta"]["onnx_int8"]["signature"] = "0" * 64
    atomic_torch_save(payload, tmp_path / "other.pt")
    with pytest.warns(RuntimeWarning, match="runs float on ONNX Runtime.*wired differently"):
        classifier = EmotionClassifier.from_checkpoint(str(tmp_path / "other.pt"), backend="onnxruntime")
    faces = astronaut_crops()
    assert not classifier.model.int8
    assert np.abs(classifier.predict(faces) - EmotionClassifier.from_checkpoint(str(tmp_path / "other.pt")).predict(faces)).max() < 1e-4


def damaged_calibration(calibrated, folder):
    payload = read_checkpoint(calibrated)
    payload["meta"]["onnx_int8"]["cache"] = {"CLS": "TensorsData", "data": {"faces": {"lowest": "?"}}, "calibration_method": "?"}
    atomic_torch_save(payload, folder / "damaged.pt")
    return folder / "damaged.pt"


def test_a_damaged_calibration_cache_falls_back_to_float_with_a_warning(calibrated, tmp_path):
    damaged = damaged_calibration(calibrated, tmp_path)
    with pytest.warns(RuntimeWarning, match="runs float on ONNX Runtime.*calibration cannot be applied"):
        classifier = EmotionClassifier.from_checkpoint(str(damaged), backend="onnxruntime")
    assert not classifier.model.int8 and classifier.predict(astronaut_crops()).shape[1] == 7


def onnx_ops(path) -> list[str]:
    return [node.op_type for node in onnx.load(path).graph.node]


def test_the_onnx_export_is_the_int8_graph_the_app_serves(calibrated, tmp_path, fer2013_zip):
    out = tmp_path / "calibrated.onnx"
    assert main(["--onnx", str(calibrated), "--out", str(out)]) == 0
    assert "QuantizeLinear" in onnx_ops(out)
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["activations"]) == "int8"
    served = EmotionClassifier.from_checkpoint(str(calibrated), backend="onnxruntime", threads=1)
    faces = fer2013_test_faces(fer2013_zip, 64) + astronaut_crops()
    batch = normalize(torch.from_numpy(np.stack(faces)), served.preprocessing).numpy()
    got = torch.from_numpy(session.run(None, {INPUT_NAME: batch})[0]).softmax(-1).numpy()
    assert np.abs(got - served.predict(faces)).max() < 1e-4


def test_the_onnx_export_of_a_damaged_calibration_is_float_with_a_warning(calibrated, tmp_path):
    out = tmp_path / "damaged.onnx"
    with pytest.warns(RuntimeWarning, match="runs float on ONNX Runtime.*calibration cannot be applied"):
        assert main(["--onnx", str(damaged_calibration(calibrated, tmp_path)), "--out", str(out)]) == 0
    assert "QuantizeLinear" not in onnx_ops(out)


def test_calibrate_measures_the_ranges_of_the_faces_it_is_given(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint)
    faces = normalize(torch.from_numpy(np.stack(astronaut_crops())), loaded.preprocessing).numpy()
    graph = onnx_bytes(loaded.model, 48)
    bright, dark = calibrate(graph, np.abs(faces), INPUT_NAME), calibrate(graph, -np.abs(faces), INPUT_NAME)
    lowest = lambda c: c["cache"]["data"][INPUT_NAME]["lowest"]["data"][0]  # noqa: E731
    assert bright["signature"] == dark["signature"]
    assert lowest(bright) == pytest.approx(float(np.abs(faces).min())) and lowest(dark) == pytest.approx(float(-np.abs(faces).max()))


def test_requantizing_an_int8_file_keeps_its_weights(tiny_checkpoint, tmp_path):
    once, twice = tmp_path / "once.pt", tmp_path / "twice.pt"
    assert main(["--int8", str(tiny_checkpoint), "--out", str(once)]) == 0
    assert main(["--int8", str(once), "--out", str(twice)]) == 0
    a, b = float_state_dict(read_checkpoint(once)), float_state_dict(read_checkpoint(twice))
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)


@pytest.mark.parametrize("args, message", [(["--int8", "X", "--out", "o.pt", "--calibrate", "64"], "--calibrate needs --int8 and --data"),
                                           (["--fp16", "X", "--out", "o.pt", "--data", "d", "--calibrate", "64"], "--calibrate needs --int8 and --data")])
def test_calibrate_needs_int8_and_data(args, message, capsys):
    with pytest.raises(SystemExit):
        main(args)
    assert message in capsys.readouterr().err


def test_the_live_default_is_served_int8_and_the_what_ships_table_says_so():
    default = resolve_checkpoint(None)
    assert served_backend(default) == "onnxruntime"
    assert EmotionClassifier.from_checkpoint(str(default), backend="onnxruntime").model.int8
    live = shipped_table(load_summary()).set_index("tier").loc["live"]
    assert live["model"] == default.stem and live["backend"] == "onnxruntime (int8)" and live["CPU ms/face (batch 1)"] <= 2.0
