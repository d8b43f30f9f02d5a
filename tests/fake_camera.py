"""Build a .y4m clip of a real portrait for Chromium's fake webcam (--use-file-for-fake-video-capture)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
from skimage.data import astronaut

FRAME_SIZE = (640, 480)  # width, height


def portrait_frame(size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """RGB frame with scikit-image's astronaut portrait scaled to the frame height, centred on a grey canvas."""
    width, height = size
    portrait = cv2.resize(astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 128, dtype=np.uint8)
    left = (width - height) // 2
    frame[:, left : left + height] = portrait
    return frame


def write_y4m(path: Path, frame: np.ndarray, seconds: float = 2.0, fps: int = 15) -> Path:
    """Write `frame` (RGB uint8) repeated for `seconds` as YUV4MPEG2 4:2:0, the format Chromium's fake camera reads."""
    height, width = frame.shape[:2]
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        for _ in range(round(seconds * fps)):
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path
