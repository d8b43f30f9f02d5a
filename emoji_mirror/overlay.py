"""Draw each face's box, colour emoji (alpha-blended PNG) and label on a BGR frame, or a "no face" banner."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .face_result import FaceResult
from .labels import EMOJI

EMOJI_DIR = Path(__file__).resolve().parent / "assets" / "emoji"
STYLES = ("emoji above face", "emoji over face", "minimal")
SIZE_STEP = 8  # emoji sides are rounded to this many pixels so the scaled-image cache keeps hitting
FADED_ALPHA = 0.35  # opacity of the emoji when the model is unsure
SURE_COLOUR = (80, 200, 60)  # BGR
UNSURE_COLOUR = (170, 170, 170)
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_SCALE = 0.6  # font scale of the labels and number badges
NO_FACE_TEXT = "no face found - face the camera"


def load_emoji_images(directory: Path = EMOJI_DIR) -> dict[str, np.ndarray]:
    """label -> BGRA uint8 image for every label in labels.EMOJI; raises FileNotFoundError naming a missing file."""
    images = {}
    for label in EMOJI:
        path = directory / f"{label}.png"
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.ndim != 3 or image.shape[2] != 4:
            raise FileNotFoundError(f"emoji image {path} missing or not RGBA: regenerate it with `python scripts/render_emoji.py`")
        images[label] = image
    return images


class Overlay:
    """Emoji images are loaded once; each (label, size, faded) variant is scaled and premultiplied once, then cached."""

    def __init__(self, emoji_dir: Path = EMOJI_DIR):
        self.images = load_emoji_images(emoji_dir)
        self._scaled = lru_cache(maxsize=64)(self._scale)  # bounded memory; live faces reuse a handful of sizes

    def _scale(self, label: str, side: int, faded: bool) -> tuple[np.ndarray, np.ndarray]:
        """(colour * alpha, 1 - alpha) as float32 at side x side, ready for one multiply-add per frame."""
        image = cv2.resize(self.images[label], (side, side), interpolation=cv2.INTER_AREA)
        alpha = image[..., 3:4].astype(np.float32) / 255.0 * (FADED_ALPHA if faded else 1.0)
        return image[..., :3].astype(np.float32) * alpha + 0.5, 1.0 - alpha

    def blend_emoji(self, frame: np.ndarray, label: str, side: int, x: int, y: int, faded: bool = False) -> bool:
        """Alpha-blend the label's emoji with its top-left corner at (x, y), clipped to the frame; False if off-frame."""
        side = max(SIZE_STEP, round(side / SIZE_STEP) * SIZE_STEP)
        colour, inverse = self._scaled(label, side, faded)
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
        if x1 <= x0 or y1 <= y0:
            return False
        part = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        roi = frame[y0:y1, x0:x1]
        roi[:] = roi * inverse[part] + colour[part]
        return True

    def draw_faces(self, frame: np.ndarray, faces: list[FaceResult], style: str = STYLES[0], unsure_below: float = 0.4, numbered: bool = False) -> int:
        """Draw every face in place, with `numbered` also a badge 1, 2, … (list order) in each box's top-right corner;
        returns how many emoji images were drawn."""
        if style not in STYLES:
            raise ValueError(f"unknown overlay style {style!r}; choose one of {', '.join(STYLES)}")
        drawn = sum(self._draw_face(frame, face, style, face.confidence < unsure_below) for face in faces)
        if numbered:  # after every face, so no neighbour's emoji covers a number
            for number, face in enumerate(faces, 1):
                self._badge(frame, str(number), face, UNSURE_COLOUR if face.confidence < unsure_below else SURE_COLOUR)
        return drawn

    def _draw_face(self, frame: np.ndarray, face: FaceResult, style: str, unsure: bool) -> bool:
        x, y, w, h = face.box.x, face.box.y, face.box.w, face.box.h
        colour = UNSURE_COLOUR if unsure else SURE_COLOUR
        thickness = 1 if style == "minimal" else max(2, w // 60)
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, thickness, cv2.LINE_AA)
        if style == "minimal":
            return self.blend_emoji(frame, face.label, max(w // 3, 16), x + 2, y + 2, unsure)
        if style == "emoji over face":
            side = int(max(w, h) * 1.1)
            drawn = self.blend_emoji(frame, face.label, side, x + w // 2 - side // 2, y + h // 2 - side // 2, unsure)
        else:
            side = int(np.clip(w * 0.7, 32, 200))
            drawn = self.blend_emoji(frame, face.label, side, *self._beside(frame, x, y, w, h, side), unsure)
        text = f"? {face.label} {face.confidence:.0%}" if unsure else f"{face.label} {face.confidence:.0%}"
        self._label(frame, text, x, y + h, colour)
        return drawn

    @staticmethod
    def _beside(frame: np.ndarray, x: int, y: int, w: int, h: int, side: int) -> tuple[int, int]:
        """Top-left corner for the emoji: above the face if it fits, else right of it, else left, else on it."""
        height, width = frame.shape[:2]
        gap = 4
        if y - side - gap >= 0:
            return x + w // 2 - side // 2, y - side - gap
        if x + w + gap + side <= width:
            return x + w + gap, y
        if x - gap - side >= 0:
            return x - gap - side, y
        return x + w // 2 - side // 2, y

    @staticmethod
    def _label(frame: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
        """Text on a filled box just below (x, y), moved inside the frame when it would fall off."""
        (tw, th), baseline = cv2.getTextSize(text, FONT, LABEL_SCALE, 1)
        height, width = frame.shape[:2]
        x = min(max(x, 0), max(width - tw - 6, 0))
        y = min(y + 2, height - th - baseline - 6)
        cv2.rectangle(frame, (x, y), (x + tw + 6, y + th + baseline + 6), colour, cv2.FILLED)
        cv2.putText(frame, text, (x + 3, y + th + 3), FONT, LABEL_SCALE, TEXT_COLOUR, 1, cv2.LINE_AA)

    @staticmethod
    def _badge(frame: np.ndarray, text: str, face: FaceResult, colour: tuple[int, int, int]) -> None:
        """`text` on a filled box in the top-right corner inside the face's box."""
        (tw, _), _ = cv2.getTextSize(text, FONT, LABEL_SCALE, 1)
        Overlay._label(frame, text, face.box.x + face.box.w - tw - 6, face.box.y - 2, colour)

    @staticmethod
    def draw_no_face(frame: np.ndarray) -> None:
        """Darken a top banner and say that no face is in view."""
        (tw, th), baseline = cv2.getTextSize(NO_FACE_TEXT, FONT, 0.7, 2)
        band = frame[: th + baseline + 16]
        band //= 2
        cv2.putText(frame, NO_FACE_TEXT, (10, th + 8), FONT, 0.7, TEXT_COLOUR, 2, cv2.LINE_AA)
