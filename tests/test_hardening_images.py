"""Images at the edges of what is valid (issue 18, items 7, 8 and 11): float TIFFs, a JPEG whose header overstates its
size, 16-bit and float arrays within a memory bound, and images too thin to show on the Photo page."""

from __future__ import annotations

import io
import struct
import tracemalloc

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from streamlit.testing.v1 import AppTest

from emoji_mirror.images import ImageReadError, array_to_bgr, read_image
from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT

PHOTO_PAGE = str(REPO_ROOT / "pages" / "photo.py")


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("scale", [1.0, 1 / 255])
def test_a_float32_gray_tiff_reads_as_its_8_bit_twin(scale):
    gray = skdata.camera()
    image, _ = read_image(encoded((gray * scale).astype(np.float32), "TIFF"), "float.tif")
    assert np.abs(image[..., 0].astype(int) - gray).max() <= 1


def test_a_float_tiff_outside_0_to_255_is_refused():
    with pytest.raises(ImageReadError, match=r"float.tif: a floating-point image must hold finite values in \[0, 1\] or \[0, 255\]"):
        read_image(encoded(np.full((32, 32), 1000.0, np.float32), "TIFF"), "float.tif")


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_whose_header_claims_7000_pixels_a_side_is_corrupt(progressive):
    """The astronaut's 512 x 512 data under a 7000 x 7000 header decodes to grey without an error; it is refused."""
    data = bytearray(encoded(skdata.astronaut(), "JPEG", progressive=progressive))
    start = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    assert start > 0
    struct.pack_into(">HH", data, start + 5, 7000, 7000)  # marker, length (2), precision (1), then height and width
    with pytest.raises(ImageReadError, match=r"edited.jpg: corrupt image \(its header says 7,000 x 7,000 pixels"):
        read_image(bytes(data), "edited.jpg")
    read_image(encoded(skdata.astronaut(), "JPEG", progressive=progressive), "intact.jpg")  # the intact file reads


@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_a_7000_pixel_16_bit_or_float_array_is_shrunk_without_a_full_size_copy(dtype):
    """A 7000 x 7000 x 3 array (294 MB as uint16, 1.2 GB as float64) used to take 1.2 GB more while converting; now the
    most it takes is the shrunk copy in its own type (100 MB as float64)."""
    array = np.zeros((7000, 7000, 3), dtype)
    array[1000:6000, 2000:5000, 0] = 65535 if dtype == np.uint16 else 1.0  # a red block
    tracemalloc.start()
    try:
        bgr = array_to_bgr(array)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150e6, f"{peak / 1e6:.0f} MB"
    assert bgr.shape == (2048, 2048, 3) and bgr.dtype == np.uint8
    assert tuple(bgr[1024, 1024]) == (0, 0, 255) and tuple(bgr[100, 100]) == (0, 0, 0)


@pytest.mark.parametrize("value", [np.nan, 2.0])
def test_a_float_array_with_nan_or_over_1_is_refused_by_its_range(value):
    array = np.zeros((64, 64, 3), np.float32)
    array[5, 5, 1] = value
    with pytest.raises(ImageReadError, match=r"a float image must hold finite values in \[0, 1\]"):
        array_to_bgr(array)


@pytest.mark.slow
def test_the_photo_page_says_a_thin_image_holds_no_face_and_shows_the_rest(monkeypatch, tiny_checkpoint):
    """1500 x 1, 3000 x 2 and 100000 x 1 PNGs raised in st.image (a height of 0 when shown 720 wide): the batch stopped."""
    monkeypatch.setenv(CHECKPOINT_ENV, str(tiny_checkpoint))
    thin = [(f"{w}x{h}.png", encoded(np.full((h, w, 3), 128, np.uint8), "PNG"), "image/png") for w, h in [(1500, 1), (3000, 2), (100000, 1), (1, 1500)]]
    astronaut = ("astronaut.png", cv2.imencode(".png", skdata.astronaut()[..., ::-1])[1].tobytes(), "image/png")
    page = AppTest.from_file(PHOTO_PAGE, default_timeout=120).run()
    page.file_uploader[0].set_value([*thin, astronaut]).run(timeout=60)
    assert not page.exception, [e.value for e in page.exception]
    warnings = [w.value for w in page.warning]
    assert len(warnings) == 4 and all("too thin to hold a face" in w for w in warnings), warnings
    assert "1500x1.png" in warnings[0] and "1,500 x 1 pixels" in warnings[0]
    assert len(page.get("image")) == 1 and any(m.value.startswith("**Face 1:") for m in page.markdown)
