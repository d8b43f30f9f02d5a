"""Time the live mirror pipeline per stage on 640x480 frames holding 0, 1, 2 and 5 real faces (target: >= 30 fps with 2)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.data import astronaut

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emoji_mirror.classifier import BACKENDS, EmotionClassifier  # noqa: E402
from emoji_mirror.detector import FaceDetector  # noqa: E402
from emoji_mirror.onnx_backend import OnnxNetwork  # noqa: E402
from emoji_mirror.paths import resolve_checkpoint  # noqa: E402
from emoji_mirror.pipeline import STAGES, MirrorPipeline, PipelineStats  # noqa: E402

FRAME_SIZE = (640, 480)  # width, height: a typical webcam frame
HEAD = (slice(50, 210), slice(150, 300))  # the astronaut's head with a little hair and neck around it
FACE_COUNTS = (0, 1, 2, 5)
TARGET_FPS = 30


def scene(faces: int, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A grey BGR frame with `faces` copies of the astronaut's head laid out on a grid (at most 3 per row)."""
    width, height = size
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    if not faces:
        return frame
    head = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)[HEAD]
    cols = min(faces, 3)
    rows = math.ceil(faces / cols)
    cell_w, cell_h = width // cols, height // rows
    scale = min(cell_w / head.shape[1], cell_h / head.shape[0], 1.2) * 0.9
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for i in range(faces):
        row, col = divmod(i, cols)
        y = row * cell_h + (cell_h - head.shape[0]) // 2
        x = col * cell_w + (cell_w - head.shape[1]) // 2
        frame[y : y + head.shape[0], x : x + head.shape[1]] = head
    return frame


def run(pipeline: MirrorPipeline, frame: np.ndarray, frames: int, warmup: int) -> tuple[int, dict]:
    """Faces found in the frame and the pipeline's stats after `frames` timed calls (a fresh copy each, like video)."""
    for _ in range(warmup):
        pipeline.process(frame.copy())
    pipeline.stats = PipelineStats()  # time only the measured frames
    found = 0
    for _ in range(frames):
        _, results = pipeline.process(frame.copy())
        found = len(results)
    return found, pipeline.stats.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="checkpoint name or path (default: $EMOJI_MIRROR_CHECKPOINT or the live tier's model)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per scene")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1, as the app)")
    parser.add_argument("--backend", choices=("served", *BACKENDS), default="served",
                        help="served (default): the backend and TTA the app serves the model with; or a backend, without TTA")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = resolve_checkpoint(args.checkpoint)
    classifier = (EmotionClassifier.served(checkpoint, "live", args.threads) if args.backend == "served" else
                  EmotionClassifier.from_checkpoint(str(checkpoint), backend=args.backend, threads=args.threads))
    backend = "onnxruntime" if isinstance(classifier.model, OnnxNetwork) else "torch"
    print(f"checkpoint {classifier.loaded.path} ({classifier.loaded.arch}) on {backend}, TTA {classifier.tta}, {args.threads} thread(s), "
          f"{args.frames} frames per scene")
    header = f"{'faces':>5} {'found':>5} " + " ".join(f"{s + ' ms':>11}" for s in STAGES) + f" {'fps':>7}"
    print(header)
    print("-" * len(header))
    fps_with_two = None
    with FaceDetector() as detector:
        pipeline = MirrorPipeline(classifier, detector)
        for faces in FACE_COUNTS:
            found, stats = run(pipeline, scene(faces), args.frames, args.warmup)
            ms = stats["mean_stage_ms"]
            fps = 1000.0 / ms["total"]
            fps_with_two = fps if faces == 2 else fps_with_two
            print(f"{faces:>5} {found:>5} " + " ".join(f"{ms[s]:>11.2f}" for s in STAGES) + f" {fps:>7.1f}")
    verdict = "meets" if fps_with_two >= TARGET_FPS else "misses"
    print(f"\n2 faces: {fps_with_two:.1f} fps of processing, {verdict} the {TARGET_FPS} fps target (camera, WebRTC encoding and network not included)")


if __name__ == "__main__":
    main()
