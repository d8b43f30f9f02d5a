"""The live crop reproduces FER2013's framing: calibrated on upscaled real faces with the real MediaPipe detector."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from emoji_mirror.detector import FaceBox, FaceDetector
from emoji_mirror.preprocessing import Preprocessing
from training.data.framing import box_geometry, crop_correlation, measure_framing


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as face_detector:
        yield face_detector


@pytest.fixture(scope="module")
def public_faces(fer2013_zip) -> list[np.ndarray]:
    """40 PublicTest faces, every class, in a fixed order (48x48 grayscale)."""
    with zipfile.ZipFile(fer2013_zip) as archive:
        names = sorted(n for n in archive.namelist() if "/PublicTest_" in n)[::90][:40]
        return [cv2.imdecode(np.frombuffer(archive.read(n), np.uint8), cv2.IMREAD_GRAYSCALE) for n in names]


def test_box_geometry_solves_the_crop_rule():
    square = FaceBox(100, 100, 120, 120, 1.0)
    assert box_geometry(FaceBox(110, 110, 100, 100, 1.0), square) == pytest.approx((0.1, 0.0, 0.0))
    margin, offset_x, offset_y = box_geometry(FaceBox(110, 130, 100, 100, 1.0), square)  # box sits 20 px low
    assert margin == pytest.approx(0.1) and offset_x == pytest.approx(0.0) and offset_y == pytest.approx(-0.2)


def test_default_framing_matches_the_measured_one(detector, public_faces):
    framing = measure_framing(public_faces, detector)
    assert framing.found >= 0.8 * framing.tried
    default = Preprocessing()
    assert framing.face_margin == pytest.approx(default.face_margin, abs=0.03)
    assert framing.face_offset_y == pytest.approx(default.face_offset_y, abs=0.03)
    assert abs(framing.offset_x) < 0.03


def test_live_crop_of_an_upscaled_face_lines_up_with_the_original(detector, public_faces):
    cfg = Preprocessing()
    calibrated = [crop_correlation(f, detector, cfg.face_margin, cfg.face_offset_y) for f in public_faces]
    old = [crop_correlation(f, detector, 0.1, 0.0) for f in public_faces]
    pairs = [(c, o) for c, o in zip(calibrated, old) if c is not None and o is not None]
    assert len(pairs) >= 30
    calibrated, old = np.array(pairs).T
    assert np.median(calibrated) > 0.55  # a face and its own crop; unrelated faces correlate around 0.2
    assert np.median(calibrated - old) > 0.05  # and clearly better than the old centred framing
