"""FER+ votes as soft labels for FER2013's faces: each face found in the other download, the votes mixed into training."""

from __future__ import annotations

import numpy as np
import pytest

from emoji_mirror.labels import canonical
from emoji_mirror.paths import REPO_ROOT
from training import distill, train
from training.data import DataError, ferplus_votes, load_dataset
from training.data.forms import FERPLUS_VOTE_COLUMNS
from training.data.splits import prepare_run_data
from training.data.synthetic import encode, fer2013_rows, write_fer2013
from training.sprint.plan import FERPLUS_VOTES

TRACKED = REPO_ROOT / FERPLUS_VOTES


@pytest.fixture(scope="module")
def twin_downloads(tmp_path_factory):
    """(FER2013 folder, FER+ folder, FER+ votes of each FER2013 training face or None): FER+ holds the same training faces
    with other contrast and brightness, shuffled, all but the first face, each with its own votes."""
    root = tmp_path_factory.mktemp("twins")
    rows = fer2013_rows({"train": 4, "public_test": 1}, seed=3)
    fer2013 = write_fer2013(rows, root / "fer2013", fmt="PNG")
    train_faces = [(label, pixels) for split, label, pixels in rows if split == "train"]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train_faces))
    votes_of: list[np.ndarray | None] = [None] * len(train_faces)
    folder = root / "ferplus" / "FER2013Train"
    folder.mkdir(parents=True)
    lines = []
    for row, i in enumerate(order):
        label, pixels = train_faces[i]
        if i == 0:
            continue  # a face FER+ does not have: it keeps its FER2013 label
        counts = np.zeros(10, dtype=int)
        counts[[canonical(c) for c in FERPLUS_VOTE_COLUMNS].index(canonical(("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")[label]))] += 5
        counts[0] += 3  # neutral
        counts[7] += 2  # contempt: not a FER2013 class, dropped
        votes_of[i] = counts
        relit = np.clip(pixels.astype(np.float32) * 0.7 + 40, 0, 255).astype(np.uint8)
        (folder / f"fer{row:07d}.png").write_bytes(encode(relit, "PNG"))
        lines.append(f'fer{row:07d}.png,"(0, 0, 48, 48)",' + ",".join(map(str, counts)))
    (folder / "label.csv").write_text("\n".join(lines) + "\n")
    return fer2013, root / "ferplus", votes_of


def test_each_face_is_found_in_the_other_download_and_carries_its_votes(twin_downloads, tmp_path, capsys):
    fer2013_path, ferplus_path, votes_of = twin_downloads
    out = tmp_path / "votes.npz"
    assert ferplus_votes.main(["--data", str(fer2013_path), "--ferplus", str(ferplus_path), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert f"{len(votes_of) - 1} of {len(votes_of)} FER2013 training faces matched" in capsys.readouterr().out
    fer2013 = load_dataset(fer2013_path, tmp_path / "cache")
    targets = distill.load_soft_targets(out, fer2013, "--ferplus-votes")  # fingerprinted with FER2013's data, like a teacher
    labels = fer2013.splits["train"].labelled().labels
    assert targets[0].tolist() == np.eye(7)[labels[0]].tolist()  # not in FER+: its own label
    for i in range(1, len(labels)):
        expected = np.zeros(7)
        expected[labels[i]] += 5 / 8
        expected[6] += 3 / 8  # neutral's share; contempt's two votes dropped
        np.testing.assert_allclose(targets[i], expected, atol=1e-3)
    with pytest.raises(DataError, match="--ferplus-votes .* made for other data"):
        distill.load_soft_targets(out, load_dataset(ferplus_path, tmp_path / "cache"), "--ferplus-votes")


def test_votes_are_mixed_into_the_labels_before_the_teacher(twin_downloads, tmp_path):
    fer2013 = load_dataset(twin_downloads[0], tmp_path / "cache")
    labels = fer2013.splits["train"].labelled().labels
    votes = np.full((len(labels), 7), 1 / 7, dtype=np.float32)
    teacher = np.eye(7, dtype=np.float32)[(labels + 1) % 7]
    data = prepare_run_data(fer2013, "public_test", 0.1, 0, "labels", None, teacher, 0.5, votes, 0.4)
    expected = 0.5 * teacher + 0.5 * (0.4 * votes + 0.6 * np.eye(7)[labels])
    np.testing.assert_allclose(data.train_targets, expected, atol=1e-6)
    held = prepare_run_data(fer2013, "train_holdout", 0.25, 0, "labels", None, None, 0.0, np.eye(7, dtype=np.float32)[(labels + 2) % 7], 1.0)
    assert np.array_equal(held.train_targets.argmax(1), (held.train_labels + 2) % 7)  # the holdout subsets the votes alike


def test_the_trainer_records_the_votes_and_refuses_a_weight_outside_0_1(twin_downloads, tmp_path, capsys):
    fer2013_path, ferplus_path, _ = twin_downloads
    out = tmp_path / "votes.npz"
    assert ferplus_votes.main(["--data", str(fer2013_path), "--ferplus", str(ferplus_path), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    flags = ["--model", "baseline_cnn", "--epochs", "1", "--data", str(fer2013_path), "--cache-dir", str(tmp_path / "cache"),
             "--output-dir", str(tmp_path / "runs"), "--workers", "0", "--amp", "off", "--no-progress", "--device", "cpu", "--batch-size", "16"]
    assert train.main([*flags, "--ferplus-votes", str(out), "--ferplus-weight", "1.5"]) == 2
    assert "--ferplus-weight must be between 0 and 1" in capsys.readouterr().err
    assert train.main([*flags, "--ferplus-votes", str(tmp_path / "nowhere.npz")]) == 2
    assert "--ferplus-votes" in capsys.readouterr().err
    assert train.main([*flags, "--ferplus-votes", str(out), "--ferplus-weight", "0.3"]) == 0
    config = distill.read_checkpoint(tmp_path / "runs" / "baseline_cnn" / "last.pt")["meta"]["config"]
    assert config["ferplus_votes"] == str(out) and config["ferplus_weight"] == 0.3


@pytest.mark.slow
def test_the_tracked_votes_are_what_the_real_downloads_give(fer2013, ferplus_zip, tmp_path):
    """Regenerated from fer2013.zip and ferplus.zip, the tracked file holds the same rows (its fingerprint checked first)."""
    dataset, plus = fer2013, load_dataset(ferplus_zip, tmp_path / "cache")
    tracked = distill.load_soft_targets(TRACKED, dataset, "--ferplus-votes")
    targets, matched = ferplus_votes.vote_targets(dataset, plus)
    assert matched.mean() > 0.95  # the same faces: nearly all found
    np.testing.assert_allclose(tracked, targets, atol=1e-3)
    labels = dataset.splits["train"].labelled().labels
    agree = (targets[matched].argmax(1) == labels[matched]).mean()
    assert 0.55 < agree < 0.8  # FER+ relabelled a third of the faces; a wrong match would agree at chance (about 0.2)
