"""The app in real Streamlit (AppTest): its navigation, and the live mirror page's controls, WebRTC video callback, stats and friendly errors."""

from __future__ import annotations

import av
import cv2
import numpy as np
import torch
import pytest
import streamlit as st
import streamlit_webrtc
import streamlit_webrtc.component
from conftest import make_checkpoint
from skimage.data import astronaut
from streamlit.testing.v1 import AppTest

from emoji_mirror.face_model import FACE_MODEL_ENV
from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT
from emoji_mirror.app.rtc import rtc_configuration
from emoji_mirror.app.loaders import TORCH_THREADS_ENV, load_classifier, load_detector, torch_threads

APP = str(REPO_ROOT / "app.py")
TIMEOUT = 120  # first runs import torch and start MediaPipe


@pytest.fixture
def streamer_calls(monkeypatch):
    """Record webrtc_streamer's arguments (the page's video callback among them) while still running the real component.

    AppTest's stand-in runtime has no session manager; streamlit-webrtc treats "no session info" (None) as running
    outside a live server, so the lookup is made to answer that instead of failing on the stand-in.
    """
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)
    calls = []
    real = streamlit_webrtc.webrtc_streamer

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", recording)
    return calls


def open_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def caption_text(app: AppTest) -> str:
    return " ".join(c.value for c in app.caption)


@pytest.fixture
def navigation(monkeypatch) -> list:
    """Record the pages app.py hands st.navigation (once per run), while still navigating with them for real."""
    recorded = []
    real = st.navigation

    def recording(pages, **kwargs):
        recorded.append(pages)
        return real(pages, **kwargs)

    monkeypatch.setattr(st, "navigation", recording)
    return recorded


@pytest.mark.slow
def test_navigation_lists_the_pages_with_the_live_mirror_first_and_default(monkeypatch, tiny_checkpoint, streamer_calls, navigation):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    app = open_app()
    assert not app.exception and not app.error
    pages, = navigation
    assert [(page.title, page.icon) for page in pages] == [("Live mirror", "🪞"), ("Photo", "📷"), ("Compare models", "📊"), ("Train", "🏋️")]
    assert app.title[0].value == "🪞 Emoji Mirror", "the live mirror is the page a visitor lands on"

    app.switch_page("pages/photo.py").run()
    assert not app.exception and app.title[0].value == "📷 Photo"


@pytest.mark.slow
def test_page_streams_through_the_pipeline(monkeypatch, tiny_checkpoint, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    app = open_app()
    assert not app.exception and not app.error
    assert app.title[0].value == "🪞 Emoji Mirror"
    assert app.sidebar.selectbox[0].value == tiny_checkpoint
    assert [s.label for s in app.sidebar.slider] == ["Face detection confidence", "Smoothing", "Unsure below"]
    assert "frames processed: 0" in caption_text(app)

    streamer = streamer_calls[-1]
    assert streamer["media_stream_constraints"] == {"video": True, "audio": False}
    assert streamer["rtc_configuration"] == rtc_configuration()
    assert streamer["async_processing"] is True

    original = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    returned = streamer["video_frame_callback"](av.VideoFrame.from_ndarray(original.copy(), format="bgr24"))
    assert isinstance(returned, av.VideoFrame) and (returned.width, returned.height) == (512, 512)
    assert not np.array_equal(returned.to_ndarray(format="bgr24"), original)

    app.run()  # the page reads the counters the video thread left in the session's pipeline
    assert "frames processed: 1 · frames with faces: 1 · emoji drawn: 1" in caption_text(app)


def test_model_picker_shows_private_test_accuracy(monkeypatch, tmp_path, streamer_calls):
    metrics = {"fer2013/private_test": {"accuracy": 68.4, "macro_f1": 66.0, "n": 3589}}
    scored = make_checkpoint(tmp_path / "scored.pt", meta={"dataset": "fer2013", "metrics": metrics})
    monkeypatch.setenv(CHECKPOINT_ENV, str(scored))
    app = open_app()
    assert not app.exception and not app.error
    assert app.sidebar.selectbox[0].options[0] == "scored · 68.4% FER2013 private test"


def test_sidebar_settings_reach_the_pipeline(monkeypatch, tiny_checkpoint, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    app = open_app()
    app.sidebar.slider[1].set_value(0.0)
    app.sidebar.radio[0].set_value("minimal")
    app.sidebar.select_slider[0].set_value(0.1)
    app.run()
    settings = app.session_state["mirror_pipeline"].settings
    assert (settings.smoothing, settings.style, settings.classify_interval_s) == (0.0, "minimal", 0.1)


def test_app_classifies_on_one_torch_thread_unless_told(monkeypatch, tiny_checkpoint):
    torch.set_num_threads(2)
    load_classifier.clear()
    load_classifier(str(tiny_checkpoint), 0.0, torch_threads())
    assert torch.get_num_threads() == 1
    monkeypatch.setenv(TORCH_THREADS_ENV, "2")
    assert torch_threads() == 2


def test_bad_torch_threads_setting_is_named_in_an_error(monkeypatch, tiny_checkpoint, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    monkeypatch.setenv(TORCH_THREADS_ENV, "two")
    app = open_app()
    assert not app.exception
    assert TORCH_THREADS_ENV in app.error[0].value and "'two'" in app.error[0].value


def test_missing_checkpoint_shows_an_error_instead_of_the_video(monkeypatch, tmp_path, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "gone.pt"))
    app = open_app()
    assert not app.exception
    assert len(app.error) == 1 and CHECKPOINT_ENV in app.error[0].value and "gone.pt" in app.error[0].value
    assert streamer_calls == []


def test_incompatible_checkpoint_shows_an_error(monkeypatch, tmp_path, tiny_checkpoint, streamer_calls):
    import torch

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["arch"] = "attention_cnn"  # baseline_cnn weights under another architecture's name
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    monkeypatch.setenv(CHECKPOINT_ENV, str(wrong))
    app = open_app()
    assert not app.exception
    assert len(app.error) == 1 and "wrong.pt" in app.error[0].value and "do not fit" in app.error[0].value
    assert streamer_calls == []


def test_missing_face_model_shows_how_to_get_it(monkeypatch, tmp_path, tiny_checkpoint, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    monkeypatch.setenv(FACE_MODEL_ENV, str(tmp_path / "no_model.tflite"))
    load_detector.clear()
    try:
        app = open_app()
    finally:
        load_detector.clear()
    assert not app.exception
    assert len(app.error) == 1 and "face detector" in app.error[0].value and FACE_MODEL_ENV in app.error[0].value
    assert streamer_calls == []


def test_page_says_when_the_server_is_busy_and_the_callback_tells_the_pipeline(monkeypatch, tiny_checkpoint, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    app = open_app()
    assert not [info for info in app.info if "busy" in info.value]  # one viewer (none playing here): nothing to say
    monkeypatch.setattr("emoji_mirror.app.stream.viewers", lambda: 3)
    app = open_app()
    assert not app.exception and any("busy: 3 viewers" in info.value for info in app.info)
    seen = []
    monkeypatch.setattr("emoji_mirror.pipeline.MirrorPipeline.process", lambda self, image, viewers=1: seen.append(viewers) or (image, []))
    streamer_calls[-1]["video_frame_callback"](av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24"))
    assert seen == [3]
