"""results/summary.json: read, merge by model name, validate (the schema the Compare page reads with) and write, with
results.md, the comparison chart and the tiers' picks in checkpoints/default.json."""

from __future__ import annotations

import fcntl
import json
import math
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from emoji_mirror.default_rule import DEFAULT_RULE, RULE_SPLIT, TIERS, is_shipped, mean_recall, report_order, rule_choice, tier_candidates, tier_choice
from emoji_mirror.fileio import atomic_write
from emoji_mirror.paths import DEFAULT_FILE, REPO_ROOT
from emoji_mirror.schemas import summary_problem

from ..data import DataError
from . import report
from .rebuild import rebuild_command

SUMMARY_FILE = "summary.json"
MARKDOWN_FILE = "results.md"
COMPARISON_FILE = "comparison.webp"
LOCK_FILE = ".summary.lock"


def read_summary(path: Path) -> list[dict]:
    """Model entries of an existing summary.json (none when absent); DataError when it is unreadable."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path} is not a readable summary ({exc}); fix or delete it, or pass --fresh to replace it") from exc
    problem = summary_problem(data)
    if problem:
        raise DataError(f"{path} does not follow the summary schema at {problem}; fix or delete it, or pass --fresh to replace it")
    return list(data["models"])


SPLIT_FIELDS = ("metrics", "per_class", "confusion_matrix")  # keyed by dataset/split: merged split by split


def merge_entry(old: dict, new: dict) -> dict:
    """The new entry, keeping the old one's scores on splits it was not scored on (photos/jaffe beside fer2013/*)."""
    if old.get("classes") != new.get("classes"):
        return new
    return {**old, **new, **{key: {**old.get(key, {}), **new[key]} for key in SPLIT_FIELDS if key in new}}


def merge_models(existing: list[dict], new: list[dict]) -> list[dict]:
    """Entries by name: new ones merged into old ones in place (merge_entry), unseen names appended."""
    fresh = {entry["name"]: entry for entry in new}
    merged = [merge_entry(entry, fresh.pop(entry["name"])) if entry["name"] in fresh else entry for entry in existing]
    return merged + list(fresh.values())


def tracked_checkpoints() -> set[str] | None:
    """Names of the checkpoints git tracks in checkpoints/ (what a fresh clone ships); None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "checkpoints"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {Path(name).stem for name in listed.split() if name.endswith(".pt")}


def _table_rows(entries: list[dict]) -> list[dict]:
    """One row per model; every accuracy column names its dataset/split, '*' marks the model's selection split."""
    rows, shipped = [], tracked_checkpoints()
    for entry in entries:
        row = {"model": entry["name"], "shipped": "yes" if is_shipped(entry, shipped) else "no", "params": f"{entry['params'] / 1e6:.2f}M"}
        for split, m in entry["metrics"].items():
            mark = "*" if split == entry["selection_split"] else ""
            row[f"{split} acc%"] = f"{m['accuracy']:.2f}{mark}"
            row[f"{split} F1%"] = f"{m['macro_f1']:.2f}{mark}"
        recall = mean_recall(entry, RULE_SPLIT)
        mark = "*" if RULE_SPLIT == entry["selection_split"] else ""
        row[f"{RULE_SPLIT} mean recall%"] = f"{recall:.2f}{mark}" if recall is not None else "–"
        latency, train = entry["latency_ms_per_face"], entry.get("train") or {}
        minutes = f"{train['seconds'] / 60:.0f} min" if train.get("seconds") else "–"
        row.update({"selection split": entry["selection_split"], "TTA": entry.get("tta", "none"),
                    "epochs (best)": f"{train.get('epochs') or '–'} ({train.get('best_epoch') or '–'})" if train else "–",
                    "training": f"{minutes} on {train.get('device')}" if train.get("device") else "–",
                    "ms/face b1": (latency or {}).get("batch1", "–"), "ms/face b8": (latency or {}).get("batch8", "–")})
        rows.append(row)
    return rows


SELECTION_NOTE = "* = the checkpoint was selected (early stopping / best epoch) on this split: not an unbiased estimate"


def results_table(entries: list[dict]) -> str:
    """The results as a plain-text table for the terminal."""
    return f"{pd.DataFrame(_table_rows(entries)).fillna('–').to_string(index=False)}\n{SELECTION_NOTE}"


def results_markdown(entries: list[dict]) -> str:
    """The results as a Markdown table (results/results.md, pasted into the README): FER2013 first, then FER+, each sorted
    by the accuracy on the split the model is reported on, with whether it ships."""
    frame = pd.DataFrame(_table_rows(sorted(entries, key=report_order))).fillna("–").astype(str)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + f"\n\n{SELECTION_NOTE}.\n"


def add_rebuild_commands(models: list[dict]) -> None:
    """Give every entry whose checkpoint does not ship the command that trains it again ("rebuild"), where what is tracked
    can; the Compare page shows it."""
    shipped = tracked_checkpoints() or set()
    for model in models:
        command = None if model["name"] in shipped else rebuild_command(model, models, shipped)
        if command:
            model["rebuild"] = command
        else:
            model.pop("rebuild", None)


def write_summary(models: list[dict], out: Path) -> None:
    """The results folder's shared files for these (merged) entries: summary.json, results.md and the comparison chart."""
    add_rebuild_commands(models)
    report.save_figure(report.comparison_figure(models), out / COMPARISON_FILE)
    summary = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": models, "images": {"comparison": COMPARISON_FILE}}
    problem = summary_problem(summary)
    if problem:  # the reader (the Compare page) would refuse it: never write it
        raise DataError(f"the results do not follow the summary schema at {problem}; {out / SUMMARY_FILE} left as it was")
    atomic_write(out / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    atomic_write(out / MARKDOWN_FILE, results_markdown(models).encode())


def update_summary(out: Path, entries: list[dict], fresh: bool = False) -> list[dict]:
    """Merge entries into out/summary.json by name (or replace it: fresh) and write the results folder's shared files, read
    and written under an exclusive lock on out/.summary.lock: two evaluations into one folder both land. Returns the models."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        models = merge_models([] if fresh else read_summary(out / SUMMARY_FILE), entries)
        write_summary(models, out)
    return models


def strict_records(table) -> list[dict]:
    """A table's rows as dicts for strict JSON: a missing value (NaN) becomes null."""
    return [{key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()} for row in table.to_dict(orient="records")]


def write_default(models: list[dict], path: Path = DEFAULT_FILE) -> str | None:
    """Apply each tier's rule to the summary's models and record the picks (and the rules) in checkpoints/default.json; the
    live tier's pick is the app's default ("checkpoint"). Returns it."""
    choice = rule_choice(models)
    if choice is None:
        print(f"warning: no model meets the default rule ({DEFAULT_RULE}); {path} left as it is", file=sys.stderr)
        return None
    tiers = {name: {"checkpoint": tier_choice(models, tier), "rule": tier.rule,
                    "candidates": strict_records(tier_candidates(models, tier))} for name, tier in TIERS.items()}
    record = {"checkpoint": choice, "rule": DEFAULT_RULE, "candidates": tiers["live"]["candidates"], "tiers": tiers,
              "chosen": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write(path, (json.dumps(record, indent=2, allow_nan=False) + "\n").encode())
    print(f"default model: {choice} (by the rule: {DEFAULT_RULE}); wrote {path}")
    for name, tier in tiers.items():
        if name != "live":
            print(f"{name} tier: {tier['checkpoint'] or 'no model meets its rule'}")
    return choice
