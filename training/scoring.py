"""Scoring a model on a split: batched probabilities (with optional TTA), accuracy and macro-F1."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from emoji_mirror.preprocessing import Preprocessing, normalize, predict_proba


def split_probabilities(model, images: np.ndarray, cfg: Preprocessing, device="cpu", tta: str = "none", batch_size: int = 512) -> np.ndarray:
    """(N, C) class probabilities for uint8 faces (N, H, W)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        out.append(predict_proba(model, normalize(batch, cfg), tta).cpu())
    return torch.cat(out).numpy()


def score(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, macro-F1 and mean per-class recall (percent) of argmax predictions against integer labels."""
    preds = probs.argmax(1)
    return {
        "accuracy": round(float((preds == labels).mean() * 100), 2),
        "mean_recall": round(float(balanced_accuracy_score(labels, preds) * 100), 2),
        "macro_f1": round(float(f1_score(labels, preds, average="macro", labels=np.arange(probs.shape[1]), zero_division=0) * 100), 2),
        "n": int(len(labels)),
    }
