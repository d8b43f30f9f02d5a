"""Shared fixtures: the real dataset (skipped when absent; its tests are marked slow) and small checkpoints made on the spot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from emoji_mirror.checkpoint import atomic_torch_save, checkpoint_payload
from emoji_mirror.labels import FER2013_CLASSES
from emoji_mirror.models import create_model
from emoji_mirror.preprocessing import Preprocessing

REPO_ROOT = Path(__file__).resolve().parent.parent
# The one setting that points tests at the real data: $EMOJI_MIRROR_DATASETS, else ../shared/datasets beside the repo.
DATASETS_DIR = Path(os.environ.get("EMOJI_MIRROR_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


REAL_DATA_FIXTURES = {"fer2013_zip", "ferplus_zip", "fer2013"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """A test on the real data is slow (decoding FER2013 alone takes seconds): marked so, `pytest -m "not slow"` leaves it out."""
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """The app sets torch's thread count process-wide (one thread): put it back so later tests run at full speed."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _dataset_file(name: str) -> Path:
    path = DATASETS_DIR / name
    if not path.is_file():
        pytest.skip(f"real dataset {path} not present (set EMOJI_MIRROR_DATASETS to the folder holding {name})")
    return path


@pytest.fixture(scope="session")
def fer2013_zip() -> Path:
    """The real Kaggle-layout FER2013 zip."""
    return _dataset_file("fer2013.zip")


@pytest.fixture(scope="session")
def ferplus_zip() -> Path:
    """The real FER+ zip."""
    return _dataset_file("ferplus.zip")


@pytest.fixture(scope="session")
def fer2013(fer2013_zip, tmp_path_factory):
    """The real FER2013, decoded once per test session into a temporary cache."""
    from training.data import load_dataset

    return load_dataset(fer2013_zip, cache_dir=tmp_path_factory.mktemp("cache"))


def make_checkpoint(path: Path, arch: str = "baseline_cnn", seed: int = 0, meta: dict | None = None, arch_kwargs: dict | None = None) -> Path:
    """Save an untrained model of `arch` (built with `arch_kwargs`) in our checkpoint format (metadata included)."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=len(FER2013_CLASSES), **(arch_kwargs or {}))
    meta = meta or {"dataset": "fer2013", "selection_split": "fer2013/public_test", "metrics": {}, "note": "untrained test checkpoint"}
    atomic_torch_save(checkpoint_payload(model, arch, arch_kwargs or {}, FER2013_CLASSES, Preprocessing(), meta), path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """An untrained baseline_cnn checkpoint in a temporary folder."""
    return make_checkpoint(tmp_path / "baseline_cnn.pt")
