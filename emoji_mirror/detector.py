"""Face boxes in a frame from MediaPipe's BlazeFace detector (Tasks API), with a confidence threshold settable per call."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from .face_model import SETUP_HINT, FaceModelError, find_face_model

# The task itself keeps everything above this floor; the caller's threshold filters the rest, so it can change per frame.
CONFIDENCE_FLOOR = 0.1
# A box's content, shrunk to at most THUMBNAIL_SIDE pixels square, must have neighbouring pixels that correlate at least
# this much: real faces (photos, webcam noise, FER2013 crops) measure 0.6 to 0.9, per-pixel random noise about 0.
THUMBNAIL_SIDE = 24
MIN_NEIGHBOUR_CORRELATION = 0.3


MAX_ROLL_DEGREES = 45.0  # BlazeFace finds faces turned about this far; a steeper eye line is a keypoint error


class FaceBox(NamedTuple):
    """A detected face: top-left corner, width and height in pixels (inside the frame), the detector's score, and the roll:
    the eye line's angle from level in degrees (positive when the eye on the image's right is lower)."""

    x: int
    y: int
    w: int
    h: int
    score: float
    roll: float = 0.0


def eye_roll(keypoints, width: int, height: int) -> float:
    """The eye line's angle from level, in degrees, from BlazeFace's normalised keypoints (the first two are the eyes)."""
    if len(keypoints) < 2:
        return 0.0
    (x0, y0), (x1, y1) = sorted(((k.x * width, k.y * height) for k in keypoints[:2]))  # left to right in the image
    return float(np.clip(np.degrees(np.arctan2(y1 - y0, x1 - x0)), -MAX_ROLL_DEGREES, MAX_ROLL_DEGREES))


def has_image_structure(gray: np.ndarray) -> bool:
    """Whether a grayscale region holds image structure (neighbouring pixels of its thumbnail correlate), not noise."""
    side = min(THUMBNAIL_SIDE, *gray.shape[:2])
    thumb = cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA).astype(np.float64)
    left, right = np.concatenate([thumb[:, :-1].ravel(), thumb[:-1].ravel()]), np.concatenate([thumb[:, 1:].ravel(), thumb[1:].ravel()])
    left, right = left - left.mean(), right - right.mean()
    scale = np.sqrt((left**2).sum() * (right**2).sum())
    return bool(scale > 0 and (left * right).sum() / scale >= MIN_NEIGHBOUR_CORRELATION)


class FaceDetector:
    """BlazeFace short-range (faces within ~2 m) in IMAGE mode; safe to share between threads.

    Close it (or use it as a context manager) when done: mediapipe's own cleanup fails noisily at interpreter exit
    and can hang when the cyclic garbage collector (rather than reference counting) is the one that frees it.
    """

    def __init__(self, model_path: str | Path | None = None, min_confidence: float = 0.5):
        """Raises FaceModelError when the model file is missing or is not a face detection model."""
        path = Path(model_path) if model_path else find_face_model()
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=CONFIDENCE_FLOOR,
        )
        try:
            self._task = vision.FaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as exc:  # MediaPipe's answer to a file that is not a face detection model
            raise FaceModelError(f"{path} is not a usable face detection model ({str(exc).strip() or type(exc).__name__}): {SETUP_HINT}") from None
        self._lock = threading.Lock()
        self._closed = False
        self.model_path = path
        self.min_confidence = min_confidence

    def detect(self, frame: np.ndarray, bgr: bool = True, min_confidence: float | None = None) -> list[FaceBox]:
        """Faces in a uint8 frame (BGR by default, RGB with bgr=False, or grayscale), best score first; boxes that hold
        per-pixel noise rather than image structure are dropped."""
        threshold = self.min_confidence if min_confidence is None else min_confidence
        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif bgr:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        else:
            rgb = np.ascontiguousarray(frame[..., :3])
        with self._lock:
            if self._closed:
                raise RuntimeError("this face detector has been closed")
            result = self._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        height, width = rgb.shape[:2]
        boxes = []
        for detection in result.detections:
            score = detection.categories[0].score
            if score < threshold:
                continue
            box = detection.bounding_box
            x0, y0 = max(box.origin_x, 0), max(box.origin_y, 0)
            x1, y1 = min(box.origin_x + box.width, width), min(box.origin_y + box.height, height)
            if x1 > x0 and y1 > y0 and has_image_structure(cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)):
                boxes.append(FaceBox(x0, y0, x1 - x0, y1 - y0, float(score), eye_roll(detection.keypoints, width, height)))
        return sorted(boxes, key=lambda b: b.score, reverse=True)

    def close(self) -> None:
        """Release the native MediaPipe task (waits for a detection in progress); later detect() calls raise."""
        with self._lock:
            self._closed = True
            self._task.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
