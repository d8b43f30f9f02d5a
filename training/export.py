"""`python -m training.export --onnx CHECKPOINT [--out FILE.onnx]`: a checkpoint's network as ONNX, its metadata inside."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import onnx

from emoji_mirror.checkpoint import CheckpointError, LoadedModel, load_model
from emoji_mirror.labels import emoji_for
from emoji_mirror.onnx_backend import onnx_bytes
from emoji_mirror.paths import resolve_checkpoint
from training.report import write_atomic


def onnx_metadata(loaded: LoadedModel, checkpoint_sha256: str) -> dict[str, str]:
    """What inference needs beside the network (ONNX metadata_props, each value a JSON string)."""
    values = {
        "arch": loaded.arch,
        "classes": list(loaded.classes),
        "emojis": [emoji_for(c) for c in loaded.classes],
        "preprocessing": loaded.preprocessing.to_dict(),
        "checkpoint_sha256": checkpoint_sha256,
    }
    return {key: json.dumps(value, ensure_ascii=False) for key, value in values.items()}


def export_onnx(checkpoint: Path, out: Path) -> dict[str, str]:
    """Write the checkpoint's network to `out` as ONNX (dynamic batch axis) with onnx_metadata(); return that metadata.
    Raises CheckpointError for a checkpoint that does not load."""
    loaded = load_model(checkpoint)
    with checkpoint.open("rb") as f:
        metadata = onnx_metadata(loaded, hashlib.file_digest(f, "sha256").hexdigest())
    model = onnx.load_from_string(onnx_bytes(loaded.model, loaded.preprocessing.input_size))
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, model.SerializeToString())  # an interrupted export leaves no half-written file
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    parser.add_argument("--onnx", required=True, metavar="CHECKPOINT", help="checkpoint name or path to export to ONNX")
    parser.add_argument("--out", type=Path, help="ONNX file to write (default: the checkpoint's path with .onnx)")
    args = parser.parse_args(argv)
    try:
        checkpoint = resolve_checkpoint(args.onnx)
        out = args.out or checkpoint.with_suffix(".onnx")
        metadata = export_onnx(checkpoint, out)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} from {checkpoint}; metadata: {', '.join(f'{key}={value}' for key, value in metadata.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
