"""Images users give: 16-bit PNGs read right, arrays of any kind converted or refused clearly, and huge images refused or
decoded small (never at full size) in the CLI, predict_image and the Photo page."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut
from streamlit.testing.v1 import AppTest

from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT
from emoji_mirror.predict import ImageReadError, main, predict_image

PHOTO_PAGE = str(REPO_ROOT / "pages" / "photo.py")


def blank_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit grayscale PNG of any size: a few kilobytes, however many pixels it declares."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed pixels
    rows = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_16_bit_grayscale_png_is_read_like_its_8_bit_version(tmp_path, tiny_checkpoint):
    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    Image.fromarray(gray).save(tmp_path / "8bit.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    assert Image.open(tmp_path / "16bit.png").mode == "I;16"
    eight, = predict_image(tmp_path / "8bit.png", checkpoint=str(tiny_checkpoint))
    sixteen, = predict_image(tmp_path / "16bit.png", checkpoint=str(tiny_checkpoint))
    assert sixteen["box"] == eight["box"] and sixteen["detector_score"] == pytest.approx(eight["detector_score"], abs=0.01)
    assert sixteen["probabilities"] == pytest.approx(eight["probabilities"], abs=0.01)


@pytest.mark.parametrize(
    "kind, convert",
    [
        ("float32 in [0, 1]", lambda rgb: rgb.astype(np.float32) / 255),
        ("float64 in [0, 1]", lambda rgb: rgb / 255.0),
        ("uint16", lambda rgb: rgb.astype(np.uint16) * 257),
        ("RGBA", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
        ("gray H x W x 1", lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]),
        ("non-contiguous", lambda rgb: np.ascontiguousarray(rgb[:, ::-1])[:, ::-1]),
    ],
)
def test_arrays_of_other_kinds_are_converted(tiny_checkpoint, kind, convert):
    reference, = predict_image(astronaut(), checkpoint=str(tiny_checkpoint))
    found, = predict_image(convert(astronaut()), checkpoint=str(tiny_checkpoint))
    assert all(abs(found["box"][k] - reference["box"][k]) <= 6 for k in "xywh"), (kind, found["box"], reference["box"])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((0, 0, 3), np.uint8), "an image of shape (0, 0, 3) cannot be used; accepted: uint8"),
        (np.zeros(640, np.uint8), "an image of shape (640,) cannot be used"),
        (np.zeros((48, 48, 2), np.uint8), "an image of shape (48, 48, 2) cannot be used"),
        (np.full((48, 48, 3), 200.0), "a float image must hold finite values in [0, 1] (got 200 to 200)"),
        (np.full((48, 48), np.nan, np.float32), "a float image must hold finite values in [0, 1]"),
        (np.zeros((48, 48, 3), np.int32), "arrays of int32 are not supported; accepted: uint8"),
        (np.zeros((48, 48), bool), "arrays of bool are not supported"),
    ],
)
def test_arrays_that_cannot_be_used_are_refused_clearly(tiny_checkpoint, array, message):
    with pytest.raises(ImageReadError) as refused:
        predict_image(array, checkpoint=str(tiny_checkpoint))
    assert message in str(refused.value)


def test_the_cli_refuses_images_over_the_pixel_limit_and_goes_on(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "huge.png").write_bytes(blank_png(8000, 7500))  # 60 MP in 8 kB
    cv2.imwrite(str(tmp_path / "astronaut.jpg"), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    code = main([str(tmp_path / "huge.png"), str(tmp_path / "astronaut.jpg"), "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == f"error: {tmp_path / 'huge.png'}: image too large (8,000 x 7,500 pixels, 60 megapixels; the limit is 50)\n"
    assert f"{tmp_path / 'astronaut.jpg'}: 1 face" in out


@pytest.mark.slow
def test_a_large_jpeg_is_decoded_small_and_boxes_come_back_in_its_own_pixels(tmp_path, tiny_checkpoint):
    """6144 x 6144 (37.7 MP): decoded at half scale and shrunk before it becomes an array, so the arrays the whole
    prediction makes peak under 60 MB (one full-size RGB copy alone would be 113 MB)."""
    big = cv2.resize(cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR), (6144, 6144), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    tracemalloc.start()
    try:
        face, = predict_image(tmp_path / "big.jpg", checkpoint=str(tiny_checkpoint))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 60e6, f"{peak / 1e6:.0f} MB"
    scale = 6144 / 512  # skimage's portrait is 512 x 512; her face is at about (177, 82), 95 px wide
    assert abs(face["box"]["x"] / scale - 177) < 12 and abs(face["box"]["y"] / scale - 82) < 12 and abs(face["box"]["w"] / scale - 95) < 15


@pytest.mark.slow
def test_the_photo_page_refuses_a_13300_pixel_square_png_at_once(monkeypatch, tiny_checkpoint):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    page = AppTest.from_file(PHOTO_PAGE, default_timeout=120).run()
    page.file_uploader[0].set_value([("huge.png", blank_png(13_300, 13_300), "image/png"), ("astronaut.png", cv2.imencode(".png", astronaut()[..., ::-1])[1].tobytes(), "image/png")]).run(timeout=30)
    assert not page.exception
    assert [e.value for e in page.error] == ["Skipped: huge.png: image too large (13,300 x 13,300 pixels, 177 megapixels; the limit is 50)"]
    assert len(page.get("image")) == 1 and any(m.value.startswith("**Face 1:") for m in page.markdown)
