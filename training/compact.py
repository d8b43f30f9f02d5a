"""Store a checkpoint compactly: `python -m training.compact IN.pt --int8 --out OUT.pt [--data PATH]` (or --fp16), scored again with --data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoji_mirror.checkpoint import CheckpointError, atomic_torch_save, half_state_dict, load_model, quantize_int8, read_checkpoint

from .data import DataError, FaceDataset, load_dataset
from .model_card import render_card
from .scoring import score, split_probabilities


def compact(src: Path, out: Path, precision: str, dataset: FaceDataset | None = None) -> dict:
    """Write src with fp16 or int8 weights to out (atomically), and its card beside it; the metadata records the storage.
    With the dataset, every split the checkpoint has scores for is scored again on the compact weights (no TTA), so the
    card and meta describe the file as it ships; returns {split: (before, after)} accuracies."""
    payload = read_checkpoint(src)
    if precision == "int8":
        payload = quantize_int8(payload)
    else:
        payload["state_dict"] = half_state_dict(payload["state_dict"])
    payload["meta"] = {**payload.get("meta", {}), "storage": precision}
    atomic_torch_save(payload, out)
    compacted = load_model(out)  # refuse to leave a file that does not load
    changes = {}
    if dataset is not None:
        if payload["meta"].get("data_fingerprint") not in (None, dataset.fingerprint):
            raise DataError(f"{src} was trained on other data than {dataset.name} (fingerprint {dataset.fingerprint[:12]})")
        metrics = payload["meta"].setdefault("metrics", {})
        for key in list(metrics):
            split = dataset.splits.get(key.split("/", 1)[1]) if key.startswith(f"{dataset.name}/") else None
            if split is not None and len(split.labelled()):
                faces = split.labelled()
                before = metrics[key]["accuracy"]
                metrics[key] = score(split_probabilities(compacted.model, faces.images, compacted.preprocessing), faces.labels)
                changes[key] = (before, metrics[key]["accuracy"])
        atomic_torch_save(payload, out)
    out.with_suffix(".md").write_text(render_card(out))
    return changes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compact", description=__doc__)
    p.add_argument("checkpoint", type=Path, help="the checkpoint to store compactly")
    p.add_argument("--out", type=Path, required=True, help="the compact checkpoint to write")
    precision = p.add_mutually_exclusive_group(required=True)
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8", help="int8 weights, per-channel scales")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="fp16 weights")
    p.add_argument("--data", help="score the compact file again on the splits its metadata has scores for (the training data's fingerprint must match)")
    p.add_argument("--cache-dir", help="decoded-data cache (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    args = p.parse_args(argv)
    try:
        dataset = load_dataset(args.data, args.cache_dir) if args.data else None
        changes = compact(args.checkpoint, args.out, args.precision, dataset)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {args.precision}, {args.out.stat().st_size / 2**20:.1f} MiB (was {args.checkpoint.stat().st_size / 2**20:.1f} MiB)")
    for split, (before, after) in changes.items():
        print(f"{split}: {before:.2f}% -> {after:.2f}% (no TTA; scores in the compact file and its card)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
