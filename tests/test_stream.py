"""The live mirror's video track: newest frame only, each result sent once, one worker shared fairly by all viewers."""

from __future__ import annotations

import asyncio
import logging
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import streamlit_webrtc.webrtc
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from skimage.data import astronaut
from streamlit_webrtc.process import AsyncVideoProcessTrack as LibraryTrack

from emoji_mirror.app import stream
from emoji_mirror.app.stream import NewestFrameTrack, use_newest_frame_track, video_frame, viewers


class Camera(MediaStreamTrack):
    """A camera at `fps` whose frames carry their index as pts; it ends after `frames` frames."""

    kind = "video"

    def __init__(self, fps: float, frames: int | None = None):
        super().__init__()
        self.interval, self.frames, self.sent = 1 / fps, frames, 0

    async def recv(self) -> av.VideoFrame:
        if self.sent == self.frames:
            self.stop()
            raise MediaStreamError
        await asyncio.sleep(self.interval)
        frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="bgr24")
        frame.pts, frame.time_base, self.sent = self.sent, Fraction(1, 90000), self.sent + 1
        return frame


class Processor:
    """Like streamlit-webrtc's callback processor: takes `seconds` a frame (holding the GIL-free worker), notes what it saw."""

    def __init__(self, seconds: float, fail_on: int | None = None):
        self.seconds, self.fail_on, self.seen, self.ended, self.failed = seconds, fail_on, [], False, None

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.seen.append(frame.pts)
        time.sleep(self.seconds)
        if self.fail_on is not None and self.failed is None and frame.pts >= self.fail_on:
            self.failed = frame.pts  # the first frame it is given from `fail_on` on (a busy machine may skip some)
            raise RuntimeError("boom")
        out = av.VideoFrame.from_ndarray(np.full((8, 8, 3), 255, np.uint8), format="bgr24")
        out.pts = -1  # the track gives it the camera frame's timing
        return out

    def on_ended(self):
        self.ended = True


async def take(track: MediaStreamTrack, seconds: float) -> list[av.VideoFrame]:
    """The frames the track gives over `seconds`, as a sender would take them; then the viewer leaves."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(await track.recv())
    track.stop()
    return out


async def drain(track: MediaStreamTrack) -> list[av.VideoFrame]:
    """Every frame the track gives until it ends, as a sender would take them."""
    out = []
    while True:
        try:
            out.append(await track.recv())
        except MediaStreamError:
            return out


def test_a_slow_viewer_gets_the_newest_frames_each_once_and_in_order():
    async def run():
        processor, camera = Processor(seconds=0.05), Camera(fps=100)
        track = NewestFrameTrack(camera, processor)
        sent = await take(track, 0.6)
        return processor, camera, sent, track

    processor, camera, sent, track = asyncio.run(run())
    pts = [frame.pts for frame in sent]
    assert pts == processor.seen[: len(pts)] and len(processor.seen) - len(pts) <= 1  # each result sent once, none repeated
    assert pts == sorted(set(pts)) and 8 <= len(pts) <= 14  # 0.6 s at 50 ms a frame: the frames between are skipped
    assert camera.sent - pts[-1] <= 12  # it keeps up with the newest frame instead of falling behind
    assert all((frame.to_ndarray() == 255).all() for frame in sent)
    assert processor.ended and track.readyState == "ended" and viewers() == 0


def test_a_fast_viewer_gets_every_frame():
    async def run():
        return await take(NewestFrameTrack(Camera(fps=50), Processor(seconds=0.001)), 0.5)

    pts = [frame.pts for frame in asyncio.run(run())]
    assert pts == list(range(len(pts))) and len(pts) >= 15


def test_viewers_share_the_worker_fairly_and_are_counted():
    async def run():
        tracks = [NewestFrameTrack(Camera(fps=60), Processor(seconds=0.02)) for _ in range(3)]
        counted = []

        async def watch():
            await asyncio.sleep(0.3)
            counted.append(viewers())

        results = await asyncio.gather(*(take(track, 1.0) for track in tracks), watch())
        return [len(sent) for sent in results[:3]], counted

    counts, counted = asyncio.run(run())
    assert counted == [3] and viewers() == 0
    assert min(counts) >= 0.7 * max(counts) and min(counts) >= 10  # 1 s, 20 ms a frame, 3 viewers: ~16 each, none starved


def test_a_frame_that_fails_goes_out_unprocessed_and_the_stream_goes_on(caplog):
    processor = Processor(seconds=0.001, fail_on=3)

    async def run():
        return await take(NewestFrameTrack(Camera(fps=50), processor), 0.3)

    with caplog.at_level(logging.ERROR, logger=stream.__name__):
        sent = asyncio.run(run())
    pts = [frame.pts for frame in sent]
    assert pts == sorted(set(pts)) and processor.failed is not None and pts[-1] > processor.failed  # the stream went on
    for frame in sent:  # the failed frame went out as the camera gave it; every other one processed
        assert (frame.to_ndarray() == (0 if frame.pts == processor.failed else 255)).all()
    assert processor.failed in pts and "could not process a frame" in caplog.text


def test_the_stream_ends_when_the_camera_does():
    async def run():
        processor = Processor(seconds=0.001)
        return processor, await asyncio.wait_for(drain(NewestFrameTrack(Camera(fps=50, frames=5), processor)), timeout=10)

    processor, sent = asyncio.run(run())
    assert 4 <= len(sent) <= 5 and processor.ended and viewers() == 0


def test_streamlit_webrtc_builds_it_for_async_processing(monkeypatch):
    monkeypatch.setattr(streamlit_webrtc.webrtc, "AsyncVideoProcessTrack", LibraryTrack)  # as before any page ran
    assert use_newest_frame_track() is LibraryTrack

    async def run():
        return streamlit_webrtc.webrtc._wrap_with_processor(Camera(fps=30, frames=1), Processor(0.0), async_processing=True, relay=MediaRelay())

    track = asyncio.run(run())
    assert isinstance(track, NewestFrameTrack)
    track.stop()


@pytest.fixture(autouse=True)
def no_viewers_left():
    yield
    assert viewers() == 0


def test_video_frame_keeps_the_picture_in_yuv420p_and_odd_sizes_in_bgr():
    image = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    frame = video_frame(image)
    assert frame.format.name == "yuv420p" and (frame.width, frame.height) == (512, 512)
    assert np.abs(frame.to_ndarray(format="bgr24").astype(int) - image).mean() < 3  # chroma subsampling only
    odd = video_frame(image[:511, :301])
    assert odd.format.name == "bgr24" and np.array_equal(odd.to_ndarray(format="bgr24"), image[:511, :301])
