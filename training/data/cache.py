"""Find the data (a path or $EMOJI_MIRROR_DATA) and decode it once into a compact uint8 cache."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from emoji_mirror.fileio import atomic_open

from .dataset import SPLITS, DataError, FaceDataset, FaceSplit
from .forms import decode
from .pack import PACK_SUFFIX, read_pack

DATA_ENV = "EMOJI_MIRROR_DATA"
CACHE_ENV = "EMOJI_MIRROR_CACHE"


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
            try:
                cache_file.unlink(missing_ok=True)
            except OSError:
                pass
    dataset = read_pack(source) if source.name.endswith(PACK_SUFFIX) else decode(source)
    if use_cache:
        try:
            _write_cache(dataset, cache_file)
        except OSError as exc:  # an unwritable or full cache folder costs a decode next time, nothing more
            print(f"warning: decoded data not cached ({cache_file.parent}: {exc.strerror or exc}); set ${CACHE_ENV} or --cache-dir "
                  "to a writable folder to skip decoding next time", file=sys.stderr)
    return dataset


def _write_cache(dataset: FaceDataset, cache_file: Path) -> None:
    arrays = {"name": np.array(dataset.name), "classes": np.array(dataset.classes), "fingerprint": np.array(dataset.fingerprint)}
    for split, data in dataset.splits.items():
        arrays[f"{split}/images"] = data.images
        arrays[f"{split}/labels"] = data.labels
        if data.votes is not None:
            arrays[f"{split}/votes"] = data.votes
    with atomic_open(cache_file) as f:
        np.savez(f, **arrays)


def _read_cache(cache_file: Path) -> FaceDataset:
    with np.load(cache_file, allow_pickle=False) as z:
        splits = {}
        for split in SPLITS:
            if f"{split}/images" in z:
                votes = z[f"{split}/votes"] if f"{split}/votes" in z else None
                splits[split] = FaceSplit(z[f"{split}/images"], z[f"{split}/labels"], votes)
        return FaceDataset(str(z["name"]), tuple(str(c) for c in z["classes"]), splits, str(z["fingerprint"]))
