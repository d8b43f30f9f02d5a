"""Clips for Chromium's fake webcam (--use-file-for-fake-video-capture): YUV4MPEG2 files, each frame stamped with its index."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import cv2
import numpy as np
from skimage.data import astronaut

STAMP_BITS = 8  # frame index modulo 256, as black/white blocks along the bottom-left edge
STAMP_BLOCK = 16  # pixels per block side: survives VP8 coding at any bitrate WebRTC picks on loopback
FRAME_SIZE = (640, 480)  # width, height


def portrait_frame(size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """RGB frame with scikit-image's astronaut portrait scaled to the frame height, centred on a grey canvas."""
    width, height = size
    portrait = cv2.resize(astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 128, dtype=np.uint8)
    left = (width - height) // 2
    frame[:, left : left + height] = portrait
    return frame


def stamp(frame: np.ndarray, index: int) -> np.ndarray:
    """A copy of the frame (H, W, 3 uint8) with `index` mod 256 written in its bottom-left corner, bit 0 leftmost."""
    stamped = frame.copy()
    top = frame.shape[0] - STAMP_BLOCK
    for bit in range(STAMP_BITS):
        stamped[top:, bit * STAMP_BLOCK : (bit + 1) * STAMP_BLOCK] = 255 if (index >> bit) & 1 else 0
    return stamped


def read_stamp(frame: np.ndarray) -> int:
    """The index stamp() wrote, read from the centre of each block (any frame size the stamp was written at)."""
    row = frame[frame.shape[0] - STAMP_BLOCK // 2]
    centres = [row[bit * STAMP_BLOCK + STAMP_BLOCK // 2] for bit in range(STAMP_BITS)]
    return sum(1 << bit for bit, pixel in enumerate(centres) if np.mean(pixel) > 127)


def write_y4m(path: Path, frames: Iterable[np.ndarray], fps: int) -> Path:
    """Write RGB uint8 frames (all one size) as YUV4MPEG2 4:2:0, which Chromium's fake camera loops at `fps`."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=fps)
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(frames):
            if i == 0:
                stream.height, stream.width = frame.shape[:2]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def stamped_clip(path: Path, scenes: list[np.ndarray], frames_per_scene: int, fps: int) -> Path:
    """A clip that shows each RGB scene for `frames_per_scene` frames in turn, every frame stamped with its index."""
    frames = (stamp(scene, i * frames_per_scene + k) for i, scene in enumerate(scenes) for k in range(frames_per_scene))
    return write_y4m(path, frames, fps)
