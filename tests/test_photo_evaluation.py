"""`python -m training.evaluate --photos`: labelled photos scored end to end as the app runs them (issue 19)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from emoji_mirror.checkpoint import load_model
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.detector import FaceDetector
from training.evaluate.__main__ import main
from training.evaluate.photos import NO_FACE, open_photo_set, score_photos


@pytest.fixture
def photo_folder(tmp_path):
    """Two astronaut photos labelled happy (one turned 15 degrees), a flat grey photo labelled sad (no face), a text file
    posing as a photo, and a labels.csv that also lists a photo that is not there."""
    folder = tmp_path / "mine"
    folder.mkdir()
    portrait = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(folder / "a.png"), portrait)
    cv2.imwrite(str(folder / "b.jpg"), cv2.warpAffine(portrait, cv2.getRotationMatrix2D((224, 130), 15, 1.0), (512, 512)))
    cv2.imwrite(str(folder / "grey.png"), np.full((200, 200, 3), 128, np.uint8))
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "labels.csv").write_text("path,label\na.png,happy\nb.jpg,Happiness\ngrey.png,sad\nnotes.jpg,angry\ngone.png,fear\n")
    return folder


def test_photos_are_scored_and_bad_files_reported_not_fatal(photo_folder, tiny_checkpoint):
    photos = open_photo_set(photo_folder)
    assert photos.name == "mine" and len(photos.items) == 5
    with FaceDetector() as detector:
        scores = score_photos(photos, EmotionClassifier(load_model(tiny_checkpoint)), detector, progress=False)
    assert len(scores.skipped) == 2
    assert any(s.startswith("notes.jpg: not an image") for s in scores.skipped) and "gone.png: file not found" in scores.skipped
    assert scores.labels == [3, 3, 4] and scores.predictions[2] == NO_FACE and NO_FACE not in scores.predictions[:2]
    metrics, per_class, confusion = scores.report()
    assert metrics["n"] == 3 and metrics["detection_rate"] == pytest.approx(66.67)
    assert per_class["sad"]["support"] == 1 and per_class["sad"]["recall"] == 0  # no face found: wrong
    assert sum(map(sum, confusion)) == 2  # the two photos with a face


def test_the_command_merges_photos_into_the_summary_beside_the_crop_scores(photo_folder, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    fer_scores = {"fer2013/public_test": {"accuracy": 50.0, "macro_f1": 40.0, "mean_recall": 45.0, "n": 10}}
    (out / "summary.json").write_text(json.dumps({"models": [{"name": "baseline_cnn", "params": 1, "selection_split": "fer2013/public_test",
                                                                "metrics": fer_scores, "latency_ms_per_face": {"batch1": 0.5, "batch8": 0.2}}]}))
    assert main(["--photos", str(photo_folder), "--checkpoints", str(tiny_checkpoint), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "skipped: notes.jpg: not an image" in captured.err and "skipped: gone.png: file not found" in captured.err
    assert "baseline_cnn on photos/mine (end to end, no face = wrong)" in captured.out
    entry, = json.loads((out / "summary.json").read_text())["models"]
    assert entry["metrics"]["fer2013/public_test"] == fer_scores["fer2013/public_test"] and entry["latency_ms_per_face"] == {"batch1": 0.5, "batch8": 0.2}
    assert entry["metrics"]["photos/mine"]["n"] == 3 and len(entry["confusion_matrix"]["photos/mine"]) == 7


def test_a_folder_of_class_folders_needs_no_labels_file(tmp_path):
    for label in ("happy", "Sadness"):
        (tmp_path / "set" / label).mkdir(parents=True)
        (tmp_path / "set" / label / "x.png").write_bytes(b"")
    photos = open_photo_set(tmp_path / "set")
    assert sorted(photos.items) == [("Sadness/x.png", "Sadness"), ("happy/x.png", "happy")]
