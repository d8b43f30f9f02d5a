"""FER2013 and FER+ in every form users have, decoded once into a compact uint8 cache."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from emoji_mirror.labels import FER2013_CLASSES, FERPLUS_CLASSES, canonical

DATA_ENV = "EMOJI_MIRROR_DATA"
CACHE_ENV = "EMOJI_MIRROR_CACHE"
SPLITS = ("train", "public_test", "private_test")
IMAGE_SIZE = 48
KAGGLE_DATASET = "msambare/fer2013"

# FER2013 file-name prefixes and CSV `Usage` values -> our split names.
_FER_SPLIT = {"training": "train", "publictest": "public_test", "privatetest": "private_test"}
# FER+ folders -> split; the vote columns of label.csv / fer2013new.csv, in file order.
_FERPLUS_SPLIT = {"FER2013Train": "train", "FER2013Valid": "public_test", "FER2013Test": "private_test"}
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


class DataError(ValueError):
    """The data path is missing or holds something we cannot read."""


@dataclass
class FaceSplit:
    """One split as arrays: faces (N, 48, 48) uint8, labels (N,) int64 (-1 = no label), optional votes (N, C)."""

    images: np.ndarray
    labels: np.ndarray
    votes: np.ndarray | None = None

    def labelled(self) -> "FaceSplit":
        """Only the rows with a label (FER+ majority protocol drops the rest)."""
        keep = self.labels >= 0
        votes = None if self.votes is None else self.votes[keep]
        return FaceSplit(self.images[keep], self.labels[keep], votes)

    def subset(self, index: np.ndarray) -> "FaceSplit":
        votes = None if self.votes is None else self.votes[index]
        return FaceSplit(self.images[index], self.labels[index], votes)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FaceDataset:
    """A dataset: its name, class names, splits, and a fingerprint of the decoded content."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, FaceSplit]
    fingerprint: str

    def class_counts(self, split: str) -> dict[str, int]:
        labels = self.splits[split].labels
        return {c: int((labels == i).sum()) for i, c in enumerate(self.classes)}


# ---------------------------------------------------------------- locating and caching


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """The data path given, or $EMOJI_MIRROR_DATA; a clear error when neither exists."""
    raw = path if path else os.environ.get(DATA_ENV)
    if not raw:
        raise DataError(f"no data path given: pass --data PATH or set {DATA_ENV} (see README, 'Data')")
    resolved = Path(raw).expanduser().resolve()
    if not resolved.exists():
        raise DataError(f"data path {resolved} does not exist")
    return resolved


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "emoji_mirror")).expanduser()


def _source_key(path: Path) -> str:
    """Cheap identity of a data source (path, sizes, mtimes) used to name its cache file."""
    h = hashlib.sha256(str(path).encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_dataset(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> FaceDataset:
    """Load FER2013 or FER+ from any supported form, decoding once and caching as uint8 arrays."""
    source = resolve_data_path(path)
    cache_file = Path(cache_dir or default_cache_dir()) / f"{source.name}-{_source_key(source)}.npz"
    if use_cache and cache_file.exists():
        try:
            return _read_cache(cache_file)
        except Exception:  # a damaged cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)
    dataset = _decode(source)
    if use_cache:
        _write_cache(dataset, cache_file)
    return dataset


def _write_cache(dataset: FaceDataset, cache_file: Path) -> None:
    arrays = {"name": np.array(dataset.name), "classes": np.array(dataset.classes), "fingerprint": np.array(dataset.fingerprint)}
    for split, data in dataset.splits.items():
        arrays[f"{split}/images"] = data.images
        arrays[f"{split}/labels"] = data.labels
        if data.votes is not None:
            arrays[f"{split}/votes"] = data.votes
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache_file)


def _read_cache(cache_file: Path) -> FaceDataset:
    with np.load(cache_file, allow_pickle=False) as z:
        splits = {}
        for split in SPLITS:
            if f"{split}/images" in z:
                votes = z[f"{split}/votes"] if f"{split}/votes" in z else None
                splits[split] = FaceSplit(z[f"{split}/images"], z[f"{split}/labels"], votes)
        return FaceDataset(str(z["name"]), tuple(str(c) for c in z["classes"]), splits, str(z["fingerprint"]))


def _fingerprint(splits: dict[str, FaceSplit]) -> str:
    """sha256 of the decoded content, the same whichever form the data came in."""
    h = hashlib.sha256()
    for split in SPLITS:
        if split in splits:
            h.update(split.encode())
            h.update(np.ascontiguousarray(splits[split].images).tobytes())
            h.update(splits[split].labels.astype(np.int64).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- decoding each form


def _decode(source: Path) -> FaceDataset:
    if source.name.endswith(".sprintpack"):  # training/sprint_pack.py: the splits a GPU sprint needs, packed to travel
        from .sprint_pack import read_pack

        return read_pack(source)
    if source.is_dir():
        files = {str(p.relative_to(source)).replace(os.sep, "/"): p for p in source.rglob("*") if p.is_file()}
        return _decode_members(source, list(files), lambda name: files[name].read_bytes())
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            return _decode_members(source, names, zf.read)
    if source.suffix.lower() == ".csv":
        return _decode_fer_csv(source.read_text(encoding="utf-8", errors="replace").splitlines())
    raise DataError(f"{source} is not a FER2013/FER+ zip, folder or fer2013.csv")


def _decode_members(source: Path, names: list[str], read) -> FaceDataset:
    """Dispatch on what a folder or zip holds: FER+ label files, the Kaggle image tree, or fer2013.csv."""
    ferplus_labels = [n for n in names if n.endswith("label.csv") and Path(n).parent.name in _FERPLUS_SPLIT]
    if ferplus_labels:
        return _decode_ferplus(ferplus_labels, read)
    images = [n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png")) and _kaggle_split(n)]
    if images:
        return _decode_kaggle_tree(images, read)
    csvs = [n for n in names if Path(n).name.lower() == "fer2013.csv"]
    if csvs:
        return _decode_fer_csv(read(csvs[0]).decode("utf-8", errors="replace").splitlines())
    nested = [n for n in names if n.lower().endswith(".zip")]
    if len(nested) == 1 and source.is_dir():
        return _decode(source / nested[0])
    raise DataError(
        f"{source} holds neither the Kaggle layout (train/<class>/*.jpg, test/<class>/*.jpg), "
        "FER+ (FER2013Train/label.csv ...), nor fer2013.csv"
    )


def _kaggle_split(name: str) -> str | None:
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


def _decode_image(data: bytes, name: str) -> np.ndarray:
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
        split = _kaggle_split(name)
        label = FER2013_CLASSES.index(canonical(name.split("/")[-2]))
        rows[split].append((_decode_image(read(name), name), label, None))
    splits = _stack(rows)
    return FaceDataset("fer2013", FER2013_CLASSES, splits, _fingerprint(splits))


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
    return FaceDataset("fer2013", FER2013_CLASSES, splits, _fingerprint(splits))


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
            rows[split].append((_decode_image(read(name), name), ferplus_majority_label(raw), emotion_votes))
    splits = _stack(rows)
    return FaceDataset("ferplus", FERPLUS_CLASSES, splits, _fingerprint(splits))


# ---------------------------------------------------------------- splits


def holdout_split(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic, stratified, seeded (train, holdout) indices of a training split (the seed's 'validation split')."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train_idx, hold_idx = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(train_idx), np.sort(hold_idx)


# ---------------------------------------------------------------- command line


def kaggle_download(dest: Path) -> Path:
    """Download the Kaggle FER2013 zip with the kaggle CLI (needs network and ~/.kaggle/kaggle.json)."""
    if shutil.which("kaggle") is None:
        raise DataError("the kaggle CLI is not installed: pip install kaggle, and put your API token in ~/.kaggle/kaggle.json")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["kaggle", "datasets", "download", "-d", KAGGLE_DATASET, "-p", str(dest)], check=True)
    return dest / "fer2013.zip"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help=f"download {KAGGLE_DATASET} from Kaggle")
    dl.add_argument("--dest", type=Path, default=Path("data"))
    info = sub.add_parser("info", help="decode (and cache) a dataset, print its splits and class counts")
    info.add_argument("--data", help=f"zip, folder or fer2013.csv (default: ${DATA_ENV})")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"saved {kaggle_download(args.dest)}")
            return 0
        dataset = load_dataset(args.data)
    except (DataError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{dataset.name}: fingerprint {dataset.fingerprint[:16]}")
    for split, data in dataset.splits.items():
        print(f"  {split:13s} {len(data):6d} images, {int((data.labels >= 0).sum()):6d} labelled  {dataset.class_counts(split)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
