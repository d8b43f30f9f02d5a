"""Pack the splits a GPU sprint trains and selects on (train, public_test) into one small file that travels with the repo."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import zipfile
from pathlib import Path

import numpy as np

from emoji_mirror.fileio import atomic_open

from .dataset import DataError, FaceDataset, FaceSplit
from .forms import decode_image, kaggle_split

FORMAT = "emoji-mirror-sprint-pack"
PACK_SUFFIX = ".sprintpack"
PACKED_SPLITS = ("train", "public_test")  # all that training and selection need; the test splits are scored back home
XZ = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def pixels_sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def kaggle_jpegs(source: Path, split: str) -> list[bytes] | None:
    """The split's original JPEG files in load_dataset's order, when the source is the Kaggle tree (zip or folder); else None."""
    if source.is_dir():
        files = {str(p.relative_to(source)).replace(os.sep, "/"): p for p in source.rglob("*.jpg")}
        names = sorted(n for n in files if kaggle_split(n) == split)
        return [files[n].read_bytes() for n in names] or None
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg") and kaggle_split(n) == split)
            return [zf.read(n) for n in names] or None
    return None


def pack_split(source: Path, split: str, data: FaceSplit) -> tuple[dict, dict]:
    """(arrays, meta) for one split: its original JPEGs when it has them (smaller than the pixels), else its pixels; xz either way."""
    arrays = {f"{split}/labels": data.labels.astype(np.int8)}
    if data.votes is not None:
        if not np.array_equal(data.votes, np.round(data.votes)) or data.votes.max() > 255:
            raise DataError(f"{split}: FER+ votes are not small whole counts; cannot pack them as uint8")
        arrays[f"{split}/votes"] = data.votes.astype(np.uint8)
    jpegs = kaggle_jpegs(source, split)
    if jpegs is not None and len(jpegs) == len(data):
        decoded = np.stack([decode_image(b, split) for b in jpegs])
        if not np.array_equal(decoded, data.images):
            raise DataError(f"{source} {split}: the JPEG files do not decode to the dataset's faces in order; cannot pack them")
        arrays[f"{split}/offsets"] = np.cumsum([0] + [len(b) for b in jpegs]).astype(np.int64)
        payload, codec = b"".join(jpegs), "jpeg"
    else:
        payload, codec = np.ascontiguousarray(data.images).tobytes(), "raw"
    arrays[f"{split}/data"] = np.frombuffer(lzma.compress(payload, format=lzma.FORMAT_XZ, filters=XZ), dtype=np.uint8)
    return arrays, {"codec": codec, "n": len(data), "sha256": pixels_sha256(data.images)}


def write_pack(source: Path, dataset: FaceDataset, out: str | os.PathLike) -> Path:
    """Pack the labelled train and public_test faces of `dataset` (decoded from `source`) into `out` (a *.sprintpack file)."""
    missing = [s for s in PACKED_SPLITS if s not in dataset.splits]
    if missing:
        raise DataError(f"{source} has no {', '.join(missing)} split; a sprint needs {', '.join(PACKED_SPLITS)}")
    arrays, splits = {}, {}
    for split in PACKED_SPLITS:
        labelled = dataset.splits[split].labelled()  # FER+'s majority protocol drops unlabelled faces; training does too
        split_arrays, splits[split] = pack_split(source, split, labelled)
        arrays.update(split_arrays)
    meta = {"format": FORMAT, "version": 1, "name": dataset.name, "classes": list(dataset.classes),
            "fingerprint": dataset.fingerprint, "source": source.name, "splits": splits}
    out = Path(out)
    if not out.name.endswith(PACK_SUFFIX):
        raise DataError(f"{out}: a pack's file name must end in {PACK_SUFFIX}")
    with atomic_open(out) as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return out


def read_pack(path: Path) -> FaceDataset:
    """The packed splits as a FaceDataset carrying the source's name, classes and fingerprint (pixels checked against the pack)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path} is not a readable sprint pack: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise DataError(f"{path} is not a sprint pack (made by `python -m training.sprint --pack`)")
    splits, fingerprint = {}, meta["fingerprint"]
    for split, info in meta["splits"].items():
        payload = lzma.decompress(arrays[f"{split}/data"].tobytes())
        if info["codec"] == "jpeg":
            offsets = arrays[f"{split}/offsets"]
            images = np.stack([decode_image(payload[a:b], f"{path}:{split}") for a, b in zip(offsets[:-1], offsets[1:])])
        else:
            images = np.frombuffer(payload, dtype=np.uint8).reshape(info["n"], 48, 48).copy()
        if pixels_sha256(images) != info["sha256"]:  # another JPEG decoder: train anyway, but do not claim the source's fingerprint
            print(f"warning: {path} {split}: decoded faces differ from the packed source's; fingerprint marked as the pack's", flush=True)
            fingerprint = "pack-" + hashlib.sha256((fingerprint + split).encode()).hexdigest()[:40]
        votes = arrays[f"{split}/votes"].astype(np.float32) if f"{split}/votes" in arrays else None
        splits[split] = FaceSplit(images, arrays[f"{split}/labels"].astype(np.int64), votes)
    return FaceDataset(meta["name"], tuple(meta["classes"]), splits, fingerprint)


def describe(path: Path) -> str:
    """One line: the pack's file, size and contents."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    parts = ", ".join(f"{s} {i['n']} ({i['codec']})" for s, i in meta["splits"].items())
    return f"{path}: {path.stat().st_size / 2**20:.1f} MiB, {meta['name']} {parts}"
