"""Tiny synthetic FER2013 (Kaggle zip) and FER+ (label.csv zip) in their real layouts, so the sprint's smoke runs anywhere in seconds."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from emoji_mirror.labels import FER2013_CLASSES

from .data import FaceDataset
from .soft_targets import save_soft_targets

FER_COUNTS = {"train": ("train", "Training", 6), "public_test": ("test", "PublicTest", 2), "private_test": ("test", "PrivateTest", 2)}
FERPLUS_COUNTS = {"FER2013Train": 6, "FER2013Valid": 2, "FER2013Test": 2}
FERPLUS_EMOTIONS = 8  # the first 8 vote columns are emotions (neutral ... contempt); unknown and NF follow


def face(rng: np.random.Generator, label: int) -> np.ndarray:
    """A 48x48 noise face with a bright square whose position is the label: learnable, and nobody's face."""
    pixels = rng.integers(0, 120, (48, 48), dtype=np.uint8)
    row, col = divmod(label, 3)
    pixels[4 + 14 * row : 14 + 14 * row, 4 + 14 * col : 14 + 14 * col] = 230
    return pixels


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def make_fer2013(path: Path, seed: int = 0) -> Path:
    """A Kaggle-layout fer2013.zip: train/<class>/Training_<i>.jpg and test/<class>/{PublicTest,PrivateTest}_<i>.jpg."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for top, prefix, per_class in FER_COUNTS.values():
            for label, name in enumerate(FER2013_CLASSES):
                for i in range(per_class):
                    zf.writestr(f"{top}/{name}/{prefix}_{label}{i:03d}.jpg", encode(face(rng, label), "JPEG"))
    return path


def make_ferplus(path: Path, seed: int = 1) -> Path:
    """A FER+ zip: FER2013{Train,Valid,Test}/fer<row>.png with label.csv (10 vote counts; one clear majority per face)."""
    rng = np.random.default_rng(seed)
    row = 0
    with zipfile.ZipFile(path, "w") as zf:
        for folder, per_class in FERPLUS_COUNTS.items():
            lines = []
            for column in range(FERPLUS_EMOTIONS):
                for _ in range(per_class):
                    votes = [0] * 10
                    votes[column], votes[(column + 1) % FERPLUS_EMOTIONS] = 8, 2
                    name = f"fer{row:07d}.png"
                    zf.writestr(f"{folder}/{name}", encode(face(rng, column), "PNG"))
                    lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
                    row += 1
            zf.writestr(f"{folder}/label.csv", "\n".join(lines) + "\n")
    return path


def make_tiny_data(folder: Path) -> tuple[Path, Path]:
    """(fer2013.zip, ferplus.zip) with a few dozen faces each, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return make_fer2013(folder / "fer2013.zip"), make_ferplus(folder / "ferplus.zip")


def make_soft_labels(dataset: FaceDataset, path: Path) -> Path:
    """Soft labels for the tiny data's training faces (the label smoothed over the classes), so the students plan's smoke
    distils as the real plan does from the tracked files."""
    labels = dataset.splits["train"].labelled().labels
    classes = len(dataset.classes)
    probs = np.full((len(labels), classes), 0.2 / (classes - 1), dtype=np.float32)
    probs[np.arange(len(labels)), labels] = 0.8
    save_soft_targets(path, probs, dataset, ["smoke-teacher"], "none")
    return path
