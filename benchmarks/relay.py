"""The WebRTC relay's per-frame work on the server, stage by stage: decode the camera's frame, convert it for the
pipeline, convert the result back, encode it (aiortc's own VP8 and H.264 encoders, at the bitrates WebRTC uses), so
each lever of the live mirror can be priced in milliseconds of server CPU per frame.

    python -m benchmarks.relay [--frames 150] [--size 640x480]

The frames are the 2-face scene of benchmarks.mirror_pipeline with a moving frame stamp and a webcam's sensor noise
(Gaussian, sigma 3 levels), so that each frame differs from the last as a real camera's do.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from aiortc.codecs import h264, vpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.fake_camera import stamp  # noqa: E402
from benchmarks.mirror_pipeline import scene  # noqa: E402
from emoji_mirror.app.stream import video_frame  # noqa: E402

TIME_BASE = Fraction(1, 90000)


def frames_yuv(count: int, size: tuple[int, int]) -> list[av.VideoFrame]:
    """`count` frames of the 2-face scene (stamped, with sensor noise) as yuv420p VideoFrames, as a decoder gives them."""
    base = cv2.resize(scene(2), size, interpolation=cv2.INTER_AREA).astype(np.int16)
    noise = np.random.default_rng(0)
    out = []
    for i in range(count):
        noisy = np.clip(base + noise.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(stamp(noisy, i), format="bgr24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * 3000, TIME_BASE
        out.append(frame)
    return out


def median_ms(work, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        work(item)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[len(times) // 5 :])  # the first fifth warms up (encoder start, rate control)


def encode_ms(encoder, frames: list[av.VideoFrame], bitrate: int) -> float:
    encoder.target_bitrate = bitrate
    return median_ms(lambda frame: encoder.encode(frame), frames)


def vp8_packets(frames: list[av.VideoFrame]):
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt, encoder.bit_rate = frames[0].width, frames[0].height, "yuv420p", 1_000_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    for frame in frames:
        yield from encoder.encode(frame)
    yield from encoder.encode(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="640x480", help="frame size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    frames = frames_yuv(args.frames, size)
    bgr = [frame.to_ndarray(format="bgr24") for frame in frames]

    rows = [
        ("camera frame to numpy (yuv420p -> bgr24, to_ndarray)", median_ms(lambda f: f.to_ndarray(format="bgr24"), frames)),
        ("numpy to frame (from_ndarray bgr24)", median_ms(lambda a: av.VideoFrame.from_ndarray(a, format="bgr24"), bgr)),
        ("bgr24 frame to yuv420p (the encoder's reformat)", median_ms(lambda a: av.VideoFrame.from_ndarray(a, format="bgr24").reformat(format="yuv420p"), bgr)),
        ("numpy to yuv420p frame with OpenCV (stream.video_frame)", median_ms(video_frame, bgr)),
    ]
    packets = [bytes(p) for p in vp8_packets(frames)]
    decoder = av.CodecContext.create("libvpx", "r")
    rows.append(("VP8 decode (the camera's frame)", median_ms(lambda p: decoder.decode(av.Packet(p)), packets)))
    for bitrate in (500_000, 1_500_000):
        rows.append((f"VP8 encode, aiortc's settings, {bitrate / 1e6:g} Mbit/s", encode_ms(vpx.Vp8Encoder(), frames, bitrate)))
        rows.append((f"H.264 encode, aiortc's settings, {bitrate / 1e6:g} Mbit/s", encode_ms(h264.H264Encoder(), frames, bitrate)))
    half = [frame.reformat(width=size[0] // 2, height=size[1] // 2) for frame in frames]
    rows.append((f"VP8 encode at half size ({size[0] // 2}x{size[1] // 2}), 0.5 Mbit/s", encode_ms(vpx.Vp8Encoder(), half, 500_000)))

    print(f"server CPU per frame, {size[0]}x{size[1]}, median of {args.frames} frames (the first fifth skipped), one process:")
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"  {name:<{width}}  {ms:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
