"""The mirror pipeline on real photos: emoji drawn on the face, one batched model call, smoothing, tracks, stats."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.detector import FaceBox, FaceDetector
from emoji_mirror.overlay import STYLES, Overlay, load_emoji_images
from emoji_mirror.pipeline import MirrorPipeline, MirrorSettings, crop_face, busy_settings
from emoji_mirror.tracking import FaceTracker

HEAD = (slice(50, 210), slice(150, 300))  # the astronaut's head in skimage's portrait


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as face_detector:
        yield face_detector


@pytest.fixture
def classifier(tiny_checkpoint):
    return EmotionClassifier.from_checkpoint(str(tiny_checkpoint))


def portrait() -> np.ndarray:
    """The astronaut portrait as a BGR frame."""
    return cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)


def heads(count: int) -> np.ndarray:
    """A 640x480 grey BGR frame with `count` copies of the astronaut's head side by side."""
    head = portrait()[HEAD]
    frame = np.full((480, 640, 3), 90, np.uint8)
    for i in range(count):
        x = 20 + i * (head.shape[1] + 40)
        frame[160 : 160 + head.shape[0], x : x + head.shape[1]] = head
    return frame


def emoji_coloured(region: np.ndarray, label: str) -> float:
    """Fraction of the region's pixels within a small distance of the label's emoji's most common colour."""
    image = load_emoji_images()[label]
    opaque = image[image[..., 3] == 255][:, :3].astype(int)
    codes, counts = np.unique(opaque // 32, axis=0, return_counts=True)
    dominant = opaque[(opaque // 32 == codes[counts.argmax()]).all(1)].mean(0)
    return float((np.linalg.norm(region.astype(int) - dominant, axis=-1) < 40).mean())


def test_emoji_is_drawn_over_the_face(classifier, detector):
    pipeline = MirrorPipeline(classifier, detector, MirrorSettings(style="emoji over face", unsure_below=0.0))
    original = portrait()
    annotated, faces = pipeline.process(original.copy())
    assert len(faces) == 1
    box = faces[0].box
    face_before = original[box.y : box.y + box.h, box.x : box.x + box.w]
    face_after = annotated[box.y : box.y + box.h, box.x : box.x + box.w]
    assert emoji_coloured(face_before, faces[0].label) < 0.02
    assert emoji_coloured(face_after, faces[0].label) > 0.3
    assert np.array_equal(annotated[400:, :100], original[400:, :100])  # far from the face nothing changes


def test_emoji_above_face_leaves_the_face_visible(classifier, detector):
    pipeline = MirrorPipeline(classifier, detector, MirrorSettings(style="emoji above face", unsure_below=0.0))
    frame = heads(1)
    frame = np.vstack([np.full((120, 640, 3), 90, np.uint8), frame])[:480]  # room above the head
    original = frame.copy()
    annotated, faces = pipeline.process(frame)
    box = faces[0].box
    inner = (slice(box.y + 5, box.y + box.h - 5), slice(box.x + 5, box.x + box.w - 5))
    assert np.array_equal(annotated[inner], original[inner])
    above = annotated[max(box.y - box.w, 0) : box.y, box.x : box.x + box.w]
    assert emoji_coloured(above, faces[0].label) > 0.2


def test_unsure_faces_get_a_faded_emoji_and_question_mark_label(classifier, detector):
    sure = MirrorPipeline(classifier, detector, MirrorSettings(style="emoji over face", unsure_below=0.0))
    unsure = MirrorPipeline(classifier, detector, MirrorSettings(style="emoji over face", unsure_below=1.0))
    original = portrait()
    sure_frame, faces = sure.process(original.copy())
    unsure_frame, _ = unsure.process(original.copy())
    box = faces[0].box
    region = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
    sure_change = np.abs(sure_frame[region].astype(int) - original[region]).mean()
    unsure_change = np.abs(unsure_frame[region].astype(int) - original[region]).mean()
    assert 0 < unsure_change < 0.6 * sure_change


def test_every_style_draws_and_an_unknown_style_is_refused(classifier, detector):
    for style in STYLES:
        pipeline = MirrorPipeline(classifier, detector, MirrorSettings(style=style))
        original = portrait()
        annotated, faces = pipeline.process(original.copy())
        assert len(faces) == 1 and not np.array_equal(annotated, original)
        assert pipeline.stats.snapshot()["emoji_drawn"] == 1
    with pytest.raises(ValueError, match="overlay style"):
        pipeline.update_settings(style="sparkles")
    with pytest.raises(ValueError, match="smoothing"):
        pipeline.update_settings(smoothing=1.0)


def test_all_faces_go_to_the_classifier_in_one_batch(classifier, detector, monkeypatch):
    batches = []
    predict = classifier.predict
    monkeypatch.setattr(classifier, "predict", lambda crops: batches.append(crops) or predict(crops))
    pipeline = MirrorPipeline(classifier, detector)
    _, faces = pipeline.process(heads(3))
    assert len(faces) == 3
    assert len(batches) == 1 and len(batches[0]) == 3
    size = classifier.preprocessing.input_size
    assert all(crop.shape == (size, size) and crop.dtype == np.uint8 for crop in batches[0])
    probs = np.stack([face.probs for face in faces])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert len({face.track_id for face in faces}) == 3


def test_tracked_faces_are_classified_at_the_set_interval(classifier, detector, monkeypatch):
    batches = []
    predict = classifier.predict
    monkeypatch.setattr(classifier, "predict", lambda crops: batches.append(len(crops)) or predict(crops))
    clock = iter(np.arange(0.0, 10.0, 0.002))  # the pipeline reads the clock 7 times a frame: ~70 frames a second
    monkeypatch.setattr("emoji_mirror.pipeline.time.perf_counter", lambda: next(clock))
    pipeline = MirrorPipeline(classifier, detector, MirrorSettings(classify_interval_s=0.1, smoothing=0.0))
    frame = heads(2)
    shown = [pipeline.process(frame.copy())[1] for _ in range(20)]
    assert all(len(faces) == 2 for faces in shown)
    assert batches[0] == 2 and 4 <= sum(batches) <= 8  # both faces first, then each every 0.1 s (~7 frames), not every frame
    assert all(n > 0 for n in batches)  # frames with nothing due make no model call at all
    assert all(face.label == shown[0][k].label for faces in shown for k, face in enumerate(faces))  # results carried over
    pipeline.update_settings(classify_interval_s=0.0)
    before = len(batches)
    for _ in range(3):
        pipeline.process(frame.copy())
    assert batches[before:] == [2, 2, 2]


def test_tracker_keeps_a_tracks_probabilities_for_an_unclassified_face():
    tracker = FaceTracker(smoothing=0.5)
    box = FaceBox(100, 100, 80, 80, 0.9)
    first = np.eye(7, dtype=np.float32)[3]
    tracker.update([box], first[None], now=0.0)
    matches = tracker.matches([box._replace(x=104)])
    assert tracker.due([box._replace(x=104)], matches, now=0.05, interval=0.1) == [False]
    assert tracker.due([box._replace(x=104), FaceBox(400, 100, 80, 80, 0.9)], tracker.matches([box, FaceBox(400, 100, 80, 80, 0.9)]), now=0.05, interval=0.1) == [False, True]
    kept, ids = tracker.update([box._replace(x=104)], np.full((1, 7), np.nan, np.float32), now=0.05)
    np.testing.assert_array_equal(kept[0], first)
    assert ids == [1] and tracker.tracks[0].box.x == 104 and tracker.tracks[0].classified_at == 0.0
    assert tracker.due([box], tracker.matches([box]), now=0.1, interval=0.1) == [True]
    with pytest.raises(ValueError, match="new"):
        tracker.update([FaceBox(400, 300, 80, 80, 0.9)], np.full((1, 7), np.nan, np.float32))


def test_no_face_frame_gets_a_banner_and_counts(classifier, detector):
    pipeline = MirrorPipeline(classifier, detector)
    blank = np.full((480, 640, 3), 200, np.uint8)
    annotated, faces = pipeline.process(blank.copy())
    assert faces == []
    assert annotated[5, 320].tolist() == [100, 100, 100]  # the darkened banner
    assert np.array_equal(annotated[200:], blank[200:])
    pipeline.process(portrait())
    pipeline.process(portrait())
    stats = pipeline.stats.snapshot()
    assert (stats["frames"], stats["frames_with_faces"], stats["faces"], stats["emoji_drawn"]) == (3, 2, 2, 2)
    assert set(stats["stage_ms"]) == {"detect", "crop", "classify", "draw", "total"}
    assert stats["stage_ms"]["total"] > 0 and stats["max_fps"] > 0


def test_annotate_image_copies_and_does_not_track(classifier, detector):
    pipeline = MirrorPipeline(classifier, detector)
    image = portrait()
    before = image.copy()
    annotated, faces = pipeline.annotate_image(image)
    assert np.array_equal(image, before)
    assert not np.array_equal(annotated, before)
    assert [face.track_id for face in faces] == [None]
    assert pipeline.stats.snapshot()["frames"] == 0


def test_smoothing_zero_gives_the_raw_probabilities(classifier, detector):
    pipeline = MirrorPipeline(classifier, detector, MirrorSettings(smoothing=0.0))
    frame = portrait()
    _, faces = pipeline.process(frame.copy())
    box = faces[0].box
    prep = classifier.preprocessing
    raw = classifier.predict([crop_face(frame, box, prep.face_margin, prep.input_size, prep.face_offset_y, align=True)])[0]
    np.testing.assert_allclose(faces[0].probs, raw, rtol=1e-5)


def test_settings_change_from_another_thread_while_frames_flow(classifier, detector):
    pipeline = MirrorPipeline(classifier, detector)
    errors = []

    def video():
        try:
            for _ in range(10):
                pipeline.process(portrait())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    worker = threading.Thread(target=video)
    worker.start()
    for i in range(30):
        pipeline.update_settings(style=STYLES[i % len(STYLES)], smoothing=(i % 5) / 10, unsure_below=(i % 3) / 3)
    pipeline.set_classifier(EmotionClassifier(classifier.loaded))
    worker.join()
    assert errors == []
    assert pipeline.stats.snapshot()["frames"] == 10


def test_crop_is_square_gray_and_padded_at_the_edges():
    frame = portrait()
    crop = crop_face(frame, FaceBox(0, 0, 60, 40, 1.0), margin=0.2, size=48)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    centre = crop_face(frame, FaceBox(177, 82, 95, 95, 1.0), margin=0.0, size=95)
    expected = cv2.cvtColor(frame[82:177, 177:272], cv2.COLOR_BGR2GRAY)
    assert np.array_equal(centre, expected)
    raised = crop_face(frame, FaceBox(177, 82, 95, 95, 1.0), margin=0.0, size=95, offset_y=-0.2)  # centre up by 19 px
    assert np.array_equal(raised, cv2.cvtColor(frame[63:158, 177:272], cv2.COLOR_BGR2GRAY))


# ---------------------------------------------------------------- tracking


def wobbly_probs(frames: int) -> list[np.ndarray]:
    """A face that is mostly happy (class 3) but whose raw top class flips to sad (4) every other frame."""
    happy, sad = np.full(7, 0.05), np.full(7, 0.05)
    happy[3], happy[4] = 0.55, 0.15
    sad[3], sad[4] = 0.30, 0.40
    return [happy if i % 2 == 0 else sad for i in range(frames)]


def label_changes(labels: list[int]) -> int:
    return sum(a != b for a, b in zip(labels, labels[1:]))


def test_smoothing_removes_flicker():
    box = FaceBox(100, 100, 80, 80, 0.9)
    raw_labels, smooth_labels = [], []
    raw, smooth = FaceTracker(smoothing=0.0), FaceTracker(smoothing=0.7)
    for i, p in enumerate(wobbly_probs(20)):
        moved = box._replace(x=box.x + i)  # the face drifts slowly: still the same track
        raw_labels.append(int(raw.update([moved], p[None])[0][0].argmax()))
        smoothed, ids = smooth.update([moved], p[None])
        smooth_labels.append(int(smoothed[0].argmax()))
        assert ids == [1]
    assert label_changes(raw_labels) == 19
    assert label_changes(smooth_labels) <= 1 and smooth_labels[-1] == 3


def test_tracks_follow_faces_and_expire():
    tracker = FaceTracker(smoothing=0.5, max_missed=3)
    left, right = FaceBox(50, 100, 80, 80, 0.9), FaceBox(400, 100, 80, 80, 0.9)
    probs = np.full((2, 7), 1 / 7)
    _, ids = tracker.update([left, right], probs)
    _, swapped = tracker.update([right._replace(x=410), left._replace(x=60)], probs)
    assert swapped == ids[::-1]  # ids stick to the faces, not to list positions
    for _ in range(3):
        tracker.update([left], probs[:1])
    assert [t.track_id for t in tracker.tracks] == [ids[0], ids[1]]  # right unseen for 3 frames: kept
    tracker.update([left], probs[:1])
    assert [t.track_id for t in tracker.tracks] == [ids[0]]  # 4 missed frames: expired
    _, again = tracker.update([left, right], probs)
    assert again[0] == ids[0] and again[1] not in ids


def test_overlay_blend_is_exact_and_clipped():
    overlay = Overlay()
    frame = np.full((100, 100, 3), 255, np.uint8)
    assert overlay.blend_emoji(frame, "happy", 64, -32, 70)  # partly off the left and bottom edges
    assert not overlay.blend_emoji(frame, "happy", 64, 200, 200)
    image = cv2.resize(overlay.images["happy"], (64, 64), interpolation=cv2.INTER_AREA)
    visible = image[:30, 32:]
    opaque = visible[..., 3] == 255
    np.testing.assert_allclose(frame[70:100, 0:32][opaque], visible[..., :3][opaque], atol=1)
    assert (frame[:70] == 255).all() and (frame[:, 32:] == 255).all()


def test_a_clear_change_of_expression_switches_the_emoji_at_once_and_noise_does_not():
    tracker = FaceTracker(smoothing=0.6)
    box = FaceBox(100, 100, 80, 80, 0.9)
    happy, surprise = np.eye(7, dtype=np.float32)[3] * 0.9 + 0.1 / 7, np.eye(7, dtype=np.float32)[5] * 0.9 + 0.1 / 7
    tracker.update([box], happy[None], now=0.0)
    rng = np.random.default_rng(0)
    for t in range(1, 60):  # a steady happy face with noise: another class now and then near it, never clearly ahead
        noisy = np.clip(happy + rng.normal(0, 0.12, 7).astype(np.float32), 0.001, None)
        tracker.update([box], (noisy / noisy.sum())[None], now=t / 30)
    assert tracker.tracks[0].label == 3 and tracker.label_changes == 0
    shown, _ = tracker.update([box], surprise[None], now=2.0)  # one frame of a clearly different face: switched
    assert int(np.argmax(shown[0])) == 5 and tracker.label_changes == 1
    steady = FaceTracker(smoothing=0.6, switch_margin=2.0)  # no fast switch: the average needs a second frame
    steady.update([box], happy[None])
    assert int(np.argmax(steady.update([box], surprise[None])[0][0])) == 3
    assert int(np.argmax(steady.update([box], surprise[None])[0][0])) == 5 and steady.label_changes == 1


def test_a_busy_server_detects_and_classifies_less_and_one_viewer_gets_everything(classifier, detector, monkeypatch):
    detections, batches = [], []
    detect, predict = detector.detect, classifier.predict
    monkeypatch.setattr(detector, "detect", lambda *a, **k: detections.append(1) or detect(*a, **k))
    monkeypatch.setattr(classifier, "predict", lambda crops: batches.append(len(crops)) or predict(crops))
    clock = iter(np.arange(0.0, 10.0, 0.004))  # ~7 clock reads a frame: ~35 frames a second
    monkeypatch.setattr("emoji_mirror.pipeline.time.perf_counter", lambda: next(clock))
    pipeline = MirrorPipeline(classifier, detector)
    frame = heads(2)
    alone = [pipeline.process(frame.copy())[1] for _ in range(12)]
    assert len(detections) == 12 and sum(batches) == 24 and all(len(faces) == 2 for faces in alone)
    detections.clear(), batches.clear()
    busy = [pipeline.process(frame.copy(), viewers=3)[1] for _ in range(12)]
    assert len(detections) == 4  # one frame in 3
    assert 2 <= sum(batches) <= 8  # each face at most every 200 ms (12 frames ~ 0.34 s), not on every frame
    assert all(len(faces) == 2 and [f.track_id for f in faces] == [f.track_id for f in alone[-1]] for faces in busy)  # the faces stay followed
    assert busy_settings(MirrorSettings(classify_interval_s=0.5), 2) == (MirrorSettings(classify_interval_s=0.5), 2)  # a slower choice stays
    assert busy_settings(MirrorSettings(), 1) == (MirrorSettings(), 1)
