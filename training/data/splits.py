"""The arrays one training run uses: its training set (with soft targets), the selection split and the report splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import DataError, FaceDataset


def holdout_split(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic, stratified, seeded (train, holdout) indices of a training split (the seed's 'validation split')."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train_idx, hold_idx = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(train_idx), np.sort(hold_idx)


@dataclass
class RunData:
    """The arrays one run trains on, selects on, and reports on."""

    train_images: np.ndarray
    train_targets: np.ndarray  # int labels, or (N, C) vote distributions
    train_labels: np.ndarray
    selection_name: str
    selection: tuple[np.ndarray, np.ndarray]
    reports: dict[str, tuple[np.ndarray, np.ndarray]]


def prepare_run_data(dataset: FaceDataset, select_on: str, holdout_fraction: float, seed: int, targets: str, max_train: int | None,
                     teacher: np.ndarray | None = None, distill_alpha: float = 0.0, votes: np.ndarray | None = None,
                     votes_weight: float = 0.0) -> RunData:
    """Split the dataset: train, the selection split, and every other labelled split to report on.

    With FER+ votes (a distribution for every labelled training face), the labels become votes_weight * votes +
    (1 - votes_weight) * the one-hot labels. With a teacher (soft labels for every labelled training face), the targets
    are distill_alpha * teacher + (1 - distill_alpha) * the labels (one-hot, or the vote distribution): knowledge distillation at temperature 1."""
    train = dataset.splits["train"].labelled()
    index = np.arange(len(train))  # rows of the full training split kept, to subset the teacher the same way
    labelled = {name: split.labelled() for name, split in dataset.splits.items() if name != "train"}
    if select_on == "train_holdout":
        train_idx, hold_idx = holdout_split(train.labels, holdout_fraction, seed)
        selection = (train.images[hold_idx], train.labels[hold_idx])
        train, index = train.subset(train_idx), index[train_idx]
    elif select_on in labelled:
        selection = (labelled[select_on].images, labelled[select_on].labels)
    else:
        raise DataError(f"--select-on {select_on}: the data has no such split (has: train_holdout, {', '.join(labelled)})")
    if max_train:
        kept = np.sort(np.random.default_rng(seed).permutation(len(train))[:max_train])
        train, index = train.subset(kept), index[kept]
    if targets == "votes":
        if train.votes is None:
            raise DataError("--targets votes needs FER+ vote counts; this dataset has none")
        train_targets = (train.votes / train.votes.sum(1, keepdims=True)).astype(np.float32)
    else:
        train_targets = train.labels
    if votes is not None:
        hard = np.eye(len(dataset.classes), dtype=np.float32)[train.labels]
        train_targets = (votes_weight * votes[index] + (1 - votes_weight) * hard).astype(np.float32)
    if teacher is not None:
        hard = train_targets if train_targets.ndim == 2 else np.eye(len(dataset.classes), dtype=np.float32)[train_targets]
        train_targets = (distill_alpha * teacher[index] + (1 - distill_alpha) * hard).astype(np.float32)
    reports = {name: (s.images, s.labels) for name, s in labelled.items() if name != select_on}
    return RunData(train.images, train_targets, train.labels, f"{dataset.name}/{select_on}", selection, reports)
