"""Batched emotion classification of face crops with a loaded checkpoint."""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import LoadedModel, load_model
from .labels import emoji_for
from .paths import resolve_checkpoint
from .preprocessing import normalize, predict_proba


class EmotionClassifier:
    """Face crops (grayscale uint8, any size) in, class probabilities out, one forward pass per batch."""

    def __init__(self, loaded: LoadedModel, tta: str = "none"):
        self.loaded = loaded
        self.model = loaded.model
        self.classes = loaded.classes
        self.emojis = tuple(emoji_for(c) for c in self.classes)
        self.preprocessing = loaded.preprocessing
        self.tta = tta
        self.device = next(self.model.parameters()).device

    @classmethod
    def from_checkpoint(cls, spec: str | None = None, device: str = "cpu", tta: str = "none") -> "EmotionClassifier":
        """Resolve (see paths.resolve_checkpoint) and load a checkpoint; raises FileNotFoundError / CheckpointError."""
        return cls(load_model(resolve_checkpoint(spec), device), tta)

    def predict(self, faces: list[np.ndarray]) -> np.ndarray:
        """(N, C) probabilities for N grayscale uint8 face crops; (0, C) for no faces."""
        if not faces:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        batch = torch.stack([normalize(torch.from_numpy(np.ascontiguousarray(f))[None, None], self.preprocessing)[0] for f in faces])
        return predict_proba(self.model, batch.to(self.device), self.tta).cpu().numpy()
