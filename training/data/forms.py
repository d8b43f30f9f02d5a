"""FER2013 and FER+ in every form users have: the Kaggle image tree (zip or folder), fer2013.csv, and FER+ label files."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from emoji_mirror.labels import FER2013_CLASSES, FERPLUS_CLASSES, canonical

from .dataset import IMAGE_SIZE, SPLITS, DataError, FaceDataset, FaceSplit, fingerprint

# FER2013 file-name prefixes and CSV `Usage` values -> our split names.
_FER_SPLIT = {"training": "train", "publictest": "public_test", "privatetest": "private_test"}
# FER+ folders -> split; the vote columns of label.csv / fer2013new.csv, in file order.
_FERPLUS_SPLIT = {"FER2013Train": "train", "FER2013Valid": "public_test", "FER2013Test": "private_test"}
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# What a member may declare before it is read (a zip bomb's 4 GiB of zeros is refused unread): a 48 x 48 face is a
# few KB in any format, fer2013.csv is 301 MB, a FER+ label.csv 1 MB.
MAX_IMAGE_BYTES = 1 << 20
MAX_TABLE_BYTES = 512 << 20


def bounded(read, size_of):
    """`read(name)` that first checks the size `size_of(name)` declares against what such a member can be."""

    def read_checked(name: str) -> bytes:
        limit = MAX_TABLE_BYTES if name.lower().endswith(".csv") else MAX_IMAGE_BYTES
        size = size_of(name)
        if size > limit:
            raise DataError(f"{name}: declares {size:,} bytes, more than a {'table' if limit == MAX_TABLE_BYTES else 'face image'} "
                            f"of this dataset can be ({limit:,}); the data is damaged or not FER2013/FER+")
        return read(name)

    return read_checked


def decode(source: Path) -> FaceDataset:
    """Decode a zip, folder or fer2013.csv into a FaceDataset; every member's size is checked before it is read."""
    if source.is_dir():
        files = {str(p.relative_to(source)).replace(os.sep, "/"): p for p in source.rglob("*") if p.is_file()}
        return _decode_members(source, list(files), bounded(lambda name: files[name].read_bytes(), lambda name: files[name].stat().st_size))
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            return _decode_members(source, names, bounded(zf.read, lambda name: zf.getinfo(name).file_size))
    if source.suffix.lower() == ".csv":
        read = bounded(lambda name: source.read_bytes(), lambda name: source.stat().st_size)
        return _decode_fer_csv(read(source.name).decode("utf-8", errors="replace").splitlines())
    raise DataError(f"{source} is not a FER2013/FER+ zip, folder or fer2013.csv")


def _decode_members(source: Path, names: list[str], read) -> FaceDataset:
    """Dispatch on what a folder or zip holds: FER+ label files, the Kaggle image tree, or fer2013.csv."""
    ferplus_labels = [n for n in names if n.endswith("label.csv") and Path(n).parent.name in _FERPLUS_SPLIT]
    if ferplus_labels:
        return _decode_ferplus(ferplus_labels, read)
    images = [n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png")) and kaggle_split(n)]
    if images:
        return _decode_kaggle_tree(images, read)
    csvs = [n for n in names if Path(n).name.lower() == "fer2013.csv"]
    if csvs:
        return _decode_fer_csv(read(csvs[0]).decode("utf-8", errors="replace").splitlines())
    nested = [n for n in names if n.lower().endswith(".zip")]
    if len(nested) == 1 and source.is_dir():
        return decode(source / nested[0])
    raise DataError(
        f"{source} holds neither the Kaggle layout (train/<class>/*.jpg, test/<class>/*.jpg), "
        "FER+ (FER2013Train/label.csv ...), nor fer2013.csv"
    )


def kaggle_split(name: str) -> str | None:
    """train/<class>/x.jpg -> train; test/<class>/PublicTest_x.jpg -> public_test; else None."""
    parts = name.split("/")
    if len(parts) < 3:
        return None
    top, cls, fname = parts[-3].lower(), parts[-2], parts[-1]
    if canonical(cls) not in FER2013_CLASSES:
        return None
    if top == "train":
        return "train"
    if top == "test":
        prefix = fname.split("_", 1)[0].lower()
        return _FER_SPLIT.get(prefix)
    return None


def decode_image(data: bytes, name: str) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data)).convert("L")
    except Exception as exc:
        raise DataError(f"cannot decode image {name}: {exc}") from exc
    if img.size != (IMAGE_SIZE, IMAGE_SIZE):
        img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _stack(rows: dict[str, list]) -> dict[str, FaceSplit]:
    out = {}
    for split in SPLITS:
        if rows.get(split):
            images, labels, votes = zip(*rows[split])
            vote_arr = None if votes[0] is None else np.stack(votes).astype(np.float32)
            out[split] = FaceSplit(np.stack(images), np.asarray(labels, dtype=np.int64), vote_arr)
    if "train" not in out:
        raise DataError("the data has no training split")
    return out


def _decode_kaggle_tree(names: list[str], read) -> FaceDataset:
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for name in sorted(names):
        split = kaggle_split(name)
        label = FER2013_CLASSES.index(canonical(name.split("/")[-2]))
        rows[split].append((decode_image(read(name), name), label, None))
    splits = _stack(rows)
    return FaceDataset("fer2013", FER2013_CLASSES, splits, fingerprint(splits))


def _decode_fer_csv(lines: list[str]) -> FaceDataset:
    reader = csv.DictReader(lines)
    if not reader.fieldnames or not {"emotion", "pixels", "Usage"} <= set(reader.fieldnames):
        raise DataError("fer2013.csv must have the columns emotion, pixels, Usage")
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for i, row in enumerate(reader):
        split = _FER_SPLIT.get(row["Usage"].strip().lower())
        pixels = np.array(row["pixels"].split(), dtype=np.uint8)
        if split is None or pixels.size != IMAGE_SIZE * IMAGE_SIZE:
            raise DataError(f"fer2013.csv row {i + 2}: bad Usage {row['Usage']!r} or {pixels.size} pixels (need 2304)")
        rows[split].append((pixels.reshape(IMAGE_SIZE, IMAGE_SIZE), int(row["emotion"]), None))
    splits = _stack(rows)
    return FaceDataset("fer2013", FER2013_CLASSES, splits, fingerprint(splits))


def ferplus_majority_label(votes: np.ndarray) -> int:
    """Microsoft's FER+ majority protocol: drop single votes, keep a clear (>50%) emotion winner, else -1.

    `votes` are the 10 counts in FERPLUS_VOTE_COLUMNS order; returns an index into FERPLUS_CLASSES.
    """
    kept = np.where(votes > 1, votes, 0)
    total = kept.sum()
    if total == 0 or kept.max() <= 0.5 * total:
        return -1
    winner = int(np.argmax(kept))
    if winner >= 8:  # unknown or not-a-face
        return -1
    return FERPLUS_CLASSES.index(canonical(FERPLUS_VOTE_COLUMNS[winner]))


def _decode_ferplus(label_files: list[str], read) -> FaceDataset:
    column_to_class = [FERPLUS_CLASSES.index(canonical(c)) for c in FERPLUS_VOTE_COLUMNS[:8]]
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for label_file in sorted(label_files):
        folder = label_file.rsplit("/", 1)[0]
        split = _FERPLUS_SPLIT[folder.split("/")[-1]]
        for rec in csv.reader(read(label_file).decode().splitlines()):
            if not rec:
                continue
            raw = np.array([float(v) for v in rec[2:12]], dtype=np.float32)
            emotion_votes = np.zeros(8, dtype=np.float32)
            emotion_votes[column_to_class] = raw[:8]
            name = f"{folder}/{rec[0]}"
            rows[split].append((decode_image(read(name), name), ferplus_majority_label(raw), emotion_votes))
    splits = _stack(rows)
    return FaceDataset("ferplus", FERPLUS_CLASSES, splits, fingerprint(splits))
