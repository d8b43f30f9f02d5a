"""The face model is found/fetched and verified, and the real MediaPipe detector finds real faces and nothing else."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from emoji_mirror import face_model
from emoji_mirror.detector import FaceBox, FaceDetector
from emoji_mirror.face_model import FaceModelError

ASTRONAUT_FACE = FaceBox(177, 82, 95, 95, 1.0)  # where her face is in skimage's 512x512 portrait


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as face_detector:
        yield face_detector


def overlap(a: FaceBox, b: FaceBox) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return ix * iy / (a.w * a.h + b.w * b.h - ix * iy)


def fer2013_faces(zip_path, count: int) -> list[np.ndarray]:
    """The first `count` PrivateTest faces of the real dataset (48x48 grayscale), in a fixed order."""
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if "/happy/PrivateTest_" in n)[:count]
        return [cv2.imdecode(np.frombuffer(archive.read(n), np.uint8), cv2.IMREAD_GRAYSCALE) for n in names]


def test_finds_the_astronaut_in_rgb_bgr_and_grayscale(detector):
    rgb = astronaut()
    for frame, bgr in ((rgb, False), (cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), True), (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), True)):
        faces = detector.detect(frame, bgr=bgr)
        assert len(faces) == 1
        assert overlap(faces[0], ASTRONAUT_FACE) > 0.7
        assert faces[0].score > 0.8


def test_finds_upscaled_fer2013_faces_where_they_were_pasted(detector, fer2013_zip):
    pasted = FaceBox(240, 160, 160, 160, 1.0)
    found = 0
    for face in fer2013_faces(fer2013_zip, 12):
        frame = np.full((480, 640, 3), 120, dtype=np.uint8)
        frame[pasted.y : pasted.y + pasted.h, pasted.x : pasted.x + pasted.w] = cv2.resize(face, (pasted.w, pasted.h), interpolation=cv2.INTER_CUBIC)[..., None]
        boxes = detector.detect(frame)
        assert len(boxes) <= 1
        if boxes:
            assert overlap(boxes[0], pasted) > 0.3
            found += 1
    assert found >= 8, f"only {found} of 12 upscaled FER2013 faces detected"


def test_no_face_in_blank_or_noisy_frames(detector):
    """A black frame and a camera's view of a plain wall (grey plus sensor noise) hold no face.

    (Full-range per-pixel random noise is not included: BlazeFace scores some such frames up to ~0.67.)"""
    rng = np.random.default_rng(0)
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    for _ in range(5):
        wall = np.clip(rng.normal(128, 25, (480, 640, 3)), 0, 255).astype(np.uint8)
        assert detector.detect(wall) == []


def test_confidence_threshold_is_settable_per_call_and_per_detector(detector):
    rgb = astronaut()
    score = detector.detect(rgb, bgr=False)[0].score
    assert detector.detect(rgb, bgr=False, min_confidence=min(score + 0.01, 1.0)) == []
    detector.min_confidence = min(score + 0.01, 1.0)
    try:
        assert detector.detect(rgb, bgr=False) == []
    finally:
        detector.min_confidence = 0.5
    assert len(detector.detect(rgb, bgr=False)) == 1


def test_boxes_of_a_face_cut_by_the_frame_edge_stay_inside_the_frame(detector):
    frame = astronaut()[60:, 200:]  # the face now sticks out of the left edge
    faces = detector.detect(frame, bgr=False)
    assert len(faces) == 1
    box = faces[0]
    assert box.x == 0 and box.x + box.w <= frame.shape[1] and box.y >= 0 and box.y + box.h <= frame.shape[0]


# ---------------------------------------------------------------- the model file


def test_model_override_by_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(face_model.FACE_MODEL_ENV, str(tmp_path / "missing.tflite"))
    with pytest.raises(FaceModelError, match="not a file"):
        face_model.find_face_model()
    real = face_model.MODEL_FILE
    monkeypatch.setenv(face_model.FACE_MODEL_ENV, str(real))
    assert face_model.ensure_face_model() == real


def test_cached_model_with_wrong_checksum_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(face_model.FACE_MODEL_ENV, raising=False)
    tampered = tmp_path / "face.tflite"
    tampered.write_bytes(b"not the model")
    monkeypatch.setattr(face_model, "MODEL_FILE", tampered)
    with pytest.raises(FaceModelError, match="checksum"):
        face_model.find_face_model()


def test_fetch_falls_back_verifies_and_caches(monkeypatch, tmp_path):
    """No network here: the two sources are replaced by stand-ins returning the real model's bytes or failing."""
    real_bytes = face_model.find_face_model().read_bytes()
    monkeypatch.delenv(face_model.FACE_MODEL_ENV, raising=False)
    monkeypatch.setattr(face_model, "MODEL_FILE", tmp_path / "models" / "face.tflite")

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(face_model, "_from_wheel", offline)
    monkeypatch.setattr(face_model, "_from_url", lambda: b"an HTML error page")
    with pytest.raises(FaceModelError) as failure:
        face_model.ensure_face_model()
    assert "no network" in str(failure.value) and "not a pinned one" in str(failure.value) and face_model.FACE_MODEL_ENV in str(failure.value)
    assert not face_model.MODEL_FILE.exists()

    monkeypatch.setattr(face_model, "_from_url", lambda: real_bytes)
    assert face_model.ensure_face_model() == face_model.MODEL_FILE
    assert face_model.MODEL_FILE.read_bytes() == real_bytes
    with FaceDetector(face_model.MODEL_FILE) as fresh:
        assert len(fresh.detect(astronaut(), bgr=False)) == 1
