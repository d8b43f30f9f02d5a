"""Batched emotion classification of face crops with a loaded checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedModel, load_model
from .labels import emoji_for
from .paths import resolve_checkpoint, served_backend, served_tta
from .preprocessing import normalize, predict_proba

BACKENDS = ("torch", "onnxruntime")


class EmotionClassifier:
    """Face crops (grayscale uint8, any size) in, class probabilities out, one forward pass per batch."""

    def __init__(self, loaded: LoadedModel, tta: str = "none"):
        self.loaded = loaded
        self.model = loaded.model
        self.classes = loaded.classes
        self.emojis = tuple(emoji_for(c) for c in self.classes)
        self.preprocessing = loaded.preprocessing
        self.tta = tta
        self.device = next(self.model.parameters(), torch.empty(0)).device  # CPU for a network without torch parameters (ONNX Runtime)

    @classmethod
    def from_checkpoint(cls, spec: str | None = None, device: str = "cpu", tta: str = "none", backend: str = "torch", threads: int | None = None) -> "EmotionClassifier":
        """Resolve (see paths.resolve_checkpoint) and load a checkpoint; raises FileNotFoundError / CheckpointError.

        backend "onnxruntime" exports the network to ONNX in memory (int8 when the checkpoint carries an activation
        calibration) and runs it with ONNX Runtime on the CPU, with `threads` intra-op threads (None: its default);
        "torch" (the default) runs it with PyTorch on `device`.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        loaded = load_model(resolve_checkpoint(spec), device if backend == "torch" else "cpu")
        if backend == "onnxruntime":
            from .onnx_backend import onnx_network  # imported on use: the torch backend never loads ONNX Runtime

            loaded = replace(loaded, model=onnx_network(loaded, threads))
        return cls(loaded, tta)

    @classmethod
    def served(cls, checkpoint: Path, tier: str = "live", threads: int | None = None) -> "EmotionClassifier":
        """A resolved checkpoint as the tier serves it: on the backend its rule measured fastest for it, with the TTA its
        scores were measured with (paths.served_backend / served_tta); `threads` as in from_checkpoint."""
        return cls.from_checkpoint(str(checkpoint), tta=served_tta(checkpoint, tier), backend=served_backend(checkpoint, tier), threads=threads)

    def predict(self, faces: list[np.ndarray]) -> np.ndarray:
        """(N, C) probabilities for N grayscale uint8 face crops; (0, C) for no faces."""
        if not faces:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        batch = torch.stack([normalize(torch.from_numpy(np.ascontiguousarray(f))[None, None], self.preprocessing)[0] for f in faces])
        return predict_proba(self.model, batch.to(self.device), self.tta).cpu().numpy()
