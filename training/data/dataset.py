"""The dataset as arrays: FaceSplit, FaceDataset, the split names and the content fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "public_test", "private_test")
IMAGE_SIZE = 48


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


def fingerprint(splits: dict[str, FaceSplit]) -> str:
    """sha256 of the decoded content, the same whichever form the data came in."""
    h = hashlib.sha256()
    for split in SPLITS:
        if split in splits:
            h.update(split.encode())
            h.update(np.ascontiguousarray(splits[split].images).tobytes())
            h.update(splits[split].labels.astype(np.int64).tobytes())
    return h.hexdigest()
