"""The stated rule that picks the app's default model from results/summary.json entries."""

from __future__ import annotations

import pandas as pd

MAX_DEFAULT_MS_PER_FACE = 2.0
RULE_SPLIT = "fer2013/public_test"
DEFAULT_RULE = (f"the app's default is, among single FER2013 models at <= {MAX_DEFAULT_MS_PER_FACE:g} ms per face (CPU, batch 1), "
                f"the one with the best mean per-class recall on {RULE_SPLIT} (the selection split, never the reported one)")


def mean_recall(model: dict, split: str) -> float | None:
    """Mean per-class recall (balanced accuracy, percent) on a split: stored, else from the per-class table."""
    stored = model["metrics"].get(split, {}).get("mean_recall")
    if stored is not None:
        return stored
    rows = [r for r in model.get("per_class", {}).get(split, {}).values() if r["support"] > 0]
    return round(sum(r["recall"] for r in rows) / len(rows), 2) if rows else None


def default_candidates(models: list[dict]) -> pd.DataFrame:
    """model, ms/face, mean recall on the rule's split, eligible: every summary entry the rule looks at, best first."""
    rows = []
    for m in models:
        latency = (m.get("latency_ms_per_face") or {}).get("batch1")
        recall = mean_recall(m, RULE_SPLIT)
        single = not m.get("members") and m.get("dataset", "fer2013") == "fer2013"
        eligible = single and latency is not None and latency <= MAX_DEFAULT_MS_PER_FACE and recall is not None
        rows.append({"model": m["name"], "ms/face (batch 1)": latency, f"mean recall % ({RULE_SPLIT})": recall, "eligible": eligible})
    table = pd.DataFrame(rows, columns=["model", "ms/face (batch 1)", f"mean recall % ({RULE_SPLIT})", "eligible"])
    return table.sort_values(["eligible", f"mean recall % ({RULE_SPLIT})"], ascending=False, na_position="last").reset_index(drop=True)


def rule_choice(models: list[dict]) -> str | None:
    """The model the default rule picks (None when no model is eligible)."""
    table = default_candidates(models)
    eligible = table[table["eligible"]]
    return str(eligible.iloc[0]["model"]) if len(eligible) else None
