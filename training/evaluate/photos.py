"""End-to-end scores on labelled photos: the app's detect -> crop -> classify path on each photo, a photo without a face
found counted as wrong (`python -m training.evaluate --photos DIR|ZIP`)."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from tqdm import tqdm

from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.detector import FaceDetector
from emoji_mirror.images import EXTENSIONS, ImageReadError, read_image
from emoji_mirror.labels import canonical
from emoji_mirror.pipeline import MirrorPipeline, MirrorSettings

from ..data import DataError

NO_FACE = -1  # the prediction recorded for a photo in which no face was found
MAX_PHOTO_BYTES = 256 << 20  # a zip member declaring more is skipped unread (a 50-megapixel PNG fits)


@dataclass
class PhotoSet:
    """Labelled photos: (member name, class name) pairs and a reader of a member's bytes."""

    name: str
    items: list[tuple[str, str]]
    read: object  # callable: member name -> what read_image takes (a file path, or the bytes of a zip member; KeyError when absent)


@dataclass
class PhotoScores:
    """What one model did on a photo set: per photo its label and prediction (NO_FACE when no face was found)."""

    classes: tuple[str, ...]
    labels: list[int] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def report(self) -> tuple[dict, dict, list]:
        """(accuracy / mean recall / macro-F1 / n / detection rate, per-class scores, confusion counts of the photos with
        a face found) in percent; a photo without a face is wrong for its class and no other's false positive."""
        labels, preds = np.asarray(self.labels), np.asarray(self.predictions)
        index = np.arange(len(self.classes))
        present = np.unique(labels)
        precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=index, zero_division=0)
        metrics = {
            "accuracy": round(float((preds == labels).mean() * 100), 2),
            "mean_recall": round(float(recall[present].mean() * 100), 2),
            "macro_f1": round(float(f1_score(labels, preds, labels=present, average="macro", zero_division=0) * 100), 2),
            "n": int(len(labels)),
            "detection_rate": round(float((preds != NO_FACE).mean() * 100), 2),
        }
        per_class = {name: {"precision": round(float(p) * 100, 2), "recall": round(float(r) * 100, 2), "f1": round(float(f) * 100, 2), "support": int(s)}
                     for name, p, r, f, s in zip(self.classes, precision, recall, f1, support)}
        found = preds != NO_FACE
        return metrics, per_class, confusion_matrix(labels[found], preds[found], labels=index).tolist()


def open_photo_set(source: Path, name: str | None = None) -> PhotoSet:
    """A folder or zip of labelled photos: `labels.csv` (path,label; paths from the csv's folder or the top) where there is
    one, else `<class>/<file>` folders. DataError when it is neither."""
    if source.is_dir():
        members = sorted(str(p.relative_to(source)).replace("\\", "/") for p in source.rglob("*") if p.is_file())
        read = lambda member: str(source / member)  # noqa: E731  (read_image opens the file itself, within its limits)
        load = lambda member: (source / member).read_bytes()  # noqa: E731
    elif zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        members = sorted(n for n in archive.namelist() if not n.endswith("/"))

        def read(member: str) -> bytes:
            if archive.getinfo(member).file_size > MAX_PHOTO_BYTES:
                raise ImageReadError(f"{member}: declares {archive.getinfo(member).file_size:,} bytes, over the {MAX_PHOTO_BYTES:,} a photo may be")
            return archive.read(member)

        load = read
    else:
        raise DataError(f"{source}: not a folder or zip of labelled photos")
    tables = sorted((m for m in members if PurePosixPath(m).name == "labels.csv"), key=len)
    if tables:
        folder = PurePosixPath(tables[0]).parent
        rows = list(csv.DictReader(io.StringIO(load(tables[0]).decode("utf-8", errors="replace"))))
        if not rows or not {"path", "label"} <= set(rows[0]):
            raise DataError(f"{source}/{tables[0]}: needs the columns path,label")
        known = set(members)
        items = [(row["path"] if row["path"] in known or str(folder) == "." else str(folder / row["path"]), row["label"]) for row in rows]
    else:
        items = [(m, PurePosixPath(m).parent.name) for m in members if "/" in m and m.rsplit(".", 1)[-1].lower() in EXTENSIONS]
    if not items:
        raise DataError(f"{source}: no labelled photos (a labels.csv with path,label, or <class>/<photo> folders)")
    return PhotoSet(name or source.stem, items, read)


def score_photos(photos: PhotoSet, classifier: EmotionClassifier, detector: FaceDetector, progress: bool = True) -> PhotoScores:
    """Run each photo through the app's still-photo path (MirrorPipeline.annotate_image, the CLI's and Photo page's) and
    keep the best-scoring face's class; unreadable or missing photos and labels outside the model's classes are skipped."""
    pipeline = MirrorPipeline(classifier, detector, MirrorSettings())
    scores = PhotoScores(classifier.classes)
    for member, label in tqdm(photos.items, desc=f"photos/{photos.name}", unit="photo", disable=not progress):
        cls = canonical(label or "")
        if cls not in classifier.classes:
            scores.skipped.append(f"{member}: label {label!r} is not one of the model's classes")
            continue
        try:
            image, _ = read_image(photos.read(member), member)
        except (KeyError, FileNotFoundError):
            scores.skipped.append(f"{member}: file not found")
            continue
        except ImageReadError as exc:
            scores.skipped.append(str(exc))
            continue
        _, faces = pipeline.annotate_image(image)
        best = max(faces, key=lambda face: face.box.score, default=None)
        scores.labels.append(classifier.classes.index(cls))
        scores.predictions.append(NO_FACE if best is None else classifier.classes.index(best.label))
    if not scores.labels:
        raise DataError(f"photos/{photos.name}: none of the {len(photos.items)} photos could be used")
    return scores


def photo_entry(name: str, checkpoint: str, classifier: EmotionClassifier, split: str, scores: PhotoScores, existing: dict | None) -> dict:
    """The summary entry carrying one model's photo scores: its existing entry with the split added, or a new one."""
    metrics, per_class, confusion = scores.report()
    loaded = classifier.loaded
    base = existing or {
        "name": name, "arch": loaded.arch, "checkpoint": checkpoint, "params": sum(p.numel() for p in loaded.model.parameters()),
        "dataset": loaded.meta.get("dataset", "fer2013"), "selection_split": loaded.meta.get("selection_split"), "tta": classifier.tta,
        "latency_ms_per_face": None,
    }
    return {**base, "classes": list(classifier.classes), "metrics": {**base.get("metrics", {}), split: metrics},
            "per_class": {**base.get("per_class", {}), split: per_class}, "confusion_matrix": {**base.get("confusion_matrix", {}), split: confusion}}


def photo_line(name: str, split: str, metrics: dict, per_class: dict) -> str:
    """One model's photo scores in a line, per-class recall included."""
    recalls = " ".join(f"{cls} {scores['recall']:.0f}" for cls, scores in per_class.items() if scores["support"])
    return (f"{name} on {split} (end to end, no face = wrong): accuracy {metrics['accuracy']:.2f}%, mean recall {metrics['mean_recall']:.2f}%, "
            f"macro-F1 {metrics['macro_f1']:.2f}%, faces found {metrics['detection_rate']:.1f}% of {metrics['n']} | recall: {recalls}")
