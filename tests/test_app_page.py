"""The main (live mirror) page in real Streamlit (AppTest): controls, the WebRTC video callback, stats, friendly errors."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import streamlit_webrtc
import streamlit_webrtc.component
from conftest import make_checkpoint
from skimage.data import astronaut
from streamlit.testing.v1 import AppTest

from emoji_mirror.face_model import FACE_MODEL_ENV
from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT
from emoji_mirror.rtc import rtc_configuration
from emoji_mirror.ui import load_detector

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
    assert app.sidebar.selectbox[0].options[0] == "scored · 68.4% private test"


def test_sidebar_settings_reach_the_pipeline(monkeypatch, tiny_checkpoint, streamer_calls):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    app = open_app()
    app.sidebar.slider[1].set_value(0.0)
    app.sidebar.radio[0].set_value("minimal")
    app.run()
    settings = app.session_state["mirror_pipeline"].settings
    assert (settings.smoothing, settings.style) == (0.0, "minimal")


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
