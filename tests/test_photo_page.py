"""The photo page in real Streamlit (AppTest): uploads and camera photos get emoji and charts; bad input gets a message."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pyarrow as pa
import pytest
from skimage.data import astronaut
from streamlit.testing.v1 import AppTest

from emoji_mirror.overlay import FONT, LABEL_SCALE
from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT
from emoji_mirror.pipeline import MirrorPipeline
from emoji_mirror.predict import predict_image

PAGE = str(REPO_ROOT / "pages" / "photo.py")
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


def digit_template(digit: int) -> np.ndarray:
    """The digit as the overlay's font draws it, white on black, cropped to its ink with a 1 px border."""
    canvas = np.zeros((40, 30), np.uint8)
    cv2.putText(canvas, str(digit), (5, 30), FONT, LABEL_SCALE, 255, 1, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min() - 1 : ys.max() + 2, xs.min() - 1 : xs.max() + 2]


def test_faces_are_numbered_in_the_photo_as_in_their_charts(page, monkeypatch):
    """Three portraits side by side: box k carries the number k (and nothing else changes), chart k is face k's."""
    shown = []
    real = MirrorPipeline.annotate_image

    def recording(self, image, **kwargs):
        shown.append((real(self, image)[0], *real(self, image, **kwargs)))  # unnumbered, then as the page asked
        return shown[-1][1:]

    monkeypatch.setattr(MirrorPipeline, "annotate_image", recording)
    page.file_uploader[0].set_value([("three.png", encoded(np.hstack([astronaut()] * 3), ".png"), "image/png")]).run()
    assert not page.exception
    (plain, numbered, faces), = shown
    assert len(faces) == 3

    changed = np.any(plain != numbered, axis=2)
    corners = np.zeros_like(changed)
    for number, face in enumerate(faces, 1):
        x, y, w = face.box.x, face.box.y, face.box.w
        corner = (slice(max(y - 2, 0), y + 30), slice(x + w - 30, x + w + 3))  # the badge: top-right, inside the box (and its edge)
        corners[corner] = True
        assert changed[corner].sum() > 100, f"no badge on face {number}"
        badge = cv2.cvtColor(numbered[corner], cv2.COLOR_BGR2GRAY)
        scores = {digit: cv2.matchTemplate(badge, digit_template(digit), cv2.TM_CCOEFF_NORMED).max() for digit in (1, 2, 3)}
        assert max(scores, key=scores.get) == number and scores[number] > 0.9, (number, scores)
    assert not (changed & ~corners).any(), "numbering changes nothing outside the badges"

    face_lines = [m.value for m in page.markdown if m.value.startswith("**Face")]
    assert face_lines == [f"**Face {k}: {face.emoji} {face.label}** ({face.confidence:.0%})" for k, face in enumerate(faces, 1)]
    for chart, face in zip(page.get("vega_lite_chart"), faces, strict=True):
        np.testing.assert_allclose(list(chart_probabilities(chart).values()), face.probs, atol=1e-6)


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
