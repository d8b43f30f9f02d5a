"""Tiny synthetic FER2013 and FER+ in their real layouts (the Kaggle image tree as a zip or folder, fer2013.csv, FER+
label.csv): the sprint's smoke and the tests run on them anywhere, without the real data.

Every face is seeded noise with a bright square whose position is its class: learnable, and nobody's face."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from emoji_mirror.labels import FER2013_CLASSES

# FER2013's splits: (top folder of the Kaggle tree, file-name prefix = the CSV's Usage)
FER_LAYOUT = {"train": ("train", "Training"), "public_test": ("test", "PublicTest"), "private_test": ("test", "PrivateTest")}
FER_PER_CLASS = {"train": 6, "public_test": 2, "private_test": 2}  # faces of each class in each split, by default
FERPLUS_FOLDERS = {"FER2013Train": "train", "FER2013Valid": "public_test", "FER2013Test": "private_test"}
FERPLUS_PER_CLASS = {"FER2013Train": 6, "FER2013Valid": 2, "FER2013Test": 2}
FERPLUS_EMOTIONS = 8  # the first 8 vote columns are emotions (neutral ... contempt); unknown and NF follow
FERPLUS_UNCLEAR = [3, 3, 0, 0, 0, 0, 0, 0, 2, 2]  # a tie between two emotions: no majority, dropped by the FER+ protocol
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}

Row = tuple[str, int, np.ndarray]  # (split, label, 48x48 uint8 face)


def face(rng: np.random.Generator, label: int) -> np.ndarray:
    """A 48x48 noise face with a bright square whose position is the label: learnable, and nobody's face."""
    pixels = rng.integers(0, 120, (48, 48), dtype=np.uint8)
    row, col = divmod(label, 3)
    pixels[4 + 14 * row : 14 + 14 * row, 4 + 14 * col : 14 + 14 * col] = 230
    return pixels


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    """The face as an image file's bytes (fmt: a PIL format, JPEG or PNG; options such as quality=100 go to PIL)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


@contextlib.contextmanager
def _files(path: Path) -> Iterator[Callable[[str, bytes], None]]:
    """write(name, bytes) into a zip when `path` ends in .zip, else into the folder `path`."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            yield zf.writestr
        return

    def write(name: str, data: bytes) -> None:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)

    yield write


def fer2013_rows(per_class: dict[str, int] | None = None, seed: int = 0) -> list[Row]:
    """(split, label, face) for per_class[split] faces of every class in each split (default FER_PER_CLASS), in split,
    class, index order."""
    rng = np.random.default_rng(seed)
    per_class = FER_PER_CLASS if per_class is None else per_class
    return [(split, label, face(rng, label)) for split, count in per_class.items() for label in range(len(FER2013_CLASSES)) for _ in range(count)]


def write_fer2013(rows: list[Row], path: Path, fmt: str = "JPEG", **options) -> Path:
    """The Kaggle layout of these rows at `path` (a .zip, else a folder): train/<class>/Training_<i>.jpg and
    test/<class>/{PublicTest,PrivateTest}_<i>.jpg (.png for fmt PNG); options go to PIL (quality=100 ...)."""
    seen = Counter()
    with _files(path) as write:
        for split, label, pixels in rows:
            top, prefix = FER_LAYOUT[split]
            i = seen[split, label]
            seen[split, label] += 1
            write(f"{top}/{FER2013_CLASSES[label]}/{prefix}_{label}{i:03d}{EXTENSIONS[fmt]}", encode(pixels, fmt, **options))
    return Path(path)


def write_fer2013_csv(rows: list[Row], path: Path) -> Path:
    """fer2013.csv of these rows: emotion, the 2304 pixels space-separated, Usage."""
    lines = ["emotion,pixels,Usage"] + [f"{label},{' '.join(map(str, pixels.ravel()))},{FER_LAYOUT[split][1]}" for split, label, pixels in rows]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def make_fer2013(path: Path, seed: int = 0, per_class: dict[str, int] | None = None, fmt: str = "JPEG", **options) -> Path:
    """A Kaggle-layout FER2013 (a zip when `path` ends in .zip, else a folder): per_class[split] faces of every class in
    each split (default FER_PER_CLASS: 6 train, 2 PublicTest, 2 PrivateTest), as JPEG (or fmt PNG) files."""
    return write_fer2013(fer2013_rows(per_class, seed), path, fmt, **options)


def ferplus_votes(per_class: dict[str, int] | None = None, unclear: int = 0) -> dict[str, list[list[int]]]:
    """The 10 vote counts of each row of each FER+ folder: per_class[folder] rows with a clear majority for each of the 8
    emotions (default FERPLUS_PER_CLASS), then `unclear` rows with no majority (FERPLUS_UNCLEAR)."""
    votes = {}
    for folder, count in (FERPLUS_PER_CLASS if per_class is None else per_class).items():
        rows = []
        for column in range(FERPLUS_EMOTIONS):
            for _ in range(count):
                row = [0] * 10
                row[column], row[(column + 1) % FERPLUS_EMOTIONS] = 8, 2
                rows.append(row)
        votes[folder] = rows + [list(FERPLUS_UNCLEAR) for _ in range(unclear)]
    return votes


def make_ferplus(path: Path, seed: int = 1, votes: dict[str, list[list[int]]] | None = None) -> Path:
    """A FER+ layout (a zip when `path` ends in .zip, else a folder): FER2013{Train,Valid,Test}/fer<row>.png with label.csv,
    one row per vote list in `votes` (default ferplus_votes()); each face shows the square of its most-voted emotion."""
    rng = np.random.default_rng(seed)
    row = 0
    with _files(path) as write:
        for folder, rows in (ferplus_votes() if votes is None else votes).items():
            lines = []
            for counts in rows:
                name = f"fer{row:07d}.png"
                write(f"{folder}/{name}", encode(face(rng, int(np.argmax(counts[:FERPLUS_EMOTIONS]))), "PNG"))
                lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, counts)))
                row += 1
            write(f"{folder}/label.csv", ("\n".join(lines) + "\n").encode())
    return Path(path)


def make_tiny_data(folder: Path) -> tuple[Path, Path]:
    """(fer2013.zip, ferplus.zip) with a few dozen faces each, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return make_fer2013(folder / "fer2013.zip"), make_ferplus(folder / "ferplus.zip")
