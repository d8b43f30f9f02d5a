"""FaceResult: one face in one frame, as the pipeline returns it and the overlay draws it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .detector import FaceBox


class FaceResult(NamedTuple):
    """One face in one frame: where, what the model says (smoothed in live video) and which track it belongs to."""

    box: FaceBox
    label: str
    emoji: str
    confidence: float
    probs: np.ndarray
    track_id: int | None
