"""`python -m emoji_mirror.predict` and predict_image on a real photo, broken files, a face-less image and bad checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from emoji_mirror.checkpoint import atomic_torch_save, checkpoint_payload
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.detector import FaceDetector
from emoji_mirror.face_model import FACE_MODEL_ENV
from emoji_mirror.labels import EMOJI, FER2013_CLASSES, FERPLUS_CLASSES
from emoji_mirror.models import create_model
from emoji_mirror.pipeline import MirrorPipeline
from emoji_mirror.paths import REPO_ROOT
from emoji_mirror.predict import main, predict_image
from emoji_mirror.preprocessing import Preprocessing


@pytest.fixture
def photos(tmp_path):
    """A real portrait, a truncated copy of it, a text file, an empty PNG-named file and a photo of a plain wall."""
    portrait = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(portrait), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    data = portrait.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "empty.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((300, 400, 3), 180, np.uint8))
    return tmp_path


def test_json_lines_for_every_readable_image_errors_on_stderr(photos, tiny_checkpoint, capsys):
    names = ["astronaut.jpg", "truncated.jpg", "notes.txt", "empty.png", "wall.png", "missing.jpg"]
    code = main([str(photos / n) for n in names] + ["--checkpoint", str(tiny_checkpoint), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in records] == [str(photos / "astronaut.jpg"), str(photos / "wall.png")]
    face, = records[0]["faces"]
    assert set(face["probabilities"]) == set(FER2013_CLASSES)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert 150 < face["box"]["x"] < 200 and 60 < face["box"]["y"] < 110
    assert records[1]["faces"] == []
    for name, reason in [("truncated.jpg", "corrupt"), ("notes.txt", "not an image"), ("empty.png", "not an image"), ("missing.jpg", "not found")]:
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    assert "Traceback" not in err


def test_text_output_names_the_emoji_and_says_no_face(photos, tiny_checkpoint, capsys):
    assert main([str(photos / "astronaut.jpg"), str(photos / "wall.png"), "--checkpoint", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert f"{photos / 'astronaut.jpg'}: 1 face" in out
    assert f"{photos / 'wall.png'}: no face found" in out


def test_detection_threshold_option(photos, tiny_checkpoint, capsys):
    assert main([str(photos / "astronaut.jpg"), "--checkpoint", str(tiny_checkpoint), "--json", "--min-confidence", "0.99"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"] == []


@pytest.mark.parametrize("kind", ["missing", "not a checkpoint"])
def test_bad_checkpoint_exits_2_with_a_message(photos, kind, capsys):
    checkpoint = photos / "nowhere.pt" if kind == "missing" else photos / "notes.txt"
    assert main([str(photos / "astronaut.jpg"), "--checkpoint", str(checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and str(checkpoint.name) in err


@pytest.mark.slow
def test_runs_as_a_module(photos, tiny_checkpoint):
    done = subprocess.run(
        [sys.executable, "-m", "emoji_mirror.predict", str(photos / "astronaut.jpg"), "--checkpoint", str(tiny_checkpoint), "--json"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["faces"]) == 1


def test_predict_image_takes_paths_and_rgb_arrays(photos, tiny_checkpoint):
    from_file = predict_image(photos / "astronaut.jpg", checkpoint=str(tiny_checkpoint))
    from_array = predict_image(astronaut(), checkpoint=str(tiny_checkpoint))
    assert len(from_file) == len(from_array) == 1
    assert from_file[0]["label"] in FER2013_CLASSES and from_file[0]["emoji"]
    assert predict_image(np.zeros((240, 320), np.uint8), checkpoint=str(tiny_checkpoint)) == []


def test_package_exposes_predict_image():
    import emoji_mirror
    from emoji_mirror.predict import predict_image

    assert emoji_mirror.predict_image is predict_image


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "which is not a TensorFlow Lite model"),
        (bytes(range(256)) * 20, "which is not a TensorFlow Lite model"),
        (b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 20, "is not a usable face detection model"),
    ],
    ids=["empty", "random", "tflite header, garbage after it"],
)
def test_a_face_model_that_is_not_one_exits_2_with_a_message(photos, tiny_checkpoint, capsys, monkeypatch, content, message):
    (photos / "model.tflite").write_bytes(content)
    monkeypatch.setenv(FACE_MODEL_ENV, str(photos / "model.tflite"))
    assert main([str(photos / "astronaut.jpg"), "--checkpoint", str(tiny_checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and message in err and str(photos / "model.tflite") in err and "Traceback" not in err, err


def contempt_checkpoint(path):
    """An 8-class FER+ checkpoint (contempt last) whose last layer always answers contempt, as FER+ models are saved."""
    model = create_model("resnet_fer_fast", num_classes=len(FERPLUS_CLASSES))
    last_layer = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
    with torch.no_grad():
        last_layer.weight.zero_()
        last_layer.bias.fill_(-10.0)
        last_layer.bias[FERPLUS_CLASSES.index("contempt")] = 10.0
    meta = {"dataset": "ferplus", "selection_split": "ferplus/public_test", "metrics": {}, "note": "test checkpoint: always contempt"}
    atomic_torch_save(checkpoint_payload(model, "resnet_fer_fast", {}, FERPLUS_CLASSES, Preprocessing(), meta), path)
    return path


def test_a_ferplus_checkpoint_answers_all_eight_classes_with_contempt(photos, tmp_path, capsys):
    checkpoint = contempt_checkpoint(tmp_path / "ferplus.pt")
    assert main([str(photos / "astronaut.jpg"), "--checkpoint", str(checkpoint), "--json"]) == 0
    face, = json.loads(capsys.readouterr().out)["faces"]
    assert set(face["probabilities"]) == set(FERPLUS_CLASSES)
    assert face["label"] == "contempt" and face["emoji"] == EMOJI["contempt"]
    photo = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)  # the Photo page's path: annotate_image draws its emoji
    with FaceDetector() as detector:
        annotated, faces = MirrorPipeline(EmotionClassifier.from_checkpoint(str(checkpoint)), detector).annotate_image(photo)
    assert [f.label for f in faces] == ["contempt"] and not np.array_equal(annotated, photo)
