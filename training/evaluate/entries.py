"""What one summary entry is made of: the checkpoints named (files, names, folders), the data each is scored on, and the
entry itself: scores on every labelled test split, per-class CSV, confusion matrix and attention figures."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emoji_mirror.checkpoint import CheckpointError, LoadedModel, load_model
from emoji_mirror.fileio import atomic_write
from emoji_mirror.labels import FERPLUS_CLASSES
from emoji_mirror.models import count_params
from emoji_mirror.paths import REPO_ROOT, resolve_checkpoint
from emoji_mirror.preprocessing import normalize

from ..data import DataError, FaceDataset, load_dataset
from . import report
from .scoring import Probabilities, latency_ms_per_face, onnxruntime_ms_per_face, score_splits


# ---------------------------------------------------------------- finding checkpoints and data


def find_checkpoints(specs: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(given spec, file) for every checkpoint named, plus error lines; a folder means its *.pt and its run folders' best.pt."""
    found, errors = [], []
    for spec in specs:
        folder = Path(spec).expanduser()
        if folder.is_dir():
            files = sorted(folder.glob("*.pt")) + sorted(folder.glob("*/best.pt"))
            if not files:
                errors.append(f"{spec}: folder holds no *.pt checkpoints (nor run folders with best.pt)")
            found += [(str(f), f.resolve()) for f in files]
            continue
        try:
            found.append((spec, resolve_checkpoint(spec)))
        except FileNotFoundError as exc:
            errors.append(str(exc))
    unique, owners = [], {}  # a file named twice is evaluated once; two files may not share a summary name
    for given, path in found:
        name = entry_name(path)
        if name not in owners:
            owners[name] = path
            unique.append((given, path))
        elif owners[name] != path:
            errors.append(f"{given}: its summary name {name!r} is already taken by {owners[name]}; rename one of them")
    return unique, errors


def entry_name(path: Path) -> str:
    """Summary entry name: the file stem, or the run folder's name for a run's best.pt / last.pt."""
    if path.stem == "best":
        return path.parent.name
    if path.stem == "last":
        return f"{path.parent.name}-last"
    return path.stem


def display_path(given: str, path: Path) -> str:
    """The checkpoint path as given, or relative to the repository when the file is inside it."""
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else given


def checkpoint_dataset(loaded: LoadedModel) -> str:
    """Name of the dataset a checkpoint was trained on: its metadata, else guessed from its classes."""
    return loaded.meta.get("dataset") or ("ferplus" if loaded.classes == FERPLUS_CLASSES else "fer2013")


class Datasets:
    """Loads each dataset once, on first use: fer2013 from --data, ferplus from --ferplus."""

    def __init__(self, fer2013: str | None, ferplus: str | None, cache_dir: str | None):
        self.sources = {"fer2013": fer2013, "ferplus": ferplus}
        self.cache_dir = cache_dir
        self.loaded: dict[str, FaceDataset | DataError] = {}

    def get(self, name: str) -> FaceDataset:
        if name not in self.loaded:
            self.loaded[name] = self._load(name)
        if isinstance(self.loaded[name], DataError):
            raise self.loaded[name]
        return self.loaded[name]

    def _load(self, name: str) -> FaceDataset | DataError:
        if name not in self.sources:
            return DataError(f"no loader for dataset {name!r} (known: {', '.join(self.sources)})")
        if name == "ferplus" and not self.sources[name]:
            return DataError("FER+ checkpoints need the FER+ data: pass --ferplus PATH")
        try:
            dataset = load_dataset(self.sources[name], self.cache_dir)
        except DataError as exc:
            return exc
        if dataset.name != name:
            flag = "--ferplus" if name == "ferplus" else "--data"
            return DataError(f"{flag} {self.sources[name]} holds {dataset.name}, not {name}")
        return dataset


# ---------------------------------------------------------------- scoring one checkpoint


def train_info(meta: dict, history_file: Path) -> dict:
    """Training facts: from the run's metrics.jsonl beside the checkpoint, else from the history in its metadata."""
    if history_file.is_file():
        history = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
    else:  # an exported checkpoint carries its run's history in its metadata
        history = meta.get("history", [])
    config = meta.get("config", {})
    return {
        "epochs": len(history) or None,
        "best_epoch": meta.get("epoch"),
        "device": config.get("device"),
        "seconds": round(sum(r.get("seconds", 0.0) for r in history), 1) if history else None,
        "config": config,
    }


def per_class_csv(per_class: dict[str, dict]) -> bytes:
    """per_class_<name>.csv: one row per dataset/split and class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "class", "precision", "recall", "f1", "support"])
    for split, rows in per_class.items():
        for name, row in rows.items():
            writer.writerow([split, name, row["precision"], row["recall"], row["f1"], row["support"]])
    return buffer.getvalue().encode()


def write_attention(loaded: LoadedModel, dataset: FaceDataset, scored: dict, device: torch.device, name: str, path: Path) -> None:
    """Attention maps on the fixed faces: the first faces of each class in private_test (else the first scored split)."""
    split = f"{dataset.name}/private_test" if f"{dataset.name}/private_test" in scored else next(iter(scored))
    images, labels = scored[split]
    chosen = report.attention_faces(labels, len(loaded.classes))
    x = normalize(torch.from_numpy(images[chosen]).to(device), loaded.preprocessing)
    maps, predicted, method = report.saliency_maps(loaded.model, x)
    title = f"{name} ({loaded.arch}) on {split}\n{method}"
    fig = report.attention_figure(images[chosen], maps.cpu().numpy(), labels[chosen], predicted.cpu().numpy(), list(loaded.classes), title)
    report.save_figure(fig, path, lossless=False)  # photo-like


def selection_key(meta_selection: str | None, dataset: FaceDataset, scored: dict) -> str:
    """The scored split a model was selected on (TTA is chosen there), else the dataset's public_test."""
    if meta_selection in scored:
        return meta_selection
    fallback = f"{dataset.name}/public_test"
    if fallback in scored:
        return fallback
    raise DataError(f"cannot choose a TTA: {dataset.name} data has neither {meta_selection} nor public_test")


def labelled_splits(dataset: FaceDataset, path: Path | str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every labelled non-train split as dataset/split -> (images, labels)."""
    labelled = {split: data.labelled() for split, data in dataset.splits.items() if split != "train"}
    scored = {f"{dataset.name}/{split}": (data.images, data.labels) for split, data in labelled.items() if len(data)}
    if not scored:
        raise DataError(f"{dataset.name} data has no labelled test splits to score {path} on")
    return scored


def member_dataset(loaded: LoadedModel, datasets: Datasets, path: Path) -> FaceDataset:
    """The dataset a checkpoint was trained on, checked against its classes (warns on another data fingerprint)."""
    dataset = datasets.get(checkpoint_dataset(loaded))
    if tuple(dataset.classes) != loaded.classes:
        raise CheckpointError(f"{path}: classes {list(loaded.classes)} do not match {dataset.name}'s {list(dataset.classes)}")
    trained_on = loaded.meta.get("data_fingerprint")
    if trained_on and trained_on != dataset.fingerprint:
        print(f"warning: {path} was trained on {dataset.name} data with fingerprint {trained_on[:12]}, "
              f"evaluating on data with fingerprint {dataset.fingerprint[:12]}", file=sys.stderr)
    return dataset


def write_confusion(name: str, arch: str, tta: str, selection, classes, metrics: dict, per_class: dict, confusion: dict, out: Path) -> dict:
    """per_class_<name>.csv and confusion_<name>.webp (lossless); returns the images entry."""
    images_written = {"confusion": f"confusion_{name}.webp"}
    atomic_write(out / f"per_class_{name}.csv", per_class_csv(per_class))
    title = f"{name} ({arch}), TTA {tta}, selected on {selection}"
    report.save_figure(report.confusion_figure(confusion, list(classes), {s: m["accuracy"] for s, m in metrics.items()}, title),
                       out / images_written["confusion"])
    return images_written


def resolve_members(specs: list[str]) -> list[tuple[str, Path]]:
    """(given spec, file) for each ensemble member named (a name in checkpoints/ or a path); FileNotFoundError names a missing one."""
    return [(spec, resolve_checkpoint(spec)) for spec in specs]


@dataclass
class Member:
    """One checkpoint of an entry: as the user named it, its file, the loaded model and the dataset it is scored on."""

    given: str
    path: Path
    loaded: LoadedModel
    dataset: FaceDataset


def load_members(named: list[tuple[str, Path]], datasets: Datasets, device: torch.device) -> list[Member]:
    """Load an entry's checkpoints; several must share classes, data and selection split (an honest ensemble)."""
    members = []
    for given, path in named:
        loaded = load_model(path, device)
        members.append(Member(given, path, loaded, member_dataset(loaded, datasets, path)))
    for member in members[1:]:
        if member.loaded.classes != members[0].loaded.classes or member.dataset is not members[0].dataset:
            raise CheckpointError(f"ensemble member {member.given} was trained on other data or classes than {members[0].given}")
    selections = {m.loaded.meta.get("selection_split") for m in members}
    if len(selections) != 1:
        raise CheckpointError(f"ensemble members were selected on different splits ({', '.join(map(str, selections))}); "
                              "an honest ensemble needs one selection split")
    return members


def evaluate_entry(named: list[tuple[str, Path]], name: str | None, datasets: Datasets, probabilities: Probabilities, out: Path,
                   tta: str = "none", latency: bool = True) -> dict:
    """Score one checkpoint, or the mean of several (an ensemble), on its dataset's labelled non-train splits; write its
    per-class CSV and figures into `out`; return its summary entry. tta "auto" chooses the mode on the selection split."""
    members = load_members(named, datasets, probabilities.device)
    first, dataset = members[0].loaded, members[0].dataset
    single = len(members) == 1
    name = name or entry_name(members[0].path)
    scored = labelled_splits(dataset, name)
    selection = first.meta.get("selection_split")

    def probs(images, mode):
        return probabilities.mean([m.loaded for m in members], images, mode)

    tta, metrics, per_class, confusion, tta_scores = score_splits(probs, scored, selection_key(selection, dataset, scored) if tta == "auto" else None, tta, first.classes)
    arch = first.arch if single else "ensemble(" + " + ".join(m.loaded.arch for m in members) + ")"
    entry = {
        "name": name,
        "arch": arch,
        "checkpoint": " + ".join(display_path(m.given, m.path) for m in members),
        **({} if single else {"members": [entry_name(m.path) for m in members]}),
        "params": sum(count_params(m.loaded.model) for m in members),
        **({"file_mb": round(members[0].path.stat().st_size / 1e6, 2)} if single else {}),
        "dataset": dataset.name,
        "classes": list(first.classes),
        "selection_split": selection,
        "tta": tta,
        **({"tta_accuracy_on_selection": tta_scores} if tta_scores else {}),
        "metrics": metrics,
        "per_class": per_class,
        "confusion_matrix": confusion,
        **({"int8_activations": first.meta["onnx_int8"].get("faces", "training faces")} if single and first.meta.get("onnx_int8") else {}),
        **({"packed": [m["name"] for m in first.meta["members"]], "storage": first.meta.get("storage", "fp32")}
           if single and first.meta.get("members") else {}),
        "latency_ms_per_face": {**summed_latency([m.loaded for m in members], tta),
                                **(onnxruntime_ms_per_face(first, tta) if single else {})} if latency else None,
        "images": write_confusion(name, arch, tta, selection, first.classes, metrics, per_class, confusion, out),
    }
    if single:
        entry.update(train=train_info(first.meta, members[0].path.parent / "metrics.jsonl"), data_fingerprint=first.meta.get("data_fingerprint"),
                     commit=first.meta.get("commit"))
        entry["images"]["attention"] = f"attention_{name}.webp"
        write_attention(first, dataset, scored, probabilities.device, name, out / entry["images"]["attention"])
    return entry


def summed_latency(models: list[LoadedModel], tta: str) -> dict[str, float]:
    """CPU ms per face of running every model (an ensemble runs each member), per batch size."""
    each = [latency_ms_per_face(m.model, m.preprocessing, tta) for m in models]
    return {key: round(sum(m[key] for m in each), 3) for key in each[0]}
