"""Ship a checkpoint: as ONNX with its metadata inside (`python -m training.export --onnx CHECKPOINT [--out FILE.onnx]`),
stored compactly, int8 or fp16, and scored again (`python -m training.export --int8 CHECKPOINT --out OUT.pt [--data PATH
[--calibrate N]]`; --calibrate also makes ONNX Runtime run it int8),
or several trained checkpoints packed into one ensemble checkpoint (`python -m training.export --ensemble A,B,C --out OUT.pt
[--data PATH]`): one file the app, the ONNX backend and training.evaluate load like any other."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from emoji_mirror.checkpoint import (CheckpointError, LoadedModel, atomic_torch_save, checkpoint_payload, float_state_dict, half_state_dict,
                                     load_model, model_from_payload, quantize_int8, read_checkpoint)
from emoji_mirror.fileio import atomic_write
from emoji_mirror.labels import emoji_for
from emoji_mirror.models import count_params, create_model
from emoji_mirror.onnx_backend import INPUT_NAME, onnx_bytes, served_graph
from emoji_mirror.onnx_int8 import calibrate, faces_note
from emoji_mirror.paths import resolve_checkpoint
from emoji_mirror.preprocessing import normalize

from .data import DataError, FaceDataset, load_dataset
from .distill import state_sha256
from .evaluate.entries import entry_name
from .evaluate.model_card import render_card
from .evaluate.scoring import as_served, score, split_probabilities
from .runtime import git_commit


def onnx_metadata(loaded: LoadedModel, checkpoint_sha256: str, activations: str) -> dict[str, str]:
    """What inference needs beside the network (ONNX metadata_props, each value a JSON string)."""
    values = {
        "arch": loaded.arch,
        "classes": list(loaded.classes),
        "emojis": [emoji_for(c) for c in loaded.classes],
        "preprocessing": loaded.preprocessing.to_dict(),
        "activations": activations,
        "checkpoint_sha256": checkpoint_sha256,
    }
    return {key: json.dumps(value, ensure_ascii=False) for key, value in values.items()}


def export_onnx(checkpoint: Path, out: Path, as_float: bool = False) -> dict[str, str]:
    """Write the checkpoint's network to `out` as ONNX (dynamic batch axis) with onnx_metadata(), as served (served_graph);
    return that metadata. Raises CheckpointError for a checkpoint that does not load."""
    loaded = load_model(checkpoint)
    graph, int8 = served_graph(loaded, as_float)
    with checkpoint.open("rb") as f:
        metadata = onnx_metadata(loaded, hashlib.file_digest(f, "sha256").hexdigest(), "int8" if int8 else "float")
    model = onnx.load_from_string(graph)
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, model.SerializeToString())  # an interrupted export leaves no half-written file
    return metadata


def compact(src: Path, out: Path, precision: str, dataset: FaceDataset | None = None, calibrate_faces: int = 0) -> dict:
    """Write src with fp16 or int8 weights to out (atomically), and its card beside it; the metadata records the storage.
    With the dataset, every split the checkpoint has scores for is scored again on the compact weights (no TTA), so the
    card and meta describe the file as it ships; returns {split: (before, after)} accuracies. `calibrate_faces` > 0 (int8,
    with the dataset): also measure the activation ranges on that many training faces, so ONNX Runtime runs the network
    int8 (and the scores are measured that way)."""
    payload = read_checkpoint(src)
    if precision == "int8":
        payload = quantize_int8(payload)
    else:
        payload["state_dict"] = half_state_dict(payload["state_dict"])
    payload["meta"] = {**payload.get("meta", {}), "storage": precision}
    payload["meta"].pop("onnx_int8", None)  # a calibration holds for the weights it was measured with
    if dataset is not None and payload["meta"].get("data_fingerprint") not in (None, dataset.fingerprint):
        raise DataError(f"{src} was trained on other data than {dataset.name} (fingerprint {dataset.fingerprint[:12]})")
    atomic_torch_save(payload, out)
    compacted = load_model(out)  # refuse to leave a file that does not load
    changes = {}
    if dataset is not None:
        if calibrate_faces:
            payload["meta"]["onnx_int8"] = activation_calibration(compacted, dataset, calibrate_faces)
            compacted = replace(compacted, meta=payload["meta"])
        metrics = payload["meta"].setdefault("metrics", {})
        changes = rescore(compacted, dataset, metrics, list(metrics))
        atomic_torch_save(payload, out)
    atomic_write(out.with_suffix(".md"), render_card(out))
    return changes


def activation_calibration(loaded: LoadedModel, dataset: FaceDataset, count: int, seed: int = 0) -> dict:
    """meta["onnx_int8"]: the network's activation ranges on `count` random training faces (never a split that is scored)."""
    train = dataset.splits["train"].labelled()
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), min(count, len(train)), replace=False))
    faces = normalize(torch.from_numpy(train.images[chosen])[:, None], loaded.preprocessing).numpy()
    calibration = calibrate(onnx_bytes(loaded.model, loaded.preprocessing.input_size), faces, INPUT_NAME)
    return {**calibration, "faces": faces_note(f"{dataset.name}/train", len(chosen), seed)}


def rescore(loaded: LoadedModel, dataset: FaceDataset, metrics: dict, keys: list[str]) -> dict:
    """{split key: (recorded accuracy or None, accuracy now)}, with `metrics` updated: each dataset/split key scored (no TTA)
    as the app runs the checkpoint (int8 on ONNX Runtime when it carries an activation calibration)."""
    loaded = as_served(loaded)
    changes = {}
    for key in keys:
        split = dataset.splits.get(key.split("/", 1)[1]) if key.startswith(f"{dataset.name}/") else None
        if split is not None and len(split.labelled()):
            faces = split.labelled()
            before = metrics.get(key, {}).get("accuracy")
            metrics[key] = score(split_probabilities(loaded.model, faces.images, loaded.preprocessing), faces.labels)
            changes[key] = (before, metrics[key]["accuracy"])
    return changes


def member_record(path: Path, payload: dict, loaded: LoadedModel) -> dict:
    """What an ensemble checkpoint keeps of one member: its name, weight hash, architecture, scores and training settings."""
    meta = loaded.meta
    return {"name": entry_name(path), "weights_sha256": state_sha256(payload["state_dict"]), "arch": loaded.arch, "selection_split": meta.get("selection_split"),
            "metrics": meta.get("metrics", {}), "epoch": meta.get("epoch"), "config": meta.get("config", {}), "commit": meta.get("commit")}


def pack_ensemble(paths: list[Path], out: Path, dataset: FaceDataset | None = None) -> dict:
    """Write the members' weights as one `ensemble` checkpoint to `out` (atomically, fp32) with its card; refuse members of other
    classes, data, selection split or preprocessing (photometry aside: each member keeps its own). With the dataset, score the
    ensemble on its labelled test splits; returns {split: (None, accuracy)}."""
    if len(paths) < 2:
        raise CheckpointError("--ensemble needs at least two checkpoints")
    payloads = [read_checkpoint(path) for path in paths]  # each file read once
    members = [model_from_payload(payload, path) for payload, path in zip(payloads, paths)]
    first = members[0]
    for path, member in zip(paths[1:], members[1:]):
        for what, mine, theirs in (("classes", member.classes, first.classes),
                                   ("data fingerprint", member.meta.get("data_fingerprint"), first.meta.get("data_fingerprint")),
                                   ("selection split", member.meta.get("selection_split"), first.meta.get("selection_split")),
                                   ("preprocessing", replace(member.preprocessing, photometry="none"), replace(first.preprocessing, photometry="none"))):
            if mine != theirs:
                raise CheckpointError(f"{path} cannot join {paths[0]} in an ensemble: its {what} ({mine}) is not the other's ({theirs})")
    if dataset is not None and first.meta.get("data_fingerprint") not in (None, dataset.fingerprint):
        raise DataError(f"the members were trained on other data than {dataset.name} (fingerprint {dataset.fingerprint[:12]})")
    preprocessing = replace(first.preprocessing, photometry="none")  # each member standardizes its own input when it was trained so
    arch_kwargs = {"members": [{"arch": p["arch"], "arch_kwargs": p.get("arch_kwargs", {}), "photometry": m.preprocessing.photometry}
                               for p, m in zip(payloads, members)],
                   "mean": preprocessing.mean, "std": preprocessing.std}
    try:
        model = create_model("ensemble", num_classes=len(first.classes), **arch_kwargs)
    except ValueError as exc:  # the constructor's own refusals (a member that is itself an ensemble)
        raise CheckpointError(f"cannot pack {', '.join(map(str, paths))}: {exc}") from None
    model.load_state_dict({f"members.{i}.{name}": value for i, p in enumerate(payloads) for name, value in float_state_dict(p).items()})
    meta = {"dataset": first.meta.get("dataset"), "data_fingerprint": first.meta.get("data_fingerprint"),
            "selection_split": first.meta.get("selection_split"), "params": count_params(model), "commit": git_commit(),
            "members": [member_record(path, payload, member) for path, payload, member in zip(paths, payloads, members)], "metrics": {}}
    payload = checkpoint_payload(model, "ensemble", arch_kwargs, first.classes, preprocessing, meta)
    atomic_torch_save(payload, out)
    packed = load_model(out)  # refuse to leave a file that does not load
    changes = {}
    if dataset is not None:
        changes = rescore(packed, dataset, meta["metrics"], [f"{dataset.name}/{s}" for s in dataset.splits if s != "train"])
        atomic_torch_save(payload, out)
    atomic_write(out.with_suffix(".md"), render_card(out))
    return changes


def out_problem(checkpoint: Path, out: Path) -> str | None:
    """Why `out` cannot be written from `checkpoint` (it is the checkpoint itself, or a folder); None when it can."""
    if out.resolve() == checkpoint.resolve():
        return f"--out {out} is the checkpoint being read: choose another file, it would be overwritten"
    if out.is_dir():
        return f"--out {out} is a folder: name the file to write"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    form = parser.add_mutually_exclusive_group(required=True)
    form.add_argument("--onnx", metavar="CHECKPOINT", help="checkpoint name or path to export to ONNX, as the app serves it (int8 when "
                                                           "the checkpoint carries an activation calibration)")
    form.add_argument("--int8", metavar="CHECKPOINT", help="store this checkpoint's weights int8 (per-channel scales)")
    form.add_argument("--fp16", metavar="CHECKPOINT", help="store this checkpoint's weights fp16")
    form.add_argument("--ensemble", metavar="A,B,...", help="pack these checkpoints (names or paths) into one ensemble checkpoint")
    parser.add_argument("--out", type=Path, help="file to write (default for --onnx: the checkpoint's path with .onnx; required otherwise)")
    parser.add_argument("--data", help="--int8/--fp16: score the compact file again on the splits its metadata has scores for; "
                                       "--ensemble: score the ensemble on every labelled test split")
    parser.add_argument("--calibrate", type=int, default=0, metavar="N",
                        help="--int8 with --data: also measure activation ranges on N random training faces, so ONNX Runtime runs "
                             "the network int8 (about 1.8x faster per face; scores measured that way)")
    parser.add_argument("--float", action="store_true", help="--onnx: export the float graph even for a checkpoint calibrated for int8")
    parser.add_argument("--cache-dir", help="decoded-data cache (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    args = parser.parse_args(argv)
    if not args.onnx and not args.out:
        parser.error("--int8, --fp16 and --ensemble need --out")
    if args.calibrate and not (args.int8 and args.data):
        parser.error("--calibrate needs --int8 and --data (the training faces it measures on)")
    if args.float and not args.onnx:
        parser.error("--float goes with --onnx")
    if args.calibrate < 0:
        parser.error("--calibrate takes a positive number of faces")
    try:
        if args.ensemble:
            return pack_main([resolve_checkpoint(spec) for spec in args.ensemble.split(",") if spec], args)
        checkpoint = resolve_checkpoint(args.onnx or args.int8 or args.fp16)
        problem = out_problem(checkpoint, args.out or checkpoint.with_suffix(".onnx"))
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        if args.onnx:
            out = args.out or checkpoint.with_suffix(".onnx")
            metadata = export_onnx(checkpoint, out, args.float)
            print(f"wrote {out} from {checkpoint}; metadata: {', '.join(f'{key}={value}' for key, value in metadata.items())}")
            return 0
        precision = "int8" if args.int8 else "fp16"
        dataset = load_dataset(args.data, args.cache_dir) if args.data else None
        changes = compact(checkpoint, args.out, precision, dataset, args.calibrate)
    except (OSError, CheckpointError, DataError) as exc:  # OSError: not found, or an --out that cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    activations = "; activations int8 on ONNX Runtime" if args.calibrate else ""
    print(f"wrote {args.out}: {precision}{activations}, {args.out.stat().st_size / 2**20:.1f} MiB (was {checkpoint.stat().st_size / 2**20:.1f} MiB)")
    for split, (before, after) in changes.items():
        print(f"{split}: {before:.2f}% -> {after:.2f}% (no TTA; scores in the compact file and its card)")
    return 0


def pack_main(paths: list[Path], args: argparse.Namespace) -> int:
    """--ensemble: pack, then print the file and its scores."""
    problems = [problem for problem in (out_problem(path, args.out) for path in paths) if problem]
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    dataset = load_dataset(args.data, args.cache_dir) if args.data else None
    changes = pack_ensemble(paths, args.out, dataset)
    print(f"wrote {args.out}: ensemble of {', '.join(map(entry_name, paths))}, {args.out.stat().st_size / 2**20:.1f} MiB")
    for split, (_, after) in changes.items():
        print(f"{split}: {after:.2f}% (no TTA; scores in the file and its card)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
