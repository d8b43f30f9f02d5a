"""Face alignment: the detector's eye keypoints give each face's roll, and the crop turns the face upright (issue 19)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from emoji_mirror.detector import FaceDetector
from emoji_mirror.pipeline import crop_face
from emoji_mirror.preprocessing import Preprocessing


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as found:
        yield found


def turned(image: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    return cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, degrees, 1.0), image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.mark.parametrize("degrees", [20, -20])
def test_alignment_brings_a_face_turned_20_degrees_back_upright(detector, degrees):
    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    prep = Preprocessing()
    upright_box = detector.detect(photo)[0]
    assert 2 < upright_box.roll < 9, upright_box  # her head leans a little: the eye on the image's right is lower
    upright = crop_face(photo, upright_box, prep.face_margin, prep.input_size, prep.face_offset_y, align=True)

    centre = (upright_box.x + upright_box.w / 2, upright_box.y + upright_box.h / 2)
    tilted = turned(photo, degrees, centre)  # positive: counter-clockwise, so the eye on the image's left drops
    box = detector.detect(tilted)[0]
    assert (upright_box.roll - box.roll) * np.sign(degrees) > 10, box  # the eye line turned the other way, by about as much
    plain = crop_face(tilted, box, prep.face_margin, prep.input_size, prep.face_offset_y)
    aligned = crop_face(tilted, box, prep.face_margin, prep.input_size, prep.face_offset_y, align=True)
    assert correlation(aligned, upright) > correlation(plain, upright) + 0.1, (correlation(aligned, upright), correlation(plain, upright))


def test_a_level_face_is_cropped_exactly_as_without_alignment(detector):
    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    box = detector.detect(photo)[0]._replace(roll=0.4)  # under a degree: not worth a resampling
    prep = Preprocessing()
    np.testing.assert_array_equal(crop_face(photo, box, prep.face_margin, 48, prep.face_offset_y, align=True),
                                  crop_face(photo, box, prep.face_margin, 48, prep.face_offset_y))
