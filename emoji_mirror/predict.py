"""Emotion and emoji of every face in still images, as a function and as the `python -m emoji_mirror.predict` CLI."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError
from .classifier import EmotionClassifier
from .detector import FaceDetector
from .face_model import FaceModelError
from .images import MAX_PIXELS, SUPPORTED, ImageReadError, array_to_bgr, read_image, too_large
from .paths import resolve_checkpoint, served_backend
from .face_result import FaceResult
from .pipeline import MirrorPipeline, MirrorSettings


def face_record(face: FaceResult, classes: tuple[str, ...], scale: float = 1.0) -> dict:
    """A JSON-ready description of one face; `scale` is the analysed image's size over the original's (boxes are given
    in the original's pixels)."""
    x, y = round(face.box.x / scale), round(face.box.y / scale)
    return {
        "box": {"x": x, "y": y, "w": round((face.box.x + face.box.w) / scale) - x, "h": round((face.box.y + face.box.h) / scale) - y},
        "detector_score": round(face.box.score, 4),
        "label": face.label,
        "emoji": face.emoji,
        "confidence": round(face.confidence, 4),
        "probabilities": {c: round(float(p), 4) for c, p in zip(classes, face.probs)},
    }


@lru_cache(maxsize=4)
def _classifier(checkpoint: Path) -> EmotionClassifier:
    return EmotionClassifier.served(checkpoint, "photo")


def image_to_bgr(image) -> tuple[np.ndarray, float]:
    """(BGR uint8 image to analyse, its size over the original's) from a file path, a numpy array, a PIL image or a torch
    tensor (H x W, H x W x C, or C x H x W with C of 1, 3 or 4); ImageReadError for anything else."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        if image.width * image.height > MAX_PIXELS:
            raise too_large("image", image.width, image.height)
        image = np.asarray(image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            image = image.transpose(1, 2, 0)  # torchvision's C x H x W
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"predict_image takes a file path, a numpy array, a PIL image or a torch tensor, not {type(image).__name__}")
    bgr = array_to_bgr(image)
    return bgr, max(bgr.shape[:2]) / max(image.shape[:2])


def confidence_problem(value) -> str | None:
    """Why `value` is not a usable min_confidence (a real number from 0 to 1); None when it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        return f"min_confidence must be a number from 0 to 1, not {value!r}"
    return None


def predict_image(image, checkpoint: str | None = None, min_confidence: float = 0.5) -> list[dict]:
    """Faces in an image file (JPEG, PNG, WebP, BMP, GIF, TIFF), an array (uint8 gray, RGB or RGBA; uint16 and floats in
    [0, 1] are converted), a PIL image or a torch tensor, best detector score first, each as face_record() describes.

    Raises ImageReadError (unusable image, array or type), ValueError (min_confidence not in [0, 1]), FileNotFoundError /
    CheckpointError (checkpoint) or FaceModelError.
    """
    problem = confidence_problem(min_confidence)
    if problem:
        raise ValueError(problem)
    bgr, scale = image_to_bgr(image)
    classifier = _classifier(resolve_checkpoint(checkpoint, tier="photo"))
    with FaceDetector() as detector:
        _, faces = MirrorPipeline(classifier, detector, MirrorSettings(min_confidence=min_confidence)).annotate_image(bgr)
    return [face_record(face, classifier.classes, scale) for face in faces]


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
    command = Path(sys.argv[0]).name  # the installed `emoji-mirror-predict`, or `python -m` (its __main__ path)
    parser = argparse.ArgumentParser(prog=command if command == "emoji-mirror-predict" else "python -m emoji_mirror.predict", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help=f"image files ({SUPPORTED}, up to {MAX_PIXELS / 1e6:.0f} megapixels)")
    parser.add_argument("--checkpoint", help="checkpoint name or path (default: $EMOJI_MIRROR_CHECKPOINT, else the photo tier's model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image: {image, faces: [...]}")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="face detector threshold (default 0.5)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error("--min-confidence must be between 0 and 1")
    try:
        checkpoint = resolve_checkpoint(args.checkpoint, tier="photo")
        if served_backend(checkpoint, "photo") == "onnxruntime":
            torch.set_num_threads(1)  # torch only makes the TTA views beside ONNX Runtime's threads: more of them contend (a third slower)
        classifier = _classifier(checkpoint)
        detector = FaceDetector()
    except (FileNotFoundError, CheckpointError, FaceModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    with detector:
        pipeline = MirrorPipeline(classifier, detector, MirrorSettings(min_confidence=args.min_confidence))
        for path in args.images:
            try:
                image, scale = read_image(path)
            except ImageReadError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failures += 1
                continue
            _, results = pipeline.annotate_image(image)
            faces = [face_record(face, classifier.classes, scale) for face in results]
            try:
                print(json.dumps({"image": str(path), "faces": faces}, ensure_ascii=False) if args.json else describe(str(path), faces), flush=True)
            except OSError as exc:  # stdout is full (/dev/full) or closed: say so once, and stop
                sys.stdout = open(os.devnull, "w")  # nothing more for the interpreter to flush at exit
                print(f"error: cannot write the results: {exc.strerror or exc}", file=sys.stderr)
                return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
