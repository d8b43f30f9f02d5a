"""Every data form loads to the same splits; splits are deterministic and disjoint; bad data gets clear errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoji_mirror.labels import FER2013_CLASSES, FERPLUS_CLASSES
from training.data import FERPLUS_VOTE_COLUMNS, DataError, ferplus_majority_label, holdout_split, load_dataset

USAGE = {"train": "Training", "public_test": "PublicTest", "private_test": "PrivateTest"}
PREFIX = {"public_test": "PublicTest", "private_test": "PrivateTest"}


def _faces(n: int, seed: int) -> np.ndarray:
    """Smooth random 48x48 faces-ish images (smooth so JPEG keeps them close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 6, 6), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((48, 48), Image.BILINEAR)) for s in small])


@pytest.fixture(scope="module")
def fer_rows():
    """(split, label, image) rows: 3 images per class in train, 1 per class in each test half."""
    rows, seed = [], 0
    for split, per_class in (("train", 3), ("public_test", 1), ("private_test", 1)):
        for label in range(len(FER2013_CLASSES)):
            for img in _faces(per_class, seed):
                rows.append((split, label, img))
            seed += 1
    return rows


def write_csv(rows, path: Path) -> Path:
    lines = ["emotion,pixels,Usage"] + [f"{label},{' '.join(map(str, img.ravel()))},{USAGE[split]}" for split, label, img in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_kaggle_tree(rows, root: Path) -> Path:
    for i, (split, label, img) in enumerate(rows):
        top = "train" if split == "train" else "test"
        name = f"Training_{i:05d}.jpg" if split == "train" else f"{PREFIX[split]}_{i:05d}.jpg"
        folder = root / top / FER2013_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / name, quality=100)
    return root


def zip_folder(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + str(f.relative_to(folder)))
    return path


def test_csv_folder_and_zip_agree(fer_rows, tmp_path):
    cache = tmp_path / "cache"
    from_csv = load_dataset(write_csv(fer_rows, tmp_path / "fer2013.csv"), cache)
    tree = write_kaggle_tree(fer_rows, tmp_path / "kaggle")
    from_tree = load_dataset(tree, cache)
    from_zip = load_dataset(zip_folder(tree, tmp_path / "fer2013.zip", prefix="fer2013/"), cache)
    assert from_csv.classes == FER2013_CLASSES == from_tree.classes
    for split in ("train", "public_test", "private_test"):
        expected = sorted(label for s, label, _ in fer_rows if s == split)
        assert sorted(from_csv.splits[split].labels.tolist()) == expected
        assert sorted(from_tree.splits[split].labels.tolist()) == expected
        np.testing.assert_array_equal(from_tree.splits[split].images, from_zip.splits[split].images)
    # CSV pixels are exact; JPEG (quality 100) stays within a few grey levels of them, image for image
    csv_train, tree_train = from_csv.splits["train"], from_tree.splits["train"]
    for label in range(len(FER2013_CLASSES)):
        diff = csv_train.images[csv_train.labels == label].astype(int) - tree_train.images[tree_train.labels == label]
        assert np.abs(diff).mean() < 3
    assert from_tree.fingerprint == from_zip.fingerprint != from_csv.fingerprint


def test_cache_is_used_and_rebuilt_when_damaged(fer_rows, tmp_path):
    csv_path = write_csv(fer_rows, tmp_path / "fer2013.csv")
    first = load_dataset(csv_path, tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    cached[0].write_bytes(b"garbage")
    again = load_dataset(csv_path, tmp_path / "cache")
    assert again.fingerprint == first.fingerprint


def test_ferplus_layout_and_majority_protocol(tmp_path):
    root = tmp_path / "ferplus"
    votes = {
        "FER2013Train": [[0, 8, 0, 0, 0, 0, 0, 0, 2, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
        "FER2013Valid": [[0, 0, 0, 0, 0, 0, 0, 7, 3, 0]],
        "FER2013Test": [[0, 0, 0, 0, 0, 0, 0, 0, 9, 1]],
    }
    row = 0
    for folder, rows in votes.items():
        (root / folder).mkdir(parents=True)
        lines = []
        for v in rows:
            name = f"fer{row:07d}.png"
            Image.fromarray(_faces(1, row)[0]).save(root / folder / name)
            lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, v)))
            row += 1
        (root / folder / "label.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(root, tmp_path / "cache")
    assert ds.name == "ferplus" and ds.classes == FERPLUS_CLASSES
    assert ds.splits["train"].labels.tolist() == [FERPLUS_CLASSES.index("happy"), -1]
    assert ds.splits["public_test"].labels.tolist() == [FERPLUS_CLASSES.index("contempt")]
    assert ds.splits["private_test"].labels.tolist() == [-1]  # 'unknown' wins: dropped by the protocol
    assert len(ds.splits["train"].labelled()) == 1
    np.testing.assert_allclose(ds.splits["train"].votes[0, FERPLUS_CLASSES.index("happy")], 8)


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ([6, 0, 0, 0, 0, 0, 0, 0, 4, 0], "neutral"),
        ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], None),  # tie at exactly half: no majority
        ([4, 1, 1, 1, 1, 1, 1, 0, 0, 0], "neutral"),  # single votes dropped first
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),  # not a face
    ],
)
def test_majority_label(votes, expected):
    got = ferplus_majority_label(np.array(votes, dtype=np.float32))
    assert got == (FERPLUS_CLASSES.index(expected) if expected else -1)
    assert len(votes) == len(FERPLUS_VOTE_COLUMNS)


def test_holdout_split_is_deterministic_stratified_and_disjoint():
    labels = np.repeat(np.arange(7), [400, 40, 400, 700, 500, 300, 480])
    train_a, hold_a = holdout_split(labels, 0.1, seed=3)
    train_b, hold_b = holdout_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(hold_a, hold_b)
    assert not set(train_a) & set(hold_a)
    assert len(train_a) + len(hold_a) == len(labels)
    counts = np.bincount(labels[hold_a], minlength=7)
    np.testing.assert_allclose(counts, np.bincount(labels) * 0.1, atol=1)
    assert not np.array_equal(holdout_split(labels, 0.1, seed=4)[1], hold_a)


def test_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOJI_MIRROR_DATA", raising=False)
    with pytest.raises(DataError, match="no data path"):
        load_dataset(None)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither the Kaggle layout"):
        load_dataset(tmp_path / "empty", tmp_path / "cache")
    bad = tmp_path / "bad" / "train" / "happy"
    bad.mkdir(parents=True)
    (bad / "Training_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode image"):
        load_dataset(tmp_path / "bad", tmp_path / "cache")


def test_real_fer2013_counts(fer2013):
    """The shared Kaggle zip decodes to the published split sizes."""
    assert {s: len(d) for s, d in fer2013.splits.items()} == {"train": 28709, "public_test": 3589, "private_test": 3589}
    assert fer2013.class_counts("private_test")["happy"] == 879
    assert fer2013.splits["train"].images.dtype == np.uint8


def test_real_public_and_private_are_different_faces(fer2013):
    pub, priv = fer2013.splits["public_test"].images, fer2013.splits["private_test"].images
    assert pub.shape == priv.shape and not np.array_equal(pub, priv)
