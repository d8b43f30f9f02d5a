"""A tier may serve its model with ONNX Runtime and a test-time augmentation: the rule takes each model's faster measured
backend and the TTA its row was scored and timed with, default.json records both, and the app, the CLI, predict_image and
the photo evaluation load the model that way (issue 21: int8 ResNet-18 within the 25 ms tiers)."""

from __future__ import annotations

import json

import pytest
from skimage import data as skdata

from emoji_mirror import default_rule, paths, predict
from emoji_mirror.onnx_backend import OnnxNetwork


def entry(name: str, torch_ms: float, onnx_ms: float | None, accuracy: float) -> dict:
    latency = {"batch1": torch_ms, **({"onnxruntime_batch1": onnx_ms} if onnx_ms is not None else {})}
    return {"name": name, "dataset": "fer2013", "latency_ms_per_face": latency, "file_mb": 11.3,
            "metrics": {"fer2013/public_test": {"accuracy": accuracy, "mean_recall": accuracy - 3}}}


def test_a_model_too_slow_with_torch_but_fast_with_onnxruntime_is_eligible_and_says_so():
    models = [entry("resnet_onnx", 34.0, 21.6, 70.6), entry("resnet_torch_only", 34.0, None, 71.0), entry("small", 3.6, 5.0, 66.1)]
    assert default_rule.tier_choice(models, default_rule.TIERS["photo"]) == "resnet_onnx"
    table = default_rule.tier_candidates(models, default_rule.TIERS["photo"]).set_index("model")
    assert table.loc["resnet_onnx", "backend"] == "onnxruntime" and table.loc["resnet_onnx", "ms/face (batch 1)"] == 21.6
    assert table.loc["small", "backend"] == "torch" and not table.loc["resnet_torch_only", "eligible"]


@pytest.fixture
def shipped(tmp_path, monkeypatch, tiny_checkpoint):
    """A checkpoints/ folder holding the tiny checkpoint, which default.json's photo tier serves with ONNX Runtime."""
    folder = tiny_checkpoint.parent
    record = {"checkpoint": tiny_checkpoint.stem, "candidates": [], "tiers": {"photo": {"checkpoint": tiny_checkpoint.stem, "candidates": [
        {"model": tiny_checkpoint.stem, "backend": "onnxruntime", "tta": "flip", "eligible": True}]}}}
    (folder / "default.json").write_text(json.dumps(record))
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", folder)
    monkeypatch.setattr(paths, "DEFAULT_FILE", folder / "default.json")
    monkeypatch.delenv(paths.CHECKPOINT_ENV, raising=False)
    predict._classifier.cache_clear()
    yield tiny_checkpoint
    predict._classifier.cache_clear()


def copy_outside(shipped, tmp_path):
    """The shipped checkpoint copied to a folder that is not checkpoints/."""
    elsewhere = tmp_path / "copy" / shipped.name
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(shipped.read_bytes())
    return elsewhere


def test_the_photo_tier_model_runs_on_the_backend_default_json_names(shipped, tmp_path):
    assert paths.served_backend(shipped, "photo") == "onnxruntime" and paths.served_backend(shipped, "live") == "torch"
    elsewhere = copy_outside(shipped, tmp_path)
    assert paths.served_backend(elsewhere, "photo") == "torch"  # only shipped checkpoints follow default.json
    faces = predict.predict_image(skdata.astronaut())
    assert len(faces) == 1 and isinstance(predict._classifier(shipped).model, OnnxNetwork)


def test_the_photo_tier_model_runs_with_the_tta_its_row_was_measured_with(shipped, tmp_path):
    assert paths.served_tta(shipped, "photo") == "flip" and paths.served_tta(shipped, "live") == "none"
    elsewhere = copy_outside(shipped, tmp_path)
    assert paths.served_tta(elsewhere, "photo") == "none"  # only shipped checkpoints follow default.json
    assert len(predict.predict_image(skdata.astronaut())) == 1 and predict._classifier(shipped).tta == "flip"


def test_the_app_and_the_pipeline_benchmark_load_a_shipped_model_as_its_tier_serves_it(shipped):
    from emoji_mirror.app.loaders import load_classifier
    from emoji_mirror.classifier import EmotionClassifier

    load_classifier.clear()
    photo, live = load_classifier(str(shipped), 0.0, 1, "photo"), load_classifier(str(shipped), 0.0, 1, "live")
    assert isinstance(photo.model, OnnxNetwork) and photo.tta == "flip"
    assert not isinstance(live.model, OnnxNetwork) and live.tta == "none"  # the live tier names no backend or TTA for it
    served = EmotionClassifier.served(shipped, "photo", threads=1)  # what benchmarks.mirror_pipeline times by default
    assert isinstance(served.model, OnnxNetwork) and served.tta == "flip"
    load_classifier.clear()


def test_the_rule_records_each_candidate_s_tta_and_an_unknown_one_is_not_served(shipped):
    models = [{**entry("resnet_flip", 34.0, 13.0, 70.7), "tta": "flip"}, entry("small", 3.6, 5.0, 66.1)]
    table = default_rule.tier_candidates(models, default_rule.TIERS["photo"]).set_index("model")
    assert table.loc["resnet_flip", "tta"] == "flip" and table.loc["small", "tta"] == "none"
    record = json.loads(paths.DEFAULT_FILE.read_text())
    record["tiers"]["photo"]["candidates"][0]["tta"] = "rotate"
    paths.DEFAULT_FILE.write_text(json.dumps(record))
    assert paths.served_tta(shipped, "photo") == "none"


def test_served_tta_knows_every_tta_mode():
    from emoji_mirror.preprocessing import TTA_MODES

    assert paths.SERVED_TTA == TTA_MODES
