"""Emotion and emoji of every face in still images, as a function and as the `python -m emoji_mirror.predict` CLI."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .checkpoint import CheckpointError
from .classifier import EmotionClassifier
from .detector import FaceDetector
from .face_model import FaceModelError
from .paths import resolve_checkpoint
from .pipeline import FaceResult, MirrorPipeline, MirrorSettings


class ImageReadError(ValueError):
    """A file is missing, not an image, or a corrupt one."""


def read_image_bgr(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """A file path or encoded bytes -> BGR uint8 image, EXIF rotation applied; raises ImageReadError saying why."""
    name = name or ("upload" if isinstance(source, bytes) else str(source))
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{name}: image too large ({Image.MAX_IMAGE_PIXELS * 2:,} pixels at most)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{name}: unreadable or corrupt image ({exc})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def face_record(face: FaceResult, classes: tuple[str, ...]) -> dict:
    """A JSON-ready description of one face."""
    return {
        "box": {"x": face.box.x, "y": face.box.y, "w": face.box.w, "h": face.box.h},
        "detector_score": round(face.box.score, 4),
        "label": face.label,
        "emoji": face.emoji,
        "confidence": round(face.confidence, 4),
        "probabilities": {c: round(float(p), 4) for c, p in zip(classes, face.probs)},
    }


@lru_cache(maxsize=4)
def _classifier(checkpoint: Path) -> EmotionClassifier:
    return EmotionClassifier.from_checkpoint(str(checkpoint))


def predict_image(image: str | os.PathLike | np.ndarray, checkpoint: str | None = None, min_confidence: float = 0.5) -> list[dict]:
    """Faces in an image file or an RGB uint8 array, best detector score first, each as face_record() describes.

    Raises ImageReadError, FileNotFoundError / CheckpointError (checkpoint) or FaceModelError (detector model).
    """
    if isinstance(image, np.ndarray):
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
    else:
        bgr = read_image_bgr(image)
    classifier = _classifier(resolve_checkpoint(checkpoint))
    with FaceDetector() as detector:
        _, faces = MirrorPipeline(classifier, detector, MirrorSettings(min_confidence=min_confidence)).annotate_image(bgr)
    return [face_record(face, classifier.classes) for face in faces]


def describe(name: str, faces: list[dict]) -> str:
    """Human-readable lines for one image."""
    if not faces:
        return f"{name}: no face found"
    lines = [f"{name}: {len(faces)} face{'s' if len(faces) > 1 else ''}"]
    for i, face in enumerate(faces, 1):
        box = face["box"]
        lines.append(f"  face {i} at x={box['x']} y={box['y']} {box['w']}x{box['h']}: {face['emoji']} {face['label']} ({face['confidence']:.0%})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emoji_mirror.predict", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, ...)")
    parser.add_argument("--checkpoint", help="checkpoint name or path (default: $EMOJI_MIRROR_CHECKPOINT or the best shipped one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image: {image, faces: [...]}")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="face detector threshold (default 0.5)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error("--min-confidence must be between 0 and 1")
    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        classifier = EmotionClassifier.from_checkpoint(str(checkpoint))
        detector = FaceDetector()
    except (FileNotFoundError, CheckpointError, FaceModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    with detector:
        pipeline = MirrorPipeline(classifier, detector, MirrorSettings(min_confidence=args.min_confidence))
        for path in args.images:
            try:
                _, results = pipeline.annotate_image(read_image_bgr(path))
            except ImageReadError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failures += 1
                continue
            faces = [face_record(face, classifier.classes) for face in results]
            print(json.dumps({"image": str(path), "faces": faces}, ensure_ascii=False) if args.json else describe(str(path), faces), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
