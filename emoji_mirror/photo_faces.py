"""Faces in still photos, many and small: the whole-image pass plus overlapping tiles at finer scales, each tile's find
re-checked where the detector sees best and duplicates merged (the live video keeps its single fast pass)."""

from __future__ import annotations

import cv2
import numpy as np

from .detector import FaceBox, FaceDetector

DETECT_SIDE = 1280  # photos are searched at most this large (boxes are scaled back): faces of ~40 px and up are found
MIN_TILE = 192  # tile sides are halved from half the photo's side down to this (the detector itself looks at 128 x 128)
# A tile's find is re-checked in crops it spans these fractions of (the short-range model's best range), mirrored or not:
# a face scores high in each, the face-like patches of collars, flags or smooth noise that tiles also find fall short.
RECHECK_VIEWS = ((0.3, False), (0.45, True))
RECHECK_MARGIN = 0.1  # re-checks must pass the threshold moved this share of the way to 1 (0.5 -> 0.55)
SAME_FACE_IOU = 0.3  # boxes overlapping more than this are one face
PAD_VALUE = (128, 128, 128)


def overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    width = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    height = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = width * height
    return inter / (a.w * a.h + b.w * b.h - inter)


def moved(box: FaceBox, dx: int, dy: int, factor: float, shape: tuple[int, ...]) -> FaceBox:
    """A box shifted by (dx, dy), then scaled by `factor`, and cut to an image of `shape`."""
    x0, y0 = max(round((box.x + dx) * factor), 0), max(round((box.y + dy) * factor), 0)
    x1, y1 = min(round((box.x + dx + box.w) * factor), shape[1]), min(round((box.y + dy + box.h) * factor), shape[0])
    return box._replace(x=x0, y=y0, w=x1 - x0, h=y1 - y0)


def tile_sides(height: int, width: int) -> list[int]:
    """Tile sides from half the longer side, halving, down to MIN_TILE."""
    side, sides = max(height, width) // 2, []
    while side >= MIN_TILE:
        sides.append(side)
        side //= 2
    return sides


def tile_starts(length: int, tile: int) -> list[int]:
    """Offsets of half-overlapping tiles along one side, the last flush with the end: a face up to tile/2 fits in one."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, tile // 2)) + [length - tile]


def tile_finds(detector: FaceDetector, rgb: np.ndarray, min_confidence: float) -> list[FaceBox]:
    """Boxes found in every tile (in photo coordinates), best first; boxes cut by a tile's inner edge are left out."""
    height, width = rgb.shape[:2]
    finds = []
    for side in tile_sides(height, width):
        for y in tile_starts(height, side):
            for x in tile_starts(width, side):
                tile = rgb[y : y + side, x : x + side]
                tile_h, tile_w = tile.shape[:2]
                for box in detector.detect(tile, bgr=False, min_confidence=min_confidence):
                    cut = (box.x == 0 < x) or (box.y == 0 < y) or (box.x + box.w == tile_w and x + tile_w < width) or (box.y + box.h == tile_h and y + tile_h < height)
                    if not cut:
                        finds.append(box._replace(x=box.x + x, y=box.y + y))
    return sorted(finds, key=lambda b: b.score, reverse=True)


def view(detector: FaceDetector, rgb: np.ndarray, box: FaceBox, fraction: float, mirrored: bool, min_confidence: float) -> FaceBox | None:
    """The detector's box for `box` seen in a crop it spans `fraction` of (grey past the photo's edges, mirrored left to
    right if asked), or None."""
    side = round(max(box.w, box.h) / fraction)
    x0, y0 = round(box.x + box.w / 2 - side / 2), round(box.y + box.h / 2 - side / 2)
    height, width = rgb.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    crop = cv2.copyMakeBorder(rgb[cy0:cy1, cx0:cx1], cy0 - y0, y0 + side - cy1, cx0 - x0, x0 + side - cx1, cv2.BORDER_CONSTANT, value=PAD_VALUE)
    if mirrored:
        crop = np.ascontiguousarray(crop[:, ::-1])
    expected = box._replace(x=box.x - x0, y=box.y - y0)
    for found in detector.detect(crop, bgr=False, min_confidence=min_confidence):
        if mirrored:
            found = found._replace(x=side - found.x - found.w, roll=-found.roll)
        if overlap(found, expected) > SAME_FACE_IOU:
            return moved(found, x0, y0, 1.0, rgb.shape)
    return None


def recheck(detector: FaceDetector, rgb: np.ndarray, box: FaceBox, min_confidence: float) -> FaceBox | None:
    """`box` as the first of RECHECK_VIEWS sees it, with the lowest score of all, or None unless all find it."""
    threshold = min_confidence + RECHECK_MARGIN * (1 - min_confidence)
    views = []
    for fraction, mirrored in RECHECK_VIEWS:
        seen = view(detector, rgb, box, fraction, mirrored, threshold)
        if seen is None:
            return None
        views.append(seen)
    return views[0]._replace(score=min(v.score for v in views))


def find_faces(detector: FaceDetector, image_bgr: np.ndarray, min_confidence: float) -> list[FaceBox]:
    """Every face in a still BGR photo, best score first: the whole-image pass as in live video, then the tiles' finds that
    pass the re-check; searched at most DETECT_SIDE pixels large, boxes given in the photo's own pixels."""
    scale = min(1.0, DETECT_SIDE / max(image_bgr.shape[:2]))
    small = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image_bgr
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    faces = detector.detect(rgb, bgr=False, min_confidence=min_confidence)
    for find in tile_finds(detector, rgb, min_confidence):
        if any(overlap(find, face) > SAME_FACE_IOU for face in faces):
            continue
        checked = recheck(detector, rgb, find, min_confidence)
        if checked is not None and not any(overlap(checked, face) > SAME_FACE_IOU for face in faces):
            faces.append(checked)
    return sorted((moved(face, 0, 0, 1 / scale, image_bgr.shape) for face in faces), key=lambda b: b.score, reverse=True)
