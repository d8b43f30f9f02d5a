"""Scoring, once for the whole kit: class probabilities (cached per model, faces and TTA), ensemble means, the TTA choice,
accuracy / macro-F1 / per-class reports, and CPU latency per face."""

from __future__ import annotations

import copy
import gc
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from torch.utils.benchmark import Timer

from emoji_mirror.checkpoint import LoadedModel
from emoji_mirror.preprocessing import TTA_MODES, Preprocessing, normalize, predict_proba

LATENCY_WARMUP_RUNS = 5


def as_served(loaded: LoadedModel) -> LoadedModel:
    """The checkpoint as the app runs it: int8 on ONNX Runtime when it carries an activation calibration (so the scores
    are the ones users get), else unchanged."""
    if loaded.meta.get("onnx_int8") is None:
        return loaded
    from emoji_mirror.onnx_backend import onnx_network  # imported on use, as the classifier does

    return replace(loaded, model=onnx_network(loaded, torch.get_num_threads(), spin=False))  # batch work: no idle spinning


def split_probabilities(model, images: np.ndarray, cfg: Preprocessing, device="cpu", tta: str = "none", batch_size: int = 512) -> np.ndarray:
    """(N, C) class probabilities for uint8 faces (N, H, W)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        out.append(predict_proba(model, normalize(batch, cfg), tta).cpu())
    return torch.cat(out).numpy()


class Probabilities:
    """Class probabilities of loaded checkpoints on faces, per TTA mode, each computed once in this process: a model scored
    alone, again as an ensemble member and again for soft labels costs one pass. Keyed by the checkpoint file (path, mtime,
    size), a digest of the faces and the TTA mode; computed under whatever autocast the caller holds. Each file's served
    network (an int8 ONNX Runtime graph is built from its calibration) is made once too, whatever the splits and modes."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._cache: dict[tuple, np.ndarray] = {}
        self._served: dict[tuple, LoadedModel] = {}

    def of(self, loaded: LoadedModel, images: np.ndarray, tta: str = "none") -> np.ndarray:
        stat = Path(loaded.path).stat()
        file = (str(Path(loaded.path).resolve()), stat.st_mtime_ns, stat.st_size)
        key = (*file, hashlib.sha1(np.ascontiguousarray(images).data).hexdigest(), tta)
        if key not in self._cache:
            served = self._served.get(file) or as_served(loaded)
            if served is not loaded:  # an int8 graph: kept for this file's other splits and modes
                self._served[file] = served
            self._cache[key] = split_probabilities(served.model, images, loaded.preprocessing, self.device, tta)
        return self._cache[key]

    def mean(self, members: list[LoadedModel], images: np.ndarray, tta: str = "none") -> np.ndarray:
        """The ensemble's prediction: the mean of its members' class probabilities (one member: its own)."""
        return np.mean([self.of(member, images, tta) for member in members], axis=0)


def score(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, macro-F1 and mean per-class recall (percent) of argmax predictions against integer labels."""
    preds = probs.argmax(1)
    return {
        "accuracy": round(float((preds == labels).mean() * 100), 2),
        "mean_recall": round(float(balanced_accuracy_score(labels, preds) * 100), 2),
        "macro_f1": round(float(f1_score(labels, preds, average="macro", labels=np.arange(probs.shape[1]), zero_division=0) * 100), 2),
        "n": int(len(labels)),
    }


def split_report(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> tuple[dict, dict, list]:
    """(accuracy/macro-F1/n, per-class precision/recall/F1 in percent with support, confusion counts) for one split."""
    preds = probs.argmax(1)
    index = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=index, zero_division=0)
    per_class = {
        name: {"precision": round(float(p) * 100, 2), "recall": round(float(r) * 100, 2), "f1": round(float(f) * 100, 2), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support)
    }
    return score(probs, labels), per_class, confusion_matrix(labels, preds, labels=index).tolist()


def choose_tta(probabilities, images: np.ndarray, labels: np.ndarray) -> tuple[str, dict[str, float]]:
    """The TTA mode with the best accuracy on a selection split (ties: the cheaper one), and every mode's accuracy."""
    accuracy = {mode: score(probabilities(images, mode), labels)["accuracy"] for mode in TTA_MODES}
    return max(TTA_MODES, key=lambda mode: accuracy[mode]), accuracy


def score_splits(probabilities, scored: dict, selection: str, tta: str, classes) -> tuple[str, dict, dict, dict, dict]:
    """(TTA used, metrics, per-class, confusion, TTA accuracy per mode on the selection split) for every scored split
    (dataset/split -> (images, labels)); tta "auto" is the mode with the best accuracy on the selection split."""
    tta_scores = {}
    if tta == "auto":
        tta, tta_scores = choose_tta(probabilities, *scored[selection])
    metrics, per_class, confusion = {}, {}, {}
    for split, (images, labels) in scored.items():
        metrics[split], per_class[split], confusion[split] = split_report(probabilities(images, tta), labels, classes)
    return tta, metrics, per_class, confusion, tta_scores


def latency_ms_per_face(model: torch.nn.Module, cfg: Preprocessing, tta: str = "none", batch_sizes=(1, 8), min_run_time: float = 1.0,
                        torch_threads: int | None = None) -> dict[str, float]:
    """CPU milliseconds per face for uint8 crops -> normalise -> probabilities: median of timed blocks, after warm-up, with
    `torch_threads` PyTorch threads (default: as many as it has)."""
    model = copy.deepcopy(model).cpu().eval()
    generator = torch.Generator().manual_seed(0)
    result = {}
    for size in batch_sizes:
        faces = torch.randint(0, 256, (size, cfg.input_size, cfg.input_size), dtype=torch.uint8, generator=generator)
        timer = Timer(
            "predict_proba(model, normalize(faces, cfg), tta)",
            globals={"predict_proba": predict_proba, "normalize": normalize, "model": model, "faces": faces, "cfg": cfg, "tta": tta},
            num_threads=torch_threads or torch.get_num_threads(),
        )
        timer.timeit(LATENCY_WARMUP_RUNS)
        result[f"batch{size}"] = round(timer.blocked_autorange(min_run_time=min_run_time).median * 1000 / size, 3)
    return result


def onnxruntime_ms_per_face(loaded: LoadedModel, tta: str = "none") -> dict[str, float]:
    """{"onnxruntime_batch1": ms}: the same batch-1 timing with the network run by ONNX Runtime (the app's other backend;
    int8 when the checkpoint carries an activation calibration) on as many threads as PyTorch has, and PyTorch, which only
    normalises the faces, makes the TTA views and averages, on one (two spinning thread pools on the same cores measured
    flip TTA at twice its cost)."""
    from emoji_mirror.onnx_backend import onnx_network  # imported on use, as the classifier does

    network = onnx_network(replace(loaded, model=copy.deepcopy(loaded.model).cpu().eval()), torch.get_num_threads())
    latency = latency_ms_per_face(network, loaded.preprocessing, tta, batch_sizes=(1,), torch_threads=1)["batch1"]
    del network
    gc.collect()  # the session and its spinning threads go now, not while the next model is timed
    return {"onnxruntime_batch1": latency}
