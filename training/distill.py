"""Distillation's teacher: soft labels for the training faces, computed once: `python -m training.distill --ensemble A,B,C --data PATH --out FILE.npz`.

The file holds the mean of the members' class probabilities (with a TTA mode) for every labelled training face, in
the order training.data gives them (fp16, `probs`), optionally the same for other splits (`split_<name>`), plus the
data fingerprint, the classes and each member's sha256, so `training.train --teacher FILE` can refuse a file made
for other data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from emoji_mirror.checkpoint import CheckpointError, load_model, read_checkpoint
from emoji_mirror.paths import resolve_checkpoint
from emoji_mirror.preprocessing import TTA_MODES

from emoji_mirror.fileio import atomic_open

from .data import DataError, FaceDataset, load_dataset
from .evaluate.scoring import Probabilities


def ensemble_probabilities(members: list[str], dataset: FaceDataset, tta: str, device: str = "cpu", bf16: bool = False) -> np.ndarray:
    """(N, C) mean class probabilities of the members on the labelled training faces (bf16: under bfloat16 autocast)."""
    loaded = [load_model(resolve_checkpoint(spec), device) for spec in members]
    for spec, model in zip(members, loaded):
        if tuple(model.classes) != tuple(dataset.classes):
            raise CheckpointError(f"teacher {spec} has classes {list(model.classes)}, the data has {list(dataset.classes)}")
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        return Probabilities(device).mean(loaded, dataset.splits["train"].labelled().images, tta)


def weights_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint's weights (names, dtypes, shapes, bytes): what a soft-label file records of each member; it
    survives metadata edits (scores added at import, a rewritten card), unlike the file's own hash."""
    return state_sha256(read_checkpoint(path)["state_dict"])


def state_sha256(state_dict: dict) -> str:
    """weights_sha256 of a state dict already read."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_soft_targets(path: Path, probs: np.ndarray, dataset: FaceDataset, members: list[str], tta: str,
                      member_sha256: list[str] | None = None, other_splits: dict[str, np.ndarray] | None = None) -> None:
    """Write the soft labels (fp16) with what they belong to (atomically: a temporary file, then a rename)."""
    info = {"dataset": dataset.name, "fingerprint": dataset.fingerprint, "classes": list(dataset.classes), "members": members,
            "member_sha256": member_sha256 or [], "tta": tta, "splits": ["train", *(other_splits or {})]}
    arrays = {"probs": probs.astype(np.float16), **{f"split_{name}": p.astype(np.float16) for name, p in (other_splits or {}).items()}}
    with atomic_open(path) as f:
        np.savez_compressed(f, info=np.array(json.dumps(info)), **arrays)


def soft_targets_info(path: str | Path) -> dict:
    """What a soft-label file says it belongs to (dataset, fingerprint, classes, members and their sha256, TTA, splits)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(str(archive["info"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a soft-label file from `python -m training.distill` ({exc})") from None


def load_soft_targets(path: str | Path, dataset: FaceDataset, flag: str = "--teacher") -> np.ndarray:
    """(N, C) soft labels for the dataset's labelled training faces; DataError when the file is for other data."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            probs, info = archive["probs"].astype(np.float32), json.loads(str(archive["info"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{flag} {path}: not a soft-label file from `python -m training.distill` ({exc})") from None
    expected = (len(dataset.splits["train"].labelled()), len(dataset.classes))
    if info.get("fingerprint") != dataset.fingerprint or probs.shape != expected:
        raise DataError(f"{flag} {path} was made for other data ({info.get('dataset')}, fingerprint {str(info.get('fingerprint'))[:12]}, "
                        f"shape {probs.shape}); this run's is {dataset.name} {dataset.fingerprint[:12]} {expected}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or not np.allclose(probs.sum(1), 1, atol=1e-2):
        raise DataError(f"{flag} {path}: rows are not probability distributions")
    return probs / probs.sum(1, keepdims=True)  # fp16 storage: rows sum to 1 within 1e-3; training wants them exact


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ensemble", required=True, help="comma-separated checkpoints (names or paths) whose mean is the teacher")
    p.add_argument("--data", help="the training data (default: $EMOJI_MIRROR_DATA)")
    p.add_argument("--cache-dir", help="decoded-data cache (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    p.add_argument("--tta", choices=TTA_MODES, default="flip", help="test-time augmentation of the teacher")
    p.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="run the teacher under bfloat16 autocast (2-3x faster on a CPU with bf16; soft labels need no more)")
    args = p.parse_args(argv)
    members = [m.strip() for m in args.ensemble.split(",") if m.strip()]
    try:
        dataset = load_dataset(args.data, args.cache_dir)
        probs = ensemble_probabilities(members, dataset, args.tta, args.device, args.bf16)
    except (DataError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_soft_targets(args.out, probs, dataset, members, args.tta, [weights_sha256(resolve_checkpoint(m)) for m in members])
    agree = float((probs.argmax(1) == dataset.splits["train"].labelled().labels).mean() * 100)
    print(f"wrote {args.out}: {probs.shape[0]} soft labels from {', '.join(members)} (TTA {args.tta}); they agree with the labels on {agree:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
