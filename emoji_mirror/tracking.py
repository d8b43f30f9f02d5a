"""Follow faces from frame to frame and smooth each one's class probabilities so the emoji does not flicker."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detector import FaceBox


@dataclass
class Track:
    """One face followed over frames: its last box, smoothed probabilities and how many frames it has been unseen."""

    track_id: int
    box: FaceBox
    probs: np.ndarray
    classified_at: float = 0.0  # clock time of the last classification folded into probs
    missed: int = 0

    @property
    def label(self) -> int:
        """The class shown for this face: the top of its smoothed probabilities."""
        return int(np.argmax(self.probs))


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    inter_w = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    inter_h = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = inter_w * inter_h
    return inter / (a.w * a.h + b.w * b.h - inter) if inter else 0.0


def centre_shift(a: FaceBox, b: FaceBox) -> float:
    """Distance between the boxes' centres, in units of the first box's side."""
    dx = (a.x + a.w / 2) - (b.x + b.w / 2)
    dy = (a.y + a.h / 2) - (b.y + b.h / 2)
    return float(np.hypot(dx, dy) / max(a.w, a.h, 1))


class FaceTracker:
    """Matches each frame's faces to existing tracks (best IoU, or a small centre shift for fast moves) and keeps an
    exponential moving average of their probabilities; a track unseen for more than `max_missed` frames is dropped.

    Hysteresis with a fast switch: the average keeps a face's emoji steady against noise, but when a fresh
    classification puts another class at least `switch_margin` ahead of the shown one, the track takes the fresh
    probabilities at once (a real change of expression shows in the next frame instead of two or three later)."""

    def __init__(self, smoothing: float = 0.6, max_missed: int = 5, min_iou: float = 0.3, max_shift: float = 0.5, switch_margin: float = 0.5):
        self.smoothing = smoothing  # weight of the past in the average: 0 = no smoothing, towards 1 = very steady
        self.max_missed = max_missed
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.switch_margin = switch_margin  # fresh lead over the shown class that switches at once (> 1: never)
        self.label_changes = 0  # times a followed face's shown class changed, since this tracker began
        self.tracks: list[Track] = []
        self._ids = count(1)

    def matches(self, boxes: list[FaceBox]) -> dict[int, int]:
        """{box index: track index} for the pairs close enough to be the same face, found by optimal assignment."""
        if not boxes or not self.tracks:
            return {}
        overlap = np.array([[iou(t.box, b) for b in boxes] for t in self.tracks])
        shift = np.array([[centre_shift(t.box, b) for b in boxes] for t in self.tracks])
        rows, cols = linear_sum_assignment(shift - overlap)
        return {c: r for r, c in zip(rows, cols) if overlap[r, c] >= self.min_iou or shift[r, c] <= self.max_shift}

    def due(self, boxes: list[FaceBox], matches: dict[int, int], now: float, interval: float) -> list[bool]:
        """Which faces need a fresh classification: new ones, and those whose track was last classified at least
        `interval` seconds before `now`."""
        return [i not in matches or now - self.tracks[matches[i]].classified_at >= interval for i in range(len(boxes))]

    def update(self, boxes: list[FaceBox], probs: np.ndarray, now: float = 0.0, matches: dict[int, int] | None = None) -> tuple[np.ndarray, list[int]]:
        """Smoothed (N, C) probabilities and a track id for each of this frame's N faces. A row of NaN in `probs` means
        the face was not classified this frame: its track keeps its probabilities (and just follows the box). `matches`
        is self.matches(boxes) when the caller already has it."""
        matches = self.matches(boxes) if matches is None else matches
        keep = 1.0 - self.smoothing
        smoothed, ids, seen = [], [], set()
        for i, (box, p) in enumerate(zip(boxes, probs)):
            fresh = not np.isnan(p).any()
            if i in matches:
                track = self.tracks[matches[i]]
                if fresh:
                    shown = track.label
                    clear_switch = p[shown] + self.switch_margin <= p.max()
                    track.probs = np.asarray(p, dtype=np.float32).copy() if clear_switch else self.smoothing * track.probs + keep * p
                    track.classified_at = now
                    self.label_changes += track.label != shown
                track.box, track.missed = box, 0
            elif fresh:
                track = Track(next(self._ids), box, np.asarray(p, dtype=np.float32).copy(), now)
                self.tracks.append(track)
            else:
                raise ValueError(f"face {i} is new (no track) and was not classified")
            seen.add(track.track_id)
            smoothed.append(track.probs)
            ids.append(track.track_id)
        for track in self.tracks:
            if track.track_id not in seen:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        width = probs.shape[1] if np.ndim(probs) == 2 else 0
        return (np.stack(smoothed) if smoothed else np.zeros((0, width), dtype=np.float32)), ids

    def reset(self) -> None:
        """Forget every track (e.g. when the model changes, its classes may differ)."""
        self.tracks = []
