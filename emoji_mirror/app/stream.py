"""The live mirror's video track: each viewer's newest camera frame, processed on one worker all viewers share, sent once."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import cv2
import numpy as np
import streamlit_webrtc.webrtc
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

logger = logging.getLogger(__name__)
# One thread runs every viewer's frames in turn (first come, first served, at most one waiting per viewer), so no
# viewer is starved and the models never run on two frames at once.
FRAME_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mirror-frames")
_viewers: set[NewestFrameTrack] = set()
_viewers_lock = threading.Lock()


def video_frame(image_bgr: np.ndarray) -> av.VideoFrame:
    """The annotated image as a frame for the encoder: yuv420p made by OpenCV (0.16 ms at 640x480, where the encoder's
    own bgr24 conversion takes 0.73 ms, benchmarks.relay); bgr24 when a side is odd (4:2:0 needs even sides)."""
    height, width = image_bgr.shape[:2]
    if height % 2 or width % 2:
        return av.VideoFrame.from_ndarray(image_bgr, format="bgr24")
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")


def viewers() -> int:
    """How many live mirror streams are running in this server process now."""
    with _viewers_lock:
        return len(_viewers)


class NewestFrameTrack(MediaStreamTrack):
    """Stands in for streamlit-webrtc's async processing track (same constructor).

    That track answers every camera frame at once with the last result it has (a repeat when the worker is late), so
    the server encodes and sends 30 frames a second whatever it processed, one frame behind, and each viewer has a
    thread of its own competing for the cores. This one starts processing a camera frame as soon as it arrives and the
    viewer's previous frame is done (frames that arrive meanwhile wait, only the newest), and hands each result to the
    sender once: nothing stale, nothing repeated, no frame of delay. A processing error is logged and that frame goes
    out unprocessed."""

    kind = "video"

    def __init__(self, track: MediaStreamTrack, processor):
        super().__init__()
        self.track = track
        self.processor = processor
        self._pump: asyncio.Task | None = None
        self._waiting: av.VideoFrame | None = None  # the newest camera frame that arrived while one was processing
        self._busy = False
        self._result: av.VideoFrame | None = None
        self._ready = asyncio.Event()
        self._ended = False
        track.on("ended", self.stop)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._pump is None:
            with _viewers_lock:
                _viewers.add(self)
            self._pump = asyncio.ensure_future(self._pull())
        if self._result is None and self._ended and not self._busy:
            raise MediaStreamError
        await self._ready.wait()
        self._ready.clear()
        if self._result is None:  # the camera track ended
            raise MediaStreamError
        result, self._result = self._result, None
        return result

    async def _pull(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if self._busy:
                    self._waiting = frame
                else:
                    self._start(frame)
        except MediaStreamError:
            self._ended = True
            if not self._busy:
                self._ready.set()

    def _start(self, frame: av.VideoFrame) -> None:
        self._busy = True
        done = asyncio.get_running_loop().run_in_executor(FRAME_WORKER, self._process, frame)
        done.add_done_callback(self._finished)

    def _process(self, frame: av.VideoFrame) -> av.VideoFrame:
        try:
            out = self.processor.recv(frame)
        except Exception:
            logger.exception("the mirror could not process a frame; it goes out as the camera sent it")
            out = frame
        out.pts, out.time_base = frame.pts, frame.time_base
        return out

    def _finished(self, done: asyncio.Future) -> None:
        self._busy = False
        if done.cancelled():
            return
        self._result = done.result()
        self._ready.set()
        if self._waiting is not None and self.readyState == "live":
            frame, self._waiting = self._waiting, None
            self._start(frame)

    def stop(self) -> None:
        if self.readyState == "ended":
            return
        super().stop()
        with _viewers_lock:
            _viewers.discard(self)
        if self._pump is not None:
            self._pump.cancel()
        self._ready.set()
        self.track.stop()
        if hasattr(self.processor, "on_ended"):
            self.processor.on_ended()


def use_newest_frame_track() -> type:
    """Make streamlit-webrtc build NewestFrameTrack wherever it would build its async video track (webrtc_streamer
    with async_processing=True); returns the class it replaced. Idempotent."""
    replaced = streamlit_webrtc.webrtc.AsyncVideoProcessTrack
    streamlit_webrtc.webrtc.AsyncVideoProcessTrack = NewestFrameTrack
    return replaced
