"""Calibrate the live crop to FER2013's framing: `python -m training.data.framing --data PATH` prints face_margin and face_offset_y.

FER2013 faces are upscaled and pasted on a larger grey frame at a known square; MediaPipe's box for each is expressed in
units of its own side, and the crop that reproduces the pasted square (the face's original 48 x 48 framing) is solved
for: side = box side * (1 + 2 * margin), centre = box centre + offset_y * box side. Medians over all faces found.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from emoji_mirror.detector import FaceBox, FaceDetector
from emoji_mirror.pipeline import crop_face

FRAME = (640, 480)  # width, height
PASTE_SIZES = (160, 240)  # face side in the frame, pixels: a webcam face near and nearer
BACKGROUND = 120


@dataclass(frozen=True)
class Framing:
    """The crop settings that reproduce FER2013's framing from the detector's box, and how they were measured."""

    face_margin: float
    face_offset_y: float
    offset_x: float  # should be ~0: faces are centred horizontally in FER2013
    found: int
    tried: int


def paste(face: np.ndarray, size: int, frame_size=FRAME) -> tuple[np.ndarray, FaceBox]:
    """A grey BGR frame with the face upscaled to size x size at its centre, and the square it occupies."""
    width, height = frame_size
    frame = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x, y = (width - size) // 2, (height - size) // 2
    frame[y : y + size, x : x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
    return frame, FaceBox(x, y, size, size, 1.0)


def box_geometry(box: FaceBox, square: FaceBox) -> tuple[float, float, float]:
    """(margin, offset_x, offset_y) that turn `box` into `square` under crop_face's rule, in units of the box side."""
    side = max(box.w, box.h)
    margin = (square.w / side - 1) / 2
    offset_x = (square.x + square.w / 2 - (box.x + box.w / 2)) / side
    offset_y = (square.y + square.h / 2 - (box.y + box.h / 2)) / side
    return margin, offset_x, offset_y


def measure_framing(faces: list[np.ndarray], detector: FaceDetector, sizes=PASTE_SIZES) -> Framing:
    """Median crop geometry over every (face, size) the detector finds exactly one face in."""
    rows = []
    for face in faces:
        for size in sizes:
            frame, square = paste(face, size)
            boxes = detector.detect(frame)
            if len(boxes) == 1:
                rows.append(box_geometry(boxes[0], square))
    if not rows:
        raise ValueError("the detector found none of the pasted faces")
    margin, offset_x, offset_y = np.median(np.array(rows), axis=0)
    return Framing(round(float(margin), 3), round(float(offset_y), 3), round(float(offset_x), 3), len(rows), len(faces) * len(sizes))


def crop_correlation(face: np.ndarray, detector: FaceDetector, margin: float, offset_y: float, size: int = PASTE_SIZES[0]) -> float | None:
    """Pixel correlation between a face and the live crop of its pasted copy (None when the detector misses it)."""
    frame, _ = paste(face, size)
    boxes = detector.detect(frame)
    if len(boxes) != 1:
        return None
    crop = crop_face(frame, boxes[0], margin, face.shape[0], offset_y).astype(np.float64)
    return float(np.corrcoef(crop.ravel(), face.astype(np.float64).ravel())[0, 1])


def main(argv: list[str] | None = None) -> int:
    from .cache import load_dataset
    from .dataset import DataError

    p = argparse.ArgumentParser(prog="python -m training.data.framing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="FER2013 zip, folder or fer2013.csv (default: $EMOJI_MIRROR_DATA)")
    p.add_argument("--cache-dir", help="decoded-data cache (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    p.add_argument("--split", default="public_test", help="which split's faces to place")
    p.add_argument("--faces", type=int, default=400, help="how many faces (evenly spaced through the split)")
    args = p.parse_args(argv)
    try:
        dataset = load_dataset(args.data, args.cache_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = dataset.splits[args.split].images
    faces = list(images[np.linspace(0, len(images) - 1, min(args.faces, len(images))).astype(int)])
    with FaceDetector() as detector:
        framing = measure_framing(faces, detector)
        print(f"{dataset.name}/{args.split}: {framing.found} of {framing.tried} pasted faces found (sizes {PASTE_SIZES} px)")
        print(f"face_margin {framing.face_margin}  face_offset_y {framing.face_offset_y}  (horizontal offset {framing.offset_x}, ~0 expected)")
        for margin, offset in ((0.1, 0.0), (0.0, 0.0), (framing.face_margin, framing.face_offset_y)):
            corr = [c for c in (crop_correlation(f, detector, margin, offset) for f in faces[:100]) if c is not None]
            print(f"  crop margin {margin:+.3f} offset_y {offset:+.3f}: median correlation with the original face {np.median(corr):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
