"""The stated rules that pick what ships in each tier (live, photo, FER+) from results/summary.json entries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .paths import CHECKPOINT_DIR, REPO_ROOT


@dataclass(frozen=True)
class Tier:
    """One shipped tier: where it is used, and the rule that picks its model."""

    name: str
    used_by: str
    dataset: str
    metric: str  # on the dataset's selection split (public_test), never the reported one
    max_ms: float  # CPU ms per face at batch 1, with the faster of the app's two backends (PyTorch, ONNX Runtime)
    max_mb: float | None = None  # the checkpoint file's size

    @property
    def split(self) -> str:
        return f"{self.dataset}/public_test"

    @property
    def metric_title(self) -> str:
        return {"mean_recall": "mean per-class recall", "accuracy": "accuracy"}[self.metric]

    @property
    def rule(self) -> str:
        size = f" and <= {self.max_mb:g} MB on disk" if self.max_mb else ""
        return (f"{self.used_by}: among {self.dataset.upper().replace('FERPLUS', 'FER+')} checkpoints (one file each; a packed ensemble is one) at <= {self.max_ms:g} ms per face "
                f"(CPU, batch 1, PyTorch or ONNX Runtime, whichever is faster){size}, the one with the best {self.metric_title} on {self.split} (the selection split, never the reported one)")


TIERS = {
    "live": Tier("live", "the app's default (the live mirror)", "fer2013", "mean_recall", 2.0),
    "photo": Tier("photo", "the photo tier (the Photo page, the CLI and predict_image)", "fer2013", "accuracy", 25.0, 12.0),
    "ferplus": Tier("ferplus", "the FER+ tier (8 classes, contempt included)", "ferplus", "accuracy", 25.0, 12.0),
}
LIVE = TIERS["live"]
# The live tier's rule, by its old names (the app's default).
MAX_DEFAULT_MS_PER_FACE, RULE_SPLIT, DEFAULT_RULE = LIVE.max_ms, LIVE.split, LIVE.rule


def mean_recall(model: dict, split: str) -> float | None:
    """Mean per-class recall (balanced accuracy, percent) on a split: stored, else from the per-class table."""
    stored = model["metrics"].get(split, {}).get("mean_recall")
    if stored is not None:
        return stored
    rows = [r for r in model.get("per_class", {}).get(split, {}).values() if r["support"] > 0]
    return round(sum(r["recall"] for r in rows) / len(rows), 2) if rows else None


def file_mb(model: dict) -> float | None:
    """The checkpoint's size in MB: recorded by evaluate, else read from the file when it is on disk."""
    if model.get("file_mb") is not None:
        return model["file_mb"]
    path = Path(str(model.get("checkpoint", "")))
    path = path if path.is_absolute() else REPO_ROOT / path
    return round(path.stat().st_size / 1e6, 2) if not model.get("members") and path.is_file() else None


BACKEND_LATENCY = {"torch": "batch1", "onnxruntime": "onnxruntime_batch1"}  # backend -> its latency key in summary.json


def fastest_backend(model: dict) -> tuple[str | None, float | None]:
    """(backend, CPU ms per face at batch 1) of the faster backend measured for a summary entry; (None, None) unmeasured."""
    latency = model.get("latency_ms_per_face") or {}
    measured = [(latency[key], backend) for backend, key in BACKEND_LATENCY.items() if latency.get(key) is not None]
    return (min(measured)[1], min(measured)[0]) if measured else (None, None)


def tier_candidates(models: list[dict], tier: Tier = LIVE) -> pd.DataFrame:
    """model, ms/face, backend, MB, the rule's metric, eligible: every summary entry the tier's rule looks at, best first."""
    score_column = f"{tier.metric_title} % ({tier.split})"
    rows = []
    for m in models:
        backend, latency = fastest_backend(m)
        score = mean_recall(m, tier.split) if tier.metric == "mean_recall" else m["metrics"].get(tier.split, {}).get("accuracy")
        size = file_mb(m)
        single = not m.get("members") and m.get("dataset", "fer2013") == tier.dataset
        eligible = (single and latency is not None and latency <= tier.max_ms and score is not None
                    and (tier.max_mb is None or (size is not None and size <= tier.max_mb)))
        rows.append({"model": m["name"], "ms/face (batch 1)": latency, "backend": backend, "tta": m.get("tta") or "none", "MB": size,
                     score_column: score, "eligible": eligible})
    table = pd.DataFrame(rows, columns=["model", "ms/face (batch 1)", "backend", "tta", "MB", score_column, "eligible"])
    return table.sort_values(["eligible", score_column], ascending=False, na_position="last").reset_index(drop=True)


def tier_choice(models: list[dict], tier: Tier = LIVE) -> str | None:
    """The model the tier's rule picks (None when no model is eligible)."""
    table = tier_candidates(models, tier)
    eligible = table[table["eligible"]]
    return str(eligible.iloc[0]["model"]) if len(eligible) else None


def default_candidates(models: list[dict]) -> pd.DataFrame:
    """The live tier's candidates (the app's default)."""
    return tier_candidates(models, LIVE)


def rule_choice(models: list[dict]) -> str | None:
    """The model the default (live tier) rule picks."""
    return tier_choice(models, LIVE)


def reported_split(model: dict) -> str | None:
    """The split a model is reported on: one it was not selected on, a PrivateTest first (None when it has no other)."""
    others = [s for s in model["metrics"] if s != model["selection_split"]]
    return next((s for s in others if s.endswith("private_test")), others[0] if others else None)


def is_shipped(model: dict, shipped: set[str] | None = None) -> bool:
    """A single model whose checkpoint ships: among `shipped` names (what git tracks), else on disk in checkpoints/."""
    if model.get("members"):
        return False
    return model["name"] in shipped if shipped is not None else (CHECKPOINT_DIR / f"{model['name']}.pt").is_file()


def report_order(model: dict) -> tuple:
    """Sort key for result tables: FER2013 first, then other datasets, each by the reported accuracy, best first."""
    dataset = model.get("dataset") or "fer2013"
    reported = model["metrics"].get(reported_split(model) or "", {}).get("accuracy")
    return (dataset != "fer2013", dataset, -(reported if reported is not None else -1.0))
