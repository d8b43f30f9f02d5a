"""The browser benchmark's measuring parts: frame stamps that survive VP8 coding, new-frame counting, emoji delays."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from benchmarks.browser import FLIP_FRAMES, OTHER_PART, Scenario, flip_delays, new_frames, profile_summary
from benchmarks.fake_camera import read_stamp, stamp, stamped_clip
from benchmarks.mirror_pipeline import scene


def vp8_round_trip(frames_rgb: list[np.ndarray], bitrate: int = 300_000) -> list[np.ndarray]:
    """The frames after VP8 encoding at a low WebRTC bitrate and decoding, as a browser would show them."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = frames_rgb[0].shape[1], frames_rgb[0].shape[0]
    encoder.pix_fmt, encoder.bit_rate, encoder.framerate = "yuv420p", bitrate, 30
    packets = [p for f in frames_rgb for p in encoder.encode(av.VideoFrame.from_ndarray(f, format="rgb24"))] + list(encoder.encode(None))
    decoder = av.CodecContext.create("libvpx", "r")
    return [frame.to_ndarray(format="rgb24") for packet in packets for frame in decoder.decode(packet)]


@pytest.mark.slow
def test_frame_stamps_survive_vp8_coding_and_leave_the_scene_alone():
    frame = cv2.cvtColor(scene(2), cv2.COLOR_BGR2RGB)
    indices = [0, 1, 2, 85, 170, 255, 256 + 7]
    decoded = vp8_round_trip([stamp(frame, i) for i in indices])
    assert [read_stamp(f) for f in decoded] == [i % 256 for i in indices]
    stamped = stamp(frame, 255)
    assert np.array_equal(stamped[:-16], frame[:-16]) and np.array_equal(stamped[-16:, 128:], frame[-16:, 128:])


def test_stamped_clip_holds_each_scene_for_its_frames(tmp_path):
    scenes = [np.full((48, 160, 3), value, np.uint8) for value in (60, 200)]
    clip = stamped_clip(tmp_path / "clip.y4m", scenes, frames_per_scene=3, fps=30)
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [read_stamp(f) for f in frames] == list(range(6))
    assert [int(np.median(f[:20, 140:])) for f in frames] == [60] * 3 + [200] * 3


def test_new_frames_counts_changes_of_stamp_not_repeats():
    stamps = [5, 5, 6, 6, 6, 7, 9, 9, 255, 1]
    presented = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]  # callbacks missed one presented frame before stamp 255
    rows = [[t, code, shown] for t, (code, shown) in enumerate(zip(stamps, presented))]
    assert new_frames(rows) == 1 + 1 + 1 + 2 + 1  # 6, 7, then 9 (one presented: 8 was never shown), 255 (2 presented), 1 (wraps)


def test_flip_delay_runs_from_the_cameras_change_to_the_new_emoji_on_screen():
    references = np.array([[0.0] * 3, [255.0] * 3])  # emoji A dark, emoji B bright
    scenario = Scenario("flip", 1, None, (0, 0, 1, 1), references)
    # Camera: face A until stamp FLIP_FRAMES - 1, face B from FLIP_FRAMES on, seen at 10 ms per frame.
    inputs = [[10.0 * k, k, k] for k in range(FLIP_FRAMES - 5, FLIP_FRAMES + 5)]
    flip_at = 10.0 * FLIP_FRAMES
    # Screen: emoji A until 180 ms after the flip, then emoji B (with a little codec noise).
    outputs = [[t, 0, 0, *([4.0] * 3 if t < flip_at + 180 else [250.0] * 3)] for t in np.arange(inputs[0][0], flip_at + 400, 20.0)]
    delays, missed = flip_delays(scenario, inputs, outputs)
    assert missed == 0 and len(delays) == 1 and abs(delays[0] - 180) <= 20
    never = [[t, 0, 0, 4.0, 4.0, 4.0] for t, *_ in outputs]
    assert flip_delays(scenario, inputs, never) == ([], 0)  # the last change: not followed yet, not counted as missed


def test_profile_summary_splits_busy_samples_by_part_and_leaves_waiting_out(tmp_path):
    raw = tmp_path / "server.txt"
    raw.write_text(
        "thread (1): worker;run (t.py:1);Vp8Encoder.encode (aiortc/codecs/vpx.py:230) 30\n"
        "thread (2): loop;BaseEventLoop._run_once (b.py:1);EpollSelector.select (selectors.py:468) 500\n"
        "thread (3): frames;video_frame_callback (live_mirror.py:39);EmotionClassifier.predict (c.py:5);Conv2d._conv_forward (conv.py:560) 50\n"
        "thread (4): loop;RTCRtpSender._run_rtp (s.py:9);_write_to_self (e.py:1) 20\n"
    )
    busy, parts, functions = profile_summary(raw)
    assert busy == 100 * 100 / 600
    assert parts == [(50.0, "classification (PyTorch)"), (30.0, "VP8 encode (aiortc)"), (20.0, OTHER_PART)]  # the first matching part wins
    assert functions[0] == (50.0, "Conv2d._conv_forward (conv.py:560)")
