"""Every data form loads to the same splits; splits are deterministic and disjoint; bad data gets clear errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from emoji_mirror.labels import FER2013_CLASSES, FERPLUS_CLASSES
from training.data import DataError, load_dataset
from training.data.forms import FERPLUS_VOTE_COLUMNS, ferplus_majority_label
from training.data.splits import holdout_split
from training.data.synthetic import fer2013_rows, ferplus_votes, make_fer2013, make_ferplus, write_fer2013, write_fer2013_csv


@pytest.fixture(scope="module")
def fer_rows():
    """(split, label, face) rows of the synthetic FER2013: 3 faces per class in train, 1 per class in each test half."""
    return fer2013_rows({"train": 3, "public_test": 1, "private_test": 1})


def zip_folder(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + str(f.relative_to(folder)))
    return path


def test_csv_folder_and_zip_agree(fer_rows, tmp_path):
    cache = tmp_path / "cache"
    from_csv = load_dataset(write_fer2013_csv(fer_rows, tmp_path / "fer2013.csv"), cache)
    tree = write_fer2013(fer_rows, tmp_path / "kaggle", quality=100)
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
    csv_path = write_fer2013_csv(fer_rows, tmp_path / "fer2013.csv")
    first = load_dataset(csv_path, tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    cached[0].write_bytes(b"garbage")
    again = load_dataset(csv_path, tmp_path / "cache")
    assert again.fingerprint == first.fingerprint


def test_ferplus_layout_and_majority_protocol(tmp_path):
    root = make_ferplus(tmp_path / "ferplus", votes={
        "FER2013Train": [[0, 8, 0, 0, 0, 0, 0, 0, 2, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
        "FER2013Valid": [[0, 0, 0, 0, 0, 0, 0, 7, 3, 0]],
        "FER2013Test": [[0, 0, 0, 0, 0, 0, 0, 0, 9, 1]],
    })
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


def test_synthetic_data_comes_in_the_forms_and_counts_asked_for(tmp_path):
    """The generator the tests and the sprint's smoke train on: any split sizes, zip or folder, JPEG or PNG, FER+ with unclear rows."""
    per_class = {"train": 4, "public_test": 2, "private_test": 1}
    from_zip = load_dataset(make_fer2013(tmp_path / "fer2013.zip", seed=5, per_class=per_class), tmp_path / "cache")
    from_png = load_dataset(make_fer2013(tmp_path / "png", seed=5, per_class=per_class, fmt="PNG"), tmp_path / "cache")
    assert not list((tmp_path / "png").rglob("*.jpg")) and len(list((tmp_path / "png").rglob("*.png"))) == 7 * 7
    for split, count in per_class.items():
        assert from_zip.class_counts(split) == from_png.class_counts(split) == dict.fromkeys(FER2013_CLASSES, count)
    rows = fer2013_rows(per_class, seed=5)
    train = from_png.splits["train"]
    for label in range(len(FER2013_CLASSES)):  # PNG is lossless: the very faces generated, in order within each class
        np.testing.assert_array_equal(train.images[train.labels == label], np.stack([f for s, y, f in rows if s == "train" and y == label]))
    assert from_zip.fingerprint != load_dataset(make_fer2013(tmp_path / "other.zip", seed=6, per_class=per_class), tmp_path / "cache").fingerprint

    ferplus = load_dataset(make_ferplus(tmp_path / "ferplus.zip", votes=ferplus_votes({"FER2013Train": 2, "FER2013Valid": 1}, unclear=3)),
                           tmp_path / "cache")
    assert set(ferplus.splits) == {"train", "public_test"} and len(ferplus.splits["train"]) == 8 * 2 + 3
    assert ferplus.class_counts("train") == dict.fromkeys(FERPLUS_CLASSES, 2) and (ferplus.splits["train"].labels == -1).sum() == 3
    assert len(ferplus.splits["public_test"].labelled()) == 8


def test_real_fer2013_counts(fer2013):
    """The shared Kaggle zip decodes to the published split sizes."""
    assert {s: len(d) for s, d in fer2013.splits.items()} == {"train": 28709, "public_test": 3589, "private_test": 3589}
    assert fer2013.class_counts("private_test")["happy"] == 879
    assert fer2013.splits["train"].images.dtype == np.uint8


def test_real_public_and_private_are_different_faces(fer2013):
    pub, priv = fer2013.splits["public_test"].images, fer2013.splits["private_test"].images
    assert pub.shape == priv.shape and not np.array_equal(pub, priv)
