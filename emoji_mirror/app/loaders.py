"""Streamlit pieces shared by the mirror and photo pages: cached model/detector loading, the model picker, friendly errors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import streamlit as st
import torch

from ..checkpoint import CheckpointError, read_checkpoint
from ..classifier import EmotionClassifier
from ..detector import FaceDetector
from ..face_model import FaceModelError
from ..overlay import Overlay
from ..paths import CHECKPOINT_DIR, CHECKPOINT_ENV, list_checkpoints, resolve_checkpoint

DATASET_TITLES = {"fer2013": "FER2013", "ferplus": "FER+"}
# The app classifies a few 48x48 crops per frame while WebRTC decodes and encodes video (and, on one machine, the browser
# runs too): one torch thread avoids the intra-op threads' contention, which benchmarks/browser.py measured as the
# difference between ~8 ms and 100+ ms for two faces on a busy 2-core CPU. $EMOJI_MIRROR_TORCH_THREADS overrides it.
TORCH_THREADS_ENV = "EMOJI_MIRROR_TORCH_THREADS"
TRAIN_HINT = "train one with `python -m training.train` (or on the 🏋️ Train page)"


@st.cache_resource(show_spinner="Loading the emotion model…", max_entries=4)
def load_classifier(path: str, modified: float, threads: int = 1, tier: str = "live") -> EmotionClassifier:
    """One classifier per checkpoint file version (`modified` = its mtime, so a retrained file is reloaded) and tier, served
    as the tier serves it (EmotionClassifier.served), run with `threads` threads (torch's are process-wide)."""
    torch.set_num_threads(threads)
    return EmotionClassifier.served(Path(path), tier, threads)


def torch_threads() -> int:
    """Torch CPU threads for the app's inference: $EMOJI_MIRROR_TORCH_THREADS (a positive integer, capped at the core count
    with a warning), else 1."""
    raw = os.environ.get(TORCH_THREADS_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${TORCH_THREADS_ENV} must be a positive integer, got {raw[:40]!r}")
    cores = os.cpu_count() or 1
    if int(raw) > cores:
        warnings.warn(f"${TORCH_THREADS_ENV}={raw[:40]} is more than this machine's {cores} cores; using {cores}", stacklevel=2)
        return cores
    return int(raw)


@st.cache_resource(show_spinner="Starting the face detector…", on_release=FaceDetector.close)
def load_detector() -> FaceDetector:
    """The one shared detector; closed explicitly when the cache lets it go (see FaceDetector)."""
    return FaceDetector()


@st.cache_resource
def load_overlay() -> Overlay:
    return Overlay()


@st.cache_data(show_spinner=False)
def checkpoint_summary(path: str, modified: float) -> str:
    """'name · 68.2% private test' (or why no score is shown) for the model picker; meta stores accuracy in percent.

    Every file is checked against the checkpoint schema here, so a damaged one is marked, not a crash of the page."""
    name = Path(path).stem
    try:
        meta = read_checkpoint(path).get("meta", {})
    except CheckpointError:
        return f"{name} · damaged or not a checkpoint"
    dataset = meta.get("dataset", "fer2013")
    accuracy = meta.get("metrics", {}).get(f"{dataset}/private_test", {}).get("accuracy")
    if accuracy is None:
        return f"{name} · not evaluated"
    return f"{name} · {accuracy:.1f}% {DATASET_TITLES.get(dataset, dataset)} private test"


def _modified(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


def choose_checkpoint(tier: str = "live") -> Path | None:
    """Sidebar model picker over checkpoints/*.pt (plus $EMOJI_MIRROR_CHECKPOINT), starting on the tier's model (default_rule.TIERS);
    shows st.error and returns None if none."""
    try:
        default = resolve_checkpoint(tier=tier)
    except FileNotFoundError as exc:
        if os.environ.get(CHECKPOINT_ENV):
            st.error(f"**${CHECKPOINT_ENV} does not name a checkpoint.** {exc}\n\nFix: point it at a `.pt` file, or unset it to pick from `{CHECKPOINT_DIR}`.")
            return None
        default = None
    options = list_checkpoints()
    if default is not None and default not in options:
        options.insert(0, default)
    if not options:
        st.error(f"**No trained model found** in `{CHECKPOINT_DIR}`: {TRAIN_HINT}, or set ${CHECKPOINT_ENV} to a checkpoint file.")
        return None
    return st.sidebar.selectbox(
        "Model",
        options,
        index=options.index(default) if default is not None else 0,
        format_func=lambda p: checkpoint_summary(str(p), _modified(p)),
        help="Accuracy on the model's held-out test split (FER2013 PrivateTest, FER+ Test), as recorded in the checkpoint.",
    )


def classifier_or_error(path: Path, tier: str = "live") -> EmotionClassifier | None:
    """The cached classifier for `path` (on the backend the tier's rule measured fastest for it, with the TTA its scores were
    measured with), or None after an st.error saying what is wrong and what to do."""
    try:
        threads = torch_threads()
    except ValueError as exc:
        st.error(f"**The app's settings are invalid.** {exc}")
        return None
    try:
        return load_classifier(str(path), _modified(path), threads, tier)
    except (CheckpointError, OSError) as exc:
        st.error(f"**Cannot use model `{path.name}`.** {exc}\n\nFix: pick another model in the sidebar, or {TRAIN_HINT}.")
        return None


def detector_or_error() -> FaceDetector | None:
    """The cached face detector, or None after an st.error saying what is wrong with its model and how to install it."""
    try:
        return load_detector()
    except FaceModelError as exc:
        st.error(f"**The face detector cannot start.** {exc}")
    return None


def models_or_stop(tier: str = "live") -> tuple[EmotionClassifier, FaceDetector]:
    """The sidebar model picker (starting on the tier's model), then the chosen classifier and the detector; st.stop() after
    an st.error if either fails."""
    checkpoint = choose_checkpoint(tier)
    classifier = classifier_or_error(checkpoint, tier) if checkpoint else None
    detector = detector_or_error()
    if classifier is None or detector is None:
        st.stop()
    return classifier, detector
