"""The photo page in real Streamlit (AppTest): uploads and camera photos get emoji and charts; bad input gets a message."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pyarrow as pa
import pytest
from skimage.data import astronaut
from streamlit.testing.v1 import AppTest

from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT
from emoji_mirror.predict import predict_image

PAGE = str(REPO_ROOT / "pages" / "1_📷_Photo.py")
TIMEOUT = 120  # first runs import torch and start MediaPipe


def encoded(image_rgb: np.ndarray, ext: str = ".jpg") -> bytes:
    return cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def chart_probabilities(chart) -> dict[str, float]:
    """The emotion -> probability rows behind a st.bar_chart, decoded from its Arrow payload."""
    table = pa.ipc.open_stream(io.BytesIO(chart.proto.datasets[0].data.data)).read_all().to_pandas()
    return dict(zip(table["emotion"], table["probability"]))


@pytest.fixture
def page(monkeypatch, tiny_checkpoint):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    return app


def test_uploads_each_get_their_result_or_a_clear_message(page, tiny_checkpoint):
    portrait = encoded(astronaut())
    page.file_uploader[0].set_value(
        [
            ("astronaut.jpg", portrait, "image/jpeg"),
            ("notes.jpg", b"just text", "image/jpeg"),
            ("truncated.jpg", portrait[: len(portrait) // 3], "image/jpeg"),
            ("wall.png", encoded(np.full((300, 400, 3), 180, np.uint8), ".png"), "image/png"),
        ]
    ).run()
    assert not page.exception
    assert [s.value for s in page.subheader] == ["astronaut.jpg", "notes.jpg", "truncated.jpg", "wall.png"]
    errors = [e.value for e in page.error]
    assert len(errors) == 2 and "notes.jpg: not an image" in errors[0] and "truncated.jpg" in errors[1] and "corrupt" in errors[1]
    assert len(page.warning) == 1 and "wall.png: no face found" in page.warning[0].value
    assert len(page.get("image")) == 2  # the portrait and the wall are shown, the broken files are not

    expected, = predict_image(astronaut(), checkpoint=str(tiny_checkpoint))
    face_lines = [m.value for m in page.markdown if m.value.startswith("**Face")]
    assert face_lines == [f"**Face 1: {expected['emoji']} {expected['label']}** ({expected['confidence']:.0%})"]
    chart, = page.get("vega_lite_chart")
    shown = chart_probabilities(chart)
    assert len(shown) == 7
    for name, probability in expected["probabilities"].items():
        assert any(label.endswith(name) and abs(p - probability) < 1e-3 for label, p in shown.items())


def test_camera_photo(page):
    page.toggle[0].set_value(True).run()
    page.camera_input[0].upload("photo.jpg", encoded(astronaut())).run()
    assert not page.exception
    assert [s.value for s in page.subheader] == ["camera photo"]
    assert len([m for m in page.markdown if m.value.startswith("**Face 1:")]) == 1


def test_missing_checkpoint_is_an_error_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "gone.pt"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert len(app.error) == 1 and CHECKPOINT_ENV in app.error[0].value and "gone.pt" in app.error[0].value
    assert not app.file_uploader


def test_corrupt_checkpoint_is_an_error_not_a_traceback(monkeypatch, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a checkpoint")
    monkeypatch.setenv(CHECKPOINT_ENV, str(broken))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert len(app.error) == 1 and "broken.pt" in app.error[0].value and "Fix:" in app.error[0].value
