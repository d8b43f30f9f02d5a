"""Real face crops for tests: scikit-image's astronaut as the mirror crops her, and FER2013's test faces."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
from skimage.data import astronaut

from emoji_mirror.detector import FaceBox
from emoji_mirror.pipeline import crop_face
from emoji_mirror.preprocessing import Preprocessing

ASTRONAUT_FACE = FaceBox(177, 82, 95, 95, 1.0)  # where her face is in skimage's 512x512 portrait
BOX_JITTER = ((0, 0, 1.0), (-6, 4, 1.0), (5, -5, 1.0), (0, 0, 0.9), (0, 0, 1.15), (-4, -3, 1.08))  # dx, dy px, scale


def astronaut_crops(cfg: Preprocessing | None = None) -> list[np.ndarray]:
    """Twelve grayscale crops of the astronaut's face framed as the live mirror frames a detector box: the box shifted
    and scaled a little, each crop also mirrored."""
    cfg = cfg or Preprocessing()
    frame = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    crops = []
    for dx, dy, scale in BOX_JITTER:
        side = round(ASTRONAUT_FACE.w * scale)
        box = FaceBox(ASTRONAUT_FACE.x + dx - (side - ASTRONAUT_FACE.w) // 2, ASTRONAUT_FACE.y + dy - (side - ASTRONAUT_FACE.h) // 2, side, side, 1.0)
        crop = crop_face(frame, box, cfg.face_margin, cfg.input_size, cfg.face_offset_y)
        crops += [crop, np.ascontiguousarray(crop[:, ::-1])]
    return crops


def fer2013_test_faces(zip_path: Path, count: int) -> list[np.ndarray]:
    """The first `count` PrivateTest faces of the real FER2013 zip (48x48 grayscale, every class), in a fixed order."""
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if "/PrivateTest_" in n and n.endswith(".jpg"))
        step = max(len(names) // count, 1)
        return [cv2.imdecode(np.frombuffer(archive.read(n), np.uint8), cv2.IMREAD_GRAYSCALE) for n in names[::step][:count]]
