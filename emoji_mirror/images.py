"""Photos in, BGR uint8 images out: files, uploads and arrays decoded within a pixel budget, or one clear error saying why not."""

from __future__ import annotations

import io
import math
import os
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # the only decoders Pillow may use (no EPS, PSD, ...)
EXTENSIONS = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
SUPPORTED = "JPEG, PNG, WebP, BMP, GIF or TIFF"
MAX_PIXELS = 50_000_000  # larger images are refused before they are decoded (a 50-megapixel phone photo still fits)
MAX_SIDE = 2048  # what the CLI and predict_image analyse: larger photos are shrunk while decoding (boxes are scaled back)
ARRAYS = "uint8 (or uint16, or float in [0, 1]) arrays of shape H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA)"
MIN_FACE_SIDE = 16  # an image narrower than this cannot hold a face the detector finds


class ImageReadError(ValueError):
    """An image that cannot be used: missing, not an image, corrupt, too large, or an array of an unsupported kind."""


def too_large(name: str, width: int, height: int) -> ImageReadError:
    """The error for an image over MAX_PIXELS, with its size."""
    return ImageReadError(f"{name}: image too large ({width:,} x {height:,} pixels, {width * height / 1e6:.0f} megapixels; the limit is {MAX_PIXELS / 1e6:.0f})")


def jpeg_blocks_missing(image: Image.Image, nbytes: int) -> bool:
    """True when a JPEG file of nbytes is too short for the 8x8 blocks its header declares: each takes at least 2 bits
    in a baseline file (its DC code and an end-of-block code), 1 in a progressive one (its first DC code). Decoders
    fill the missing blocks with grey without an error; a header edited to a larger size is caught here."""
    width, height = image.size
    most_h, most_v = max(h for _, h, _, _ in image.layer), max(v for _, _, v, _ in image.layer)
    blocks = sum(math.ceil(math.ceil(width * h / most_h) / 8) * math.ceil(math.ceil(height * v / most_v) / 8) for _, h, v, _ in image.layer)
    return nbytes * 8 < blocks * (1 if image.info.get("progressive") else 2)


def float_gray(array: np.ndarray, name: str) -> np.ndarray:
    """A 32-bit float gray image (TIFF) as uint8: values in [0, 1] or in [0, 255]; ImageReadError for other values."""
    low, high = float(array.min()), float(array.max())
    if not (math.isfinite(low) and math.isfinite(high) and low >= 0 and high <= 255):
        raise ImageReadError(f"{name}: a floating-point image must hold finite values in [0, 1] or [0, 255] (got {low:.3g} to {high:.3g})")
    return np.round(array * (255.0 if high <= 1 else 1.0)).astype(np.uint8)


def _decode(image: Image.Image, name: str, max_side: int, nbytes: int) -> np.ndarray:
    """An opened image -> RGB, gray or 16-bit array no larger than max_side, decoding as little as the format allows."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise too_large(name, width, height)
    if image.format == "JPEG" and jpeg_blocks_missing(image, nbytes):
        raise ImageReadError(f"{name}: corrupt image (its header says {width:,} x {height:,} pixels, more than its {nbytes:,} bytes can hold)")
    shrink = max_side / max(width, height)
    if shrink < 1:  # JPEG: decode at 1/2, 1/4 or 1/8 scale straight away (other formats ignore this)
        image.draft(None, (math.ceil(width * shrink), math.ceil(height * shrink)))
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode not in ("I", "F", "L"):
        image = image.convert("RGB")
    shrink = max_side / max(image.size)
    if shrink < 1:  # a cheap box filter (Image.reduce) first, then resampling the rest of the way
        image = image.resize((max(1, round(image.width * shrink)), max(1, round(image.height * shrink))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    array = np.asarray(image)
    if image.mode == "F":
        return float_gray(array, name)
    if image.mode == "I":  # 16-bit gray (PNG, TIFF): 0..65535
        array = np.clip(array, 0, 65535).astype(np.uint16)
    return array


def read_image(source: str | os.PathLike | bytes, name: str | None = None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """A file path or encoded bytes -> (BGR uint8 image at most max_side pixels a side, its scale to the original), EXIF
    rotation applied; ImageReadError saying why not (missing, not a supported image, corrupt, over MAX_PIXELS)."""
    name = name or ("upload" if isinstance(source, bytes) else str(source))
    if not isinstance(source, bytes) and os.path.exists(source) and not os.path.isfile(source):  # a FIFO would block forever
        raise ImageReadError(f"{name}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS, lower, refuses those with a message
            nbytes = len(source) if isinstance(source, bytes) else os.path.getsize(source)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=FORMATS) as image:
                original = max(image.size)
                array = _decode(image, name, max_side, nbytes)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image, or not a {SUPPORTED} one") from None
    except Image.DecompressionBombError:  # Pillow's own guard, at twice Image.MAX_IMAGE_PIXELS
        raise ImageReadError(f"{name}: image too large (over {MAX_PIXELS / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{name}: unreadable or corrupt image ({exc})") from None
    bgr = array_to_bgr(array, name, max_side)
    return bgr, max(bgr.shape[:2]) / original


def value_problem(array: np.ndarray, name: str) -> ImageReadError | None:
    """The error for an array of a kind eight_bit cannot take (its dtype, or floats outside [0, 1]), found without copying it."""
    if array.dtype in (np.uint8, np.uint16):
        return None
    if array.dtype not in (np.float16, np.float32, np.float64):
        return ImageReadError(f"{name}: arrays of {array.dtype} are not supported; accepted: {ARRAYS}")
    low, high = float(array.min()), float(array.max())  # NaN or infinity anywhere shows in these two
    if not (math.isfinite(low) and math.isfinite(high) and low >= 0 and high <= 1):
        return ImageReadError(f"{name}: a float image must hold finite values in [0, 1] (got {low:.3g} to {high:.3g}); accepted: {ARRAYS}")
    return None


def eight_bit(array: np.ndarray) -> np.ndarray:
    """An array value_problem accepts as uint8: uint8 as it is, uint16 scaled down (65535 -> 255), [0, 1] floats scaled up."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.float16:
        array = array.astype(np.float32)  # OpenCV has no half floats
    return cv2.convertScaleAbs(array, alpha=255.0 / 65535.0 if array.dtype == np.uint16 else 255.0)  # rounded, no temporary copies


def array_to_bgr(array: np.ndarray, name: str = "array", max_side: int = MAX_SIDE) -> np.ndarray:
    """A gray, RGB or RGBA array -> BGR uint8 at most max_side pixels a side; ImageReadError naming what is accepted."""
    if array.size == 0 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageReadError(f"{name}: an image of shape {array.shape} cannot be used; accepted: {ARRAYS}")
    height, width = array.shape[:2]
    if width * height > MAX_PIXELS:
        raise too_large(name, width, height)
    problem = value_problem(array, name)
    if problem:
        raise problem
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    shrink = max_side / max(height, width)
    if shrink < 1:  # shrunk in its own type first: a 16-bit or float photo never takes a full-size copy
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        array = cv2.resize(array.astype(np.float32) if array.dtype == np.float16 else array, size, interpolation=cv2.INTER_AREA)
    pixels = np.ascontiguousarray(eight_bit(array))
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGR)
