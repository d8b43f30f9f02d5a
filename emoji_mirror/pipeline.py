"""The live mirror: detect faces, crop them, classify all crops in one batch, smooth per face, draw the emoji."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .classifier import EmotionClassifier
from .detector import FaceBox, FaceDetector
from .face_result import FaceResult
from .overlay import STYLES, Overlay
from .photo_faces import find_faces
from .tracking import FaceTracker

STAGES = ("detect", "crop", "classify", "draw", "total")
TIMING_EMA = 0.9  # weight of the past in the per-stage millisecond averages
FPS_WINDOW_S = 2.0
MIN_ROLL_DEGREES = 1.0  # faces turned less are cropped as they are
BUSY_CLASSIFY_S = 0.1  # with N viewers sharing the server, each face is classified at most every (N - 1) x this


@dataclass(frozen=True)
class MirrorSettings:
    """What the user can change while the video runs."""

    min_confidence: float = 0.5  # face detector threshold
    smoothing: float = 0.6  # 0 = off; weight of past classifications in each face's probability average
    classify_interval_s: float = 0.0  # live video: a tracked face is classified again after this long (0 = every frame)
    unsure_below: float = 0.4  # top probability under this draws the "unsure" look
    align: bool = True  # turn each face so that its eyes are level before cropping
    style: str = STYLES[0]

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"unknown overlay style {self.style!r}; choose one of {', '.join(STYLES)}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.classify_interval_s < 0:
            raise ValueError(f"classify_interval_s must be >= 0, got {self.classify_interval_s}")


def busy_settings(settings: MirrorSettings, viewers: int) -> tuple[MirrorSettings, int]:
    """What one viewer's frames get when `viewers` share the server: classification at most every (N - 1) x 100 ms per
    face, and detection on one frame in N (the tracks carry the boxes between; while no face is seen, every frame is
    searched). One viewer gets the settings as they are."""
    if viewers <= 1:
        return settings, 1
    interval = max(settings.classify_interval_s, BUSY_CLASSIFY_S * (viewers - 1))
    return replace(settings, classify_interval_s=interval), viewers


class PipelineStats:
    """Counters and per-stage timings, written by the video thread and read by the page (always under a lock)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.frames = 0
        self.frames_with_faces = 0
        self.faces = 0
        self.emoji_drawn = 0
        self.label_changes = 0  # times a followed face's emoji changed (flicker, on a steady face)
        self.stage_ms = dict.fromkeys(STAGES, 0.0)
        self._stage_ms_sum = dict.fromkeys(STAGES, 0.0)
        self._frame_times: deque[float] = deque()

    def record(self, faces: int, emoji_drawn: int, stage_ms: dict[str, float], now: float, label_changes: int = 0) -> None:
        with self._lock:
            self.label_changes = label_changes
            first = self.frames == 0
            self.frames += 1
            self.frames_with_faces += faces > 0
            self.faces += faces
            self.emoji_drawn += emoji_drawn
            for stage, ms in stage_ms.items():
                self.stage_ms[stage] = ms if first else TIMING_EMA * self.stage_ms[stage] + (1 - TIMING_EMA) * ms
                self._stage_ms_sum[stage] += ms
            self._frame_times.append(now)
            while now - self._frame_times[0] > FPS_WINDOW_S:
                self._frame_times.popleft()

    def snapshot(self) -> dict:
        """A consistent copy: counters, ms per stage (recent moving average and all-time mean), received fps and the
        fps that processing time allows."""
        with self._lock:
            times = self._frame_times
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            total = self.stage_ms["total"]
            return {
                "frames": self.frames,
                "frames_with_faces": self.frames_with_faces,
                "faces": self.faces,
                "emoji_drawn": self.emoji_drawn,
                "label_changes": self.label_changes,
                "stage_ms": dict(self.stage_ms),
                "mean_stage_ms": {stage: total / max(self.frames, 1) for stage, total in self._stage_ms_sum.items()},
                "fps": (len(times) - 1) / span if span else 0.0,
                "max_fps": 1000.0 / total if total else 0.0,
            }


def square(image: np.ndarray, centre_x: float, centre_y: float, side: int) -> np.ndarray:
    """The side x side grayscale square centred on (centre_x, centre_y) of a BGR or gray image, edges replicated."""
    x0, y0 = round(centre_x - side / 2), round(centre_y - side / 2)
    height, width = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    region = image[cy0:cy1, cx0:cx1]
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY) if region.ndim == 3 else region
    return cv2.copyMakeBorder(gray, cy0 - y0, y0 + side - cy1, cx0 - x0, x0 + side - cx1, cv2.BORDER_REPLICATE)


def crop_face(frame_bgr: np.ndarray, box: FaceBox, margin: float, size: int, offset_y: float = 0.0, align: bool = False) -> np.ndarray:
    """Square grayscale crop around the box, `margin` of its side added on each side and its centre moved down by
    `offset_y` of its side (edges replicated), resized to size x size. With `align`, the face is first turned about the
    box's centre by its roll, so that the eyes are level (FER2013's faces are upright)."""
    box_side = max(box.w, box.h)
    side = round(box_side * (1 + 2 * margin))
    centre_x, centre_y = box.x + box.w / 2, box.y + box.h / 2
    if align and abs(box.roll) >= MIN_ROLL_DEGREES:
        reach = math.ceil(side * math.sqrt(2) + 2 * abs(offset_y) * box_side)  # holds the turned square wherever it lies
        region = square(frame_bgr, centre_x, centre_y, reach)
        shrink = min(1.0, 2 * size / side)  # turned at twice the output's resolution: a big face costs no more than a small one
        if shrink < 1:
            reach = max(1, round(reach * shrink))
            region = cv2.resize(region, (reach, reach), interpolation=cv2.INTER_AREA)
        turn = cv2.getRotationMatrix2D((reach / 2, reach / 2), box.roll, 1.0)
        region = cv2.warpAffine(region, turn, (reach, reach), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        face = square(region, reach / 2, reach / 2 + offset_y * box_side * shrink, max(1, round(side * shrink)))
    else:
        face = square(frame_bgr, centre_x, centre_y + offset_y * box_side, side)
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)


class MirrorPipeline:
    """One frame in, the same frame annotated out; settings and the classifier can be swapped from another thread."""

    def __init__(self, classifier: EmotionClassifier, detector: FaceDetector, settings: MirrorSettings | None = None, overlay: Overlay | None = None):
        self.detector = detector
        self.overlay = overlay or Overlay()
        self.stats = PipelineStats()
        self._lock = threading.Lock()
        self._classifier = classifier
        self._settings = settings or MirrorSettings()
        self._tracker = FaceTracker(self._settings.smoothing)
        self._boxes: list[FaceBox] = []  # the last detected boxes, reused on frames a busy server skips detection
        self._undetected = 0  # frames since the last detection

    @property
    def settings(self) -> MirrorSettings:
        with self._lock:
            return self._settings

    @property
    def classifier(self) -> EmotionClassifier:
        with self._lock:
            return self._classifier

    def update_settings(self, **changes) -> MirrorSettings:
        """Change some settings (validated); the next frame uses them."""
        with self._lock:
            self._settings = replace(self._settings, **changes)
            self._tracker.smoothing = self._settings.smoothing
            return self._settings

    def set_classifier(self, classifier: EmotionClassifier) -> None:
        """Use another model from the next frame on (tracks are reset: their probabilities belong to the old one)."""
        with self._lock:
            if classifier is not self._classifier:
                self._classifier = classifier
                self._tracker.reset()

    @staticmethod
    def _classify(frame_bgr: np.ndarray, boxes: list[FaceBox], wanted: list[bool], classifier: EmotionClassifier, align: bool, timings: dict) -> np.ndarray:
        """(N, C) probabilities for the boxes, in one batch; rows of faces not `wanted` stay NaN."""
        start = time.perf_counter()
        prep = classifier.preprocessing
        index = [i for i, want in enumerate(wanted) if want]
        crops = [crop_face(frame_bgr, boxes[i], prep.face_margin, prep.input_size, prep.face_offset_y, align) for i in index]
        cropped = time.perf_counter()
        probs = np.full((len(boxes), len(classifier.classes)), np.nan, dtype=np.float32)
        if index:
            probs[index] = classifier.predict(crops)
        timings.update(crop=(cropped - start) * 1e3, classify=(time.perf_counter() - cropped) * 1e3)
        return probs

    @staticmethod
    def _results(classifier: EmotionClassifier, boxes: list[FaceBox], probs: np.ndarray, track_ids: list[int | None]) -> list[FaceResult]:
        best = probs.argmax(axis=1) if len(boxes) else []
        return [
            FaceResult(box, classifier.classes[k], classifier.emojis[k], float(p[k]), p, track_id)
            for box, p, k, track_id in zip(boxes, probs, best, track_ids)
        ]

    def _draw(self, frame_bgr: np.ndarray, results: list[FaceResult], settings: MirrorSettings, numbered: bool = False) -> int:
        if not results:
            self.overlay.draw_no_face(frame_bgr)
            return 0
        return self.overlay.draw_faces(frame_bgr, results, settings.style, settings.unsure_below, numbered)

    def process(self, frame_bgr: np.ndarray, viewers: int = 1) -> tuple[np.ndarray, list[FaceResult]]:
        """Annotate one video frame IN PLACE (and return it) with smoothed per-face results; updates the stats. With
        several `viewers` sharing the server, it does less per frame (busy_settings)."""
        start = time.perf_counter()
        with self._lock:  # held for the frame (~10 ms): a settings or model change waits for it, tracks stay consistent
            (settings, detect_every), classifier = busy_settings(self._settings, viewers), self._classifier
            self._undetected += 1
            if self._undetected >= detect_every or not self._boxes:
                self._boxes = self.detector.detect(frame_bgr, min_confidence=settings.min_confidence)
                self._undetected = 0
            boxes = self._boxes
            detected = time.perf_counter()
            matches = self._tracker.matches(boxes)
            due = self._tracker.due(boxes, matches, start, settings.classify_interval_s)
            timings = {"detect": (detected - start) * 1e3}
            probs = self._classify(frame_bgr, boxes, due, classifier, settings.align, timings)
            probs, track_ids = self._tracker.update(boxes, probs, start, matches)
            label_changes = self._tracker.label_changes
        results = self._results(classifier, boxes, probs, track_ids)
        drawn_at = time.perf_counter()
        emoji_drawn = self._draw(frame_bgr, results, settings)
        end = time.perf_counter()
        timings.update(draw=(end - drawn_at) * 1e3, total=(end - start) * 1e3)
        self.stats.record(len(results), emoji_drawn, timings, end, label_changes)
        return frame_bgr, results

    def annotate_image(self, image_bgr: np.ndarray, numbered: bool = False) -> tuple[np.ndarray, list[FaceResult]]:
        """Annotated copy of a still photo (BGR) and its faces, small ones and crowds included (see photo_faces); no
        smoothing, tracks or stats involved. Faces come left to right (by box centre); `numbered`
        puts each face's place in the returned list (from 1) on its box."""
        with self._lock:
            settings, classifier = self._settings, self._classifier
        annotated = np.ascontiguousarray(image_bgr).copy()
        boxes = find_faces(self.detector, annotated, settings.min_confidence)  # a photo: worth the passes that find small faces and crowds
        boxes = sorted(boxes, key=lambda box: (box.x + box.w / 2, box.y + box.h / 2))
        probs = self._classify(annotated, boxes, [True] * len(boxes), classifier, settings.align, {})
        results = self._results(classifier, boxes, probs, [None] * len(boxes))
        self._draw(annotated, results, settings, numbered)
        return annotated, results
