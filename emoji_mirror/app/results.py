"""Load and check results/summary.json (written by `python -m training.evaluate`) and shape it into tables for the comparison page."""

from __future__ import annotations

import json
import os
import reprlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pandas.io.formats.style import Styler

from ..schemas import summary_problem
from ..default_rule import TIERS, fastest_backend, is_shipped, report_order, reported_split
from ..paths import REPO_ROOT, default_checkpoint

RESULTS_ENV = "EMOJI_MIRROR_RESULTS"
SUMMARY_NAME = "summary.json"
SELECTED_MARK = "★"
EVALUATE_COMMAND = "python -m training.evaluate --checkpoints checkpoints/ --data <path> --out results/"

class ResultsError(ValueError):
    """summary.json exists but is not valid JSON or does not follow the schema."""


@dataclass
class Summary:
    """The evaluated models of one summary.json, and the folder its image paths are relative to."""

    directory: Path
    generated: str | None
    models: list[dict]
    images: dict[str, str]

    def image(self, relative: str | None) -> Path | None:
        """The image file a summary entry names, or None when it is not named, not on disk or outside the results folder."""
        if not relative:
            return None
        path = self.directory / relative
        return path if path.is_file() and path.resolve().is_relative_to(self.directory.resolve()) else None

    def model(self, name: str) -> dict:
        return next(m for m in self.models if m["name"] == name)


def results_dir() -> Path:
    """$EMOJI_MIRROR_RESULTS (relative paths are taken from the repository root), else <repo>/results."""
    configured = os.environ.get(RESULTS_ENV)
    if not configured:
        return REPO_ROOT / "results"
    return REPO_ROOT / Path(configured).expanduser()  # an absolute path replaces REPO_ROOT here


def load_summary(directory: Path | None = None) -> Summary:
    """Read and validate <directory>/summary.json; FileNotFoundError when absent, ResultsError when unusable."""
    directory = directory or results_dir()
    path = directory / SUMMARY_NAME
    try:
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise ResultsError(f"{reprlib.repr(str(path))} is not a regular file; point ${RESULTS_ENV} at a results folder")
        data = json.loads(path.read_text(encoding="utf-8"))
        problem = summary_problem(data)
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"{reprlib.repr(str(path))} not found; create it with `{EVALUATE_COMMAND}`") from None
    except OSError as exc:  # $EMOJI_MIRROR_RESULTS a file (/etc/passwd), too long a name, unreadable
        raise ResultsError(f"{reprlib.repr(str(path))} cannot be read ({exc.strerror or exc}); point ${RESULTS_ENV} at a results folder") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and a number of over 4,300 digits
        raise ResultsError(f"{path} is not valid JSON ({exc}); re-create it with `{EVALUATE_COMMAND}`") from None
    except RecursionError:
        raise ResultsError(f"{path} is nested too deeply to be a summary; re-create it with `{EVALUATE_COMMAND}`") from None
    if problem:
        raise ResultsError(f"{path} does not follow the summary schema at {problem}")
    return Summary(directory, data.get("generated"), data["models"], data.get("images", {}))


# ---------------------------------------------------------------- tables for the page


def splits_of(summary: Summary) -> list[str]:
    """Every dataset/split any model has metrics on: the ones models are reported on first, then in first-seen order."""
    reported = [split for split in map(reported_split, summary.models) if split]
    return list(dict.fromkeys(reported + [split for m in summary.models for split in m["metrics"]]))


def shipped_table(summary: Summary) -> pd.DataFrame:
    """What ships, one row per tier (default_rule.TIERS): the model default.json names (first on disk), its reported split,
    accuracy, macro-F1, CPU ms per face and file size."""
    rows = []
    for name, tier in TIERS.items():
        chosen = default_checkpoint(name) if name != "photo" else default_checkpoint(name) or default_checkpoint("live")
        model = next((m for m in summary.models if chosen is not None and m["name"] == chosen.stem), None)
        split = reported_split(model) if model else None
        scores = model["metrics"].get(split, {}) if model else {}
        backend, latency = fastest_backend(model) if model else (None, None)
        if backend == "onnxruntime" and model.get("int8_activations"):
            backend = "onnxruntime (int8)"
        rows.append({"tier": name, "used by": tier.used_by, "model": chosen.stem if chosen else "–", "reported on": split or "–",
                     "accuracy %": scores.get("accuracy"), "macro-F1 %": scores.get("macro_f1"),
                     "CPU ms/face (batch 1)": latency, "backend": backend or "–",
                     "MB": round(chosen.stat().st_size / 1e6, 1) if chosen else None})
    return pd.DataFrame(rows)


def comparison_table(summary: Summary) -> Styler:
    """One row per model, grouped by dataset (FER2013 first) and sorted by the accuracy on the split it is reported on:
    whether it ships, accuracy and macro-F1 per split (★ on the split the model was selected on), then CPU latency, size,
    selection split, TTA and architecture. Empty cells read "–"."""
    splits = splits_of(summary)
    latency_keys = list(dict.fromkeys(k for m in summary.models for k in m.get("latency_ms_per_face") or {}))

    rows, selected_cells = [], []
    for index, model in enumerate(sorted(summary.models, key=report_order)):
        row = {"model": model["name"], "shipped": "yes" if is_shipped(model) else "no", "dataset": model.get("dataset") or "–"}
        for split in splits:
            scores = model["metrics"].get(split, {})
            row[f"{split} accuracy %"] = scores.get("accuracy")
            row[f"{split} macro-F1 %"] = scores.get("macro_f1")
            if split == model["selection_split"] and scores:
                selected_cells += [(index, f"{split} accuracy %"), (index, f"{split} macro-F1 %")]
        for key in latency_keys:
            row[f"CPU ms/face ({key})"] = (model.get("latency_ms_per_face") or {}).get(key)
        row["params (M)"] = model["params"] / 1e6
        row["selected on"] = model["selection_split"] or "unknown"
        row["TTA"] = model.get("tta") or "–"
        row["arch"] = model.get("arch") or "–"
        rows.append(row)
    table = pd.DataFrame(rows)
    styler = table.style.format(precision=2, na_rep="–").format("{:.2f}", subset=["params (M)"])
    for index, column in selected_cells:
        styler = styler.format(lambda value: f"{value:.2f} {SELECTED_MARK}", subset=pd.IndexSlice[[index], [column]])
    return styler


PHOTO_PREFIX = "photos/"  # splits scored end to end on labelled photos (python -m training.evaluate --photos)


def photo_table(summary: Summary) -> pd.DataFrame:
    """One row per model and photo set: accuracy, mean recall, macro-F1 and faces found (end to end, a photo without a
    face found counted as wrong), then each class's recall; sorted by accuracy within each set. Empty without photo scores."""
    rows = []
    for model in summary.models:
        for split, scores in model["metrics"].items():
            if split.startswith(PHOTO_PREFIX):
                recall = {f"{cls} recall %": row["recall"] for cls, row in (model.get("per_class") or {}).get(split, {}).items() if row["support"]}
                rows.append({"photos": split, "model": model["name"], "shipped": "yes" if is_shipped(model) else "no", "accuracy %": scores["accuracy"],
                             "mean recall %": scores.get("mean_recall"), "macro-F1 %": scores["macro_f1"],
                             "faces found %": scores.get("detection_rate"), "photos (n)": scores.get("n"), **recall})
    table = pd.DataFrame(rows)
    return table.sort_values(["photos", "accuracy %"], ascending=[True, False], ignore_index=True) if rows else table


def accuracy_long(summary: Summary) -> pd.DataFrame:
    """model, split, accuracy, macro_f1, selected: one row per model and split (for the grouped bar chart)."""
    return pd.DataFrame(
        [
            {"model": m["name"], "split": split, "accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "selected": split == m["selection_split"]}
            for m in summary.models
            for split, s in m["metrics"].items()
        ]
    )


def model_points(summary: Summary) -> pd.DataFrame:
    """model, params (M), CPU latency (batch 1 when measured), and accuracy on the reported split (for the scatter charts)."""
    rows = []
    for m in summary.models:
        split = reported_split(m) or m["selection_split"]
        latency = m.get("latency_ms_per_face") or {}
        rows.append(
            {
                "model": m["name"],
                "params (M)": m["params"] / 1e6,
                "latency ms/face": latency.get("batch1", next(iter(latency.values()), None)),
                "split": split,
                "accuracy": m["metrics"][split]["accuracy"],
            }
        )
    return pd.DataFrame(rows)


def below_chance(points: pd.DataFrame, chance: pd.DataFrame) -> pd.Series:
    """For each point of model_points: whether its accuracy is no better than always answering its split's most frequent class."""
    levels = dict(zip(chance["split"], chance["chance"])) if len(chance) else {}
    return pd.Series([acc <= levels.get(split, 0.0) for acc, split in zip(points["accuracy"], points["split"])], index=points.index, dtype=bool)


def chance_levels(summary: Summary) -> pd.DataFrame:
    """split, chance: accuracy (percent) of always answering the split's most frequent class, from per-class supports."""
    rates = {}
    for model in summary.models:
        for split, per_class in model.get("per_class", {}).items():
            supports = [scores["support"] for scores in per_class.values()]
            if split not in rates and sum(supports):
                rates[split] = 100.0 * max(supports) / sum(supports)
    return pd.DataFrame({"split": list(rates), "chance": list(rates.values())})


def per_class_table(model: dict, split: str) -> pd.DataFrame:
    """Precision, recall, F1 and support per class on one split."""
    return pd.DataFrame.from_dict(model["per_class"][split], orient="index").rename_axis("class").reset_index()


def confusion_long(model: dict, split: str) -> pd.DataFrame:
    """true, predicted, count and percent of the true row: one row per matrix cell (for the heatmap)."""
    classes = model["classes"]
    rows = []
    for true, counts in zip(classes, model["confusion_matrix"][split]):
        total = sum(counts)
        for predicted, count in zip(classes, counts):
            rows.append({"true": true, "predicted": predicted, "count": count, "row %": 100.0 * count / total if total else 0.0})
    return pd.DataFrame(rows)
