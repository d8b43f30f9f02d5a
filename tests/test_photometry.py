"""The photometry preprocessing field: faces standardized to FER2013's typical brightness and contrast, stored in the
checkpoint, trained with; checkpoints without the field keep their old behaviour (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_checkpoint
from real_faces import astronaut_crops

from emoji_mirror.checkpoint import CheckpointError, load_model
from emoji_mirror.preprocessing import FACE_MEAN, FACE_STD, Preprocessing, normalize, standardize
from training import train
from training.data.synthetic import make_fer2013


def faces() -> torch.Tensor:
    return torch.from_numpy(np.stack(astronaut_crops()[:4]))


def test_standardize_gives_every_exposure_the_same_input():
    standard = Preprocessing(photometry="standardize")
    x = faces().float()
    dim = (x * 0.5 + 20).round().clamp(0, 255).to(torch.uint8)  # underexposed, low contrast
    torch.testing.assert_close(normalize(dim, standard), normalize(faces(), standard), atol=0.05, rtol=0)
    assert (normalize(dim, Preprocessing()) - normalize(faces(), Preprocessing())).abs().mean() > 0.5  # as it is: far apart
    scaled = normalize(faces(), standard) * standard.std + standard.mean
    torch.testing.assert_close(scaled.mean(dim=(-2, -1)).flatten(), torch.full((4,), FACE_MEAN), atol=1e-4, rtol=0)
    torch.testing.assert_close(scaled.std(dim=(-2, -1)).flatten(), torch.full((4,), FACE_STD), atol=1e-4, rtol=0)


def test_a_flat_face_stays_finite():
    assert torch.isfinite(normalize(torch.full((1, 48, 48), 7, dtype=torch.uint8), Preprocessing(photometry="standardize"))).all()


def test_the_field_round_trips_and_old_checkpoints_keep_the_old_behaviour(tmp_path):
    path = make_checkpoint(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["preprocessing"]["photometry"]  # written before the field existed
    torch.save(payload, path)
    old = load_model(path)
    assert old.preprocessing.photometry == "none"
    x = faces()
    torch.testing.assert_close(normalize(x, old.preprocessing), (x.float()[:, None] / 255 - 0.5) / 0.25)

    payload["preprocessing"]["photometry"] = "standardize"
    torch.save(payload, path)
    assert load_model(path).preprocessing == Preprocessing(photometry="standardize")

    payload["preprocessing"]["photometry"] = "clahe"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="preprocessing/photometry: 'clahe' is not one of"):
        load_model(path)


@pytest.mark.slow
def test_training_with_standardize_stores_it(tmp_path):
    data = make_fer2013(tmp_path / "fer2013.zip")
    assert train.main(["--model", "baseline_cnn", "--epochs", "1", "--recipe", "camera", "--photometry", "standardize", "--data", str(data), "--cache-dir", str(tmp_path / "cache"),
                       "--output-dir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "out"), "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    assert load_model(tmp_path / "out" / "baseline_cnn.pt").preprocessing.photometry == "standardize"


def test_standardizing_normalised_faces_is_the_same_photometry():
    """Training standardizes after its light jitter, on normalised faces; the app standardizes inside normalize: one result."""
    standard = Preprocessing(photometry="standardize")
    plain = normalize(faces(), Preprocessing())
    torch.testing.assert_close(standardize(plain * 1.7 + 0.3, standard), normalize(faces(), standard), atol=1e-5, rtol=0)
