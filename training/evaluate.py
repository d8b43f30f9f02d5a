"""Score checkpoints on every labelled test split: `python -m training.evaluate --checkpoints checkpoints --data PATH --out results`."""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import io
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch.utils.benchmark import Timer

from emoji_mirror.checkpoint import CheckpointError, LoadedModel, load_model
from emoji_mirror.labels import FERPLUS_CLASSES
from emoji_mirror.models import count_params
from emoji_mirror.paths import CHECKPOINT_DIR, DEFAULT_FILE, REPO_ROOT, resolve_checkpoint
from emoji_mirror.default_rule import (DEFAULT_RULE, RULE_SPLIT, TIERS, is_shipped, mean_recall, report_order, rule_choice,
                                       tier_candidates, tier_choice)
from emoji_mirror.preprocessing import TTA_MODES, Preprocessing, normalize, predict_proba

from . import report
from .data import DataError, FaceDataset, load_dataset
from .scoring import score, split_probabilities
from .train import pick_device

SUMMARY_FILE = "summary.json"
MARKDOWN_FILE = "results.md"
COMPARISON_FILE = "comparison.webp"
LATENCY_WARMUP_RUNS = 5


# ---------------------------------------------------------------- latency (shared with benchmarks/models.py)


def latency_ms_per_face(model: torch.nn.Module, cfg: Preprocessing, tta: str = "none", batch_sizes=(1, 8), min_run_time: float = 1.0) -> dict[str, float]:
    """CPU milliseconds per face for uint8 crops -> normalise -> probabilities: median of timed blocks, after warm-up."""
    model = copy.deepcopy(model).cpu().eval()
    generator = torch.Generator().manual_seed(0)
    result = {}
    for size in batch_sizes:
        faces = torch.randint(0, 256, (size, cfg.input_size, cfg.input_size), dtype=torch.uint8, generator=generator)
        timer = Timer(
            "predict_proba(model, normalize(faces, cfg), tta)",
            globals={"predict_proba": predict_proba, "normalize": normalize, "model": model, "faces": faces, "cfg": cfg, "tta": tta},
            num_threads=torch.get_num_threads(),
        )
        timer.timeit(LATENCY_WARMUP_RUNS)
        result[f"batch{size}"] = round(timer.blocked_autorange(min_run_time=min_run_time).median * 1000 / size, 3)
    return result


# ---------------------------------------------------------------- finding checkpoints and data


def find_checkpoints(specs: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(given spec, file) for every checkpoint named, plus error lines; a folder means its *.pt and its run folders' best.pt."""
    found, errors = [], []
    for spec in specs:
        folder = Path(spec).expanduser()
        if folder.is_dir():
            files = sorted(folder.glob("*.pt")) + sorted(folder.glob("*/best.pt"))
            if not files:
                errors.append(f"{spec}: folder holds no *.pt checkpoints (nor run folders with best.pt)")
            found += [(str(f), f.resolve()) for f in files]
            continue
        try:
            found.append((spec, resolve_checkpoint(spec)))
        except FileNotFoundError as exc:
            errors.append(str(exc))
    unique, owners = [], {}  # a file named twice is evaluated once; two files may not share a summary name
    for given, path in found:
        name = entry_name(path)
        if name not in owners:
            owners[name] = path
            unique.append((given, path))
        elif owners[name] != path:
            errors.append(f"{given}: its summary name {name!r} is already taken by {owners[name]}; rename one of them")
    return unique, errors


def entry_name(path: Path) -> str:
    """Summary entry name: the file stem, or the run folder's name for a run's best.pt / last.pt."""
    if path.stem == "best":
        return path.parent.name
    if path.stem == "last":
        return f"{path.parent.name}-last"
    return path.stem


def display_path(given: str, path: Path) -> str:
    """The checkpoint path as given, or relative to the repository when the file is inside it."""
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else given


def checkpoint_dataset(loaded: LoadedModel) -> str:
    """Name of the dataset a checkpoint was trained on: its metadata, else guessed from its classes."""
    return loaded.meta.get("dataset") or ("ferplus" if loaded.classes == FERPLUS_CLASSES else "fer2013")


class Datasets:
    """Loads each dataset once, on first use: fer2013 from --data, ferplus from --ferplus."""

    def __init__(self, fer2013: str | None, ferplus: str | None, cache_dir: str | None):
        self.sources = {"fer2013": fer2013, "ferplus": ferplus}
        self.cache_dir = cache_dir
        self.loaded: dict[str, FaceDataset | DataError] = {}

    def get(self, name: str) -> FaceDataset:
        if name not in self.loaded:
            self.loaded[name] = self._load(name)
        if isinstance(self.loaded[name], DataError):
            raise self.loaded[name]
        return self.loaded[name]

    def _load(self, name: str) -> FaceDataset | DataError:
        if name not in self.sources:
            return DataError(f"no loader for dataset {name!r} (known: {', '.join(self.sources)})")
        if name == "ferplus" and not self.sources[name]:
            return DataError("FER+ checkpoints need the FER+ data: pass --ferplus PATH")
        try:
            dataset = load_dataset(self.sources[name], self.cache_dir)
        except DataError as exc:
            return exc
        if dataset.name != name:
            flag = "--ferplus" if name == "ferplus" else "--data"
            return DataError(f"{flag} {self.sources[name]} holds {dataset.name}, not {name}")
        return dataset


# ---------------------------------------------------------------- scoring one checkpoint


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


def train_info(meta: dict, history_file: Path) -> dict:
    """Training facts: from the run's metrics.jsonl beside the checkpoint, else from the history in its metadata."""
    if history_file.is_file():
        history = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
    else:  # an exported checkpoint carries its run's history in its metadata
        history = meta.get("history", [])
    config = meta.get("config", {})
    return {
        "epochs": len(history) or None,
        "best_epoch": meta.get("epoch"),
        "device": config.get("device"),
        "seconds": round(sum(r.get("seconds", 0.0) for r in history), 1) if history else None,
        "config": config,
    }


def per_class_csv(per_class: dict[str, dict]) -> bytes:
    """per_class_<name>.csv: one row per dataset/split and class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "class", "precision", "recall", "f1", "support"])
    for split, rows in per_class.items():
        for name, row in rows.items():
            writer.writerow([split, name, row["precision"], row["recall"], row["f1"], row["support"]])
    return buffer.getvalue().encode()


def write_attention(loaded: LoadedModel, dataset: FaceDataset, scored: dict, device: torch.device, name: str, path: Path) -> None:
    """Attention maps on the fixed faces: the first faces of each class in private_test (else the first scored split)."""
    split = f"{dataset.name}/private_test" if f"{dataset.name}/private_test" in scored else next(iter(scored))
    images, labels = scored[split]
    chosen = report.attention_faces(labels, len(loaded.classes))
    x = normalize(torch.from_numpy(images[chosen]).to(device), loaded.preprocessing)
    maps, predicted, method = report.saliency_maps(loaded.model, x)
    title = f"{name} ({loaded.arch}) on {split}\n{method}"
    fig = report.attention_figure(images[chosen], maps.cpu().numpy(), labels[chosen], predicted.cpu().numpy(), list(loaded.classes), title)
    report.save_figure(fig, path, lossless=False)  # photo-like


def selection_key(meta_selection: str | None, dataset: FaceDataset, scored: dict) -> str:
    """The scored split a model was selected on (TTA is chosen there), else the dataset's public_test."""
    if meta_selection in scored:
        return meta_selection
    fallback = f"{dataset.name}/public_test"
    if fallback in scored:
        return fallback
    raise DataError(f"cannot choose a TTA: {dataset.name} data has neither {meta_selection} nor public_test")


def choose_tta(probabilities, images: np.ndarray, labels: np.ndarray) -> tuple[str, dict[str, float]]:
    """The TTA mode with the best accuracy on a selection split (ties: the cheaper one), and every mode's accuracy."""
    accuracy = {mode: score(probabilities(images, mode), labels)["accuracy"] for mode in TTA_MODES}
    return max(TTA_MODES, key=lambda mode: accuracy[mode]), accuracy


def labelled_splits(dataset: FaceDataset, path: Path | str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every labelled non-train split as dataset/split -> (images, labels)."""
    labelled = {split: data.labelled() for split, data in dataset.splits.items() if split != "train"}
    scored = {f"{dataset.name}/{split}": (data.images, data.labels) for split, data in labelled.items() if len(data)}
    if not scored:
        raise DataError(f"{dataset.name} data has no labelled test splits to score {path} on")
    return scored


def member_dataset(loaded: LoadedModel, datasets: Datasets, path: Path) -> FaceDataset:
    """The dataset a checkpoint was trained on, checked against its classes (warns on another data fingerprint)."""
    dataset = datasets.get(checkpoint_dataset(loaded))
    if tuple(dataset.classes) != loaded.classes:
        raise CheckpointError(f"{path}: classes {list(loaded.classes)} do not match {dataset.name}'s {list(dataset.classes)}")
    trained_on = loaded.meta.get("data_fingerprint")
    if trained_on and trained_on != dataset.fingerprint:
        print(f"warning: {path} was trained on {dataset.name} data with fingerprint {trained_on[:12]}, "
              f"evaluating on data with fingerprint {dataset.fingerprint[:12]}", file=sys.stderr)
    return dataset


def score_splits(probabilities, scored: dict, selection: str | None, dataset: FaceDataset, tta_flag: str, classes) -> tuple[str, dict, dict, dict, dict]:
    """(TTA used, metrics, per-class, confusion, TTA accuracy per mode on the selection split) for every scored split."""
    tta_scores = {}
    tta = tta_flag
    if tta_flag == "auto":
        tta, tta_scores = choose_tta(probabilities, *scored[selection_key(selection, dataset, scored)])
    metrics, per_class, confusion = {}, {}, {}
    for split, (images, labels) in scored.items():
        metrics[split], per_class[split], confusion[split] = split_report(probabilities(images, tta), labels, classes)
    return tta, metrics, per_class, confusion, tta_scores


def write_confusion(name: str, arch: str, tta: str, selection, classes, metrics: dict, per_class: dict, confusion: dict, out: Path) -> dict:
    """per_class_<name>.csv and confusion_<name>.webp (lossless); returns the images entry."""
    images_written = {"confusion": f"confusion_{name}.webp"}
    report.write_atomic(out / f"per_class_{name}.csv", per_class_csv(per_class))
    title = f"{name} ({arch}), TTA {tta}, selected on {selection}"
    report.save_figure(report.confusion_figure(confusion, list(classes), {s: m["accuracy"] for s, m in metrics.items()}, title),
                       out / images_written["confusion"])
    return images_written


_PROBABILITIES: dict[tuple, np.ndarray] = {}  # (checkpoint file, its version, faces digest, TTA) -> probabilities, for this process


def cached_probabilities(path: Path, loaded: LoadedModel, images: np.ndarray, tta: str, device: torch.device) -> np.ndarray:
    """A checkpoint's probabilities on some faces with a TTA mode, computed once per process: a model scored alone and
    again as an ensemble member (and each TTA mode once) costs one pass, not several."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, hashlib.sha1(np.ascontiguousarray(images).data).hexdigest(), tta)
    if key not in _PROBABILITIES:
        _PROBABILITIES[key] = split_probabilities(loaded.model, images, loaded.preprocessing, device, tta)
    return _PROBABILITIES[key]


def evaluate_checkpoint(given: str, path: Path, datasets: Datasets, args: argparse.Namespace, device: torch.device, out: Path) -> dict:
    """Score one checkpoint on its dataset's labelled non-train splits, write its CSV and PNGs, return its summary entry."""
    loaded = load_model(path, device)
    dataset = member_dataset(loaded, datasets, path)
    name = entry_name(path)
    scored = labelled_splits(dataset, path)
    selection = loaded.meta.get("selection_split")

    def probabilities(images, tta):
        return cached_probabilities(path, loaded, images, tta, device)

    tta, metrics, per_class, confusion, tta_scores = score_splits(
        probabilities, scored, selection, dataset, args.tta, loaded.classes)
    images_written = write_confusion(name, loaded.arch, tta, selection, loaded.classes, metrics, per_class, confusion, out)
    images_written["attention"] = f"attention_{name}.webp"
    write_attention(loaded, dataset, scored, device, name, out / images_written["attention"])
    return {
        "name": name,
        "arch": loaded.arch,
        "checkpoint": display_path(given, path),
        "params": count_params(loaded.model),
        "file_mb": round(path.stat().st_size / 1e6, 2),
        "dataset": dataset.name,
        "classes": list(loaded.classes),
        "selection_split": selection,
        "tta": tta,
        **({"tta_accuracy_on_selection": tta_scores} if tta_scores else {}),
        "metrics": metrics,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "latency_ms_per_face": latency_ms_per_face(loaded.model, loaded.preprocessing, tta) if args.latency else None,
        "train": train_info(loaded.meta, path.parent / "metrics.jsonl"),
        "data_fingerprint": loaded.meta.get("data_fingerprint"),
        "commit": loaded.meta.get("commit"),
        "images": images_written,
    }


def evaluate_ensemble(specs: list[str], name: str, datasets: Datasets, args: argparse.Namespace, device: torch.device, out: Path) -> dict:
    """Score the mean of several checkpoints' probabilities like one model (TTA chosen on their common selection split)."""
    members = []
    for spec in specs:
        path = resolve_checkpoint(spec)
        loaded = load_model(path, device)
        members.append((spec, path, loaded, member_dataset(loaded, datasets, path)))
    first = members[0][2]
    for spec, path, loaded, dataset in members[1:]:
        if loaded.classes != first.classes or dataset is not members[0][3]:
            raise CheckpointError(f"ensemble member {spec} was trained on other data or classes than {members[0][0]}")
    selections = {loaded.meta.get("selection_split") for _, _, loaded, _ in members}
    if len(selections) != 1:
        raise CheckpointError(f"ensemble members were selected on different splits ({', '.join(map(str, selections))}); "
                              "an honest ensemble needs one selection split")
    selection = selections.pop()
    dataset = members[0][3]
    scored = labelled_splits(dataset, name)

    def probabilities(images, tta):
        return np.mean([cached_probabilities(path, loaded, images, tta, device) for _, path, loaded, _ in members], axis=0)

    tta, metrics, per_class, confusion, tta_scores = score_splits(
        probabilities, scored, selection, dataset, args.tta, first.classes)
    arch = "ensemble(" + " + ".join(loaded.arch for _, _, loaded, _ in members) + ")"
    latency = None
    if args.latency:
        each = [latency_ms_per_face(loaded.model, loaded.preprocessing, tta) for _, _, loaded, _ in members]
        latency = {key: round(sum(m[key] for m in each), 3) for key in each[0]}
    return {
        "name": name,
        "arch": arch,
        "checkpoint": " + ".join(display_path(spec, path) for spec, path, _, _ in members),
        "members": [entry_name(path) for _, path, _, _ in members],
        "params": sum(count_params(loaded.model) for _, _, loaded, _ in members),
        "dataset": dataset.name,
        "classes": list(first.classes),
        "selection_split": selection,
        "tta": tta,
        **({"tta_accuracy_on_selection": tta_scores} if tta_scores else {}),
        "metrics": metrics,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "latency_ms_per_face": latency,
        "images": write_confusion(name, arch, tta, selection, first.classes, metrics, per_class, confusion, out),
    }


# ---------------------------------------------------------------- summary and table


def read_summary(path: Path) -> list[dict]:
    """Model entries of an existing summary.json (none when absent); DataError when it is unreadable."""
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["models"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable summary ({exc}); fix or delete it, or pass --fresh to replace it") from exc


def merge_models(existing: list[dict], new: list[dict]) -> list[dict]:
    """Entries by name: new ones replace old ones in place, unseen names are appended."""
    fresh = {entry["name"]: entry for entry in new}
    merged = [fresh.pop(entry["name"], entry) for entry in existing]
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
        row.update({"selection split": entry["selection_split"], "TTA": entry["tta"],
                    "epochs (best)": f"{train.get('epochs') or '–'} ({train.get('best_epoch') or '–'})" if train else "–",
                    "training": f"{minutes} on {train.get('device')}" if train.get("device") else "–",
                    "ms/face b1": latency["batch1"] if latency else "–", "ms/face b8": latency["batch8"] if latency else "–"})
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", default=None,
                   help="checkpoint files, names (checkpoints/<name>.pt) or folders (their *.pt and */best.pt); "
                   "default: checkpoints/, or none when --ensemble is given")
    p.add_argument("--ensemble", action="append", default=[], metavar="[NAME=]A,B,...",
                   help="score the mean of these checkpoints' probabilities as one model named NAME (default ensemble_A+B+...); repeatable")
    p.add_argument("--data", help="FER2013 zip, folder or fer2013.csv (default: $EMOJI_MIRROR_DATA)")
    p.add_argument("--ferplus", help="FER+ zip or folder, for checkpoints trained on FER+")
    p.add_argument("--cache-dir", help="where decoded data is cached (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    p.add_argument("--out", default="results", help="folder for summary.json, CSVs and PNGs")
    p.add_argument("--tta", choices=(*TTA_MODES, "auto"), default="none",
                   help="test-time augmentation; auto = the mode with the best accuracy on each model's selection split")
    p.add_argument("--fresh", action="store_true", help="replace summary.json instead of merging into it by model name")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="measure CPU ms per face at batch 1 and 8")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), or a torch device string (latency is always CPU)")
    p.add_argument("--choose-default", action="store_true",
                   help=f"write {DEFAULT_FILE.relative_to(REPO_ROOT)} with the model the default rule picks from the merged summary: {DEFAULT_RULE}")
    args = p.parse_args(argv)
    if args.checkpoints is None:
        args.checkpoints = [] if args.ensemble else [str(CHECKPOINT_DIR)]
    return args


def parse_ensemble(spec: str) -> tuple[str, list[str]]:
    """'NAME=A,B' or 'A,B' -> (name, members); at least two members."""
    name, _, members_text = spec.rpartition("=")
    members = [m.strip() for m in members_text.split(",") if m.strip()]
    if len(members) < 2:
        raise DataError(f"--ensemble {spec}: name at least two checkpoints, comma-separated")
    return name.strip() or "ensemble_" + "+".join(Path(m).stem for m in members), members


def write_default(models: list[dict], path: Path = DEFAULT_FILE) -> str | None:
    """Apply each tier's rule to the summary's models and record the picks (and the rules) in checkpoints/default.json; the
    live tier's pick is the app's default ("checkpoint"). Returns it."""
    choice = rule_choice(models)
    if choice is None:
        print(f"warning: no model meets the default rule ({DEFAULT_RULE}); {path} left as it is", file=sys.stderr)
        return None
    tiers = {name: {"checkpoint": tier_choice(models, tier), "rule": tier.rule,
                    "candidates": tier_candidates(models, tier).to_dict(orient="records")} for name, tier in TIERS.items()}
    record = {"checkpoint": choice, "rule": DEFAULT_RULE, "candidates": tiers["live"]["candidates"], "tiers": tiers,
              "chosen": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    report.write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())
    print(f"default model: {choice} (by the rule: {DEFAULT_RULE}); wrote {path}")
    for name, tier in tiers.items():
        if name != "live":
            print(f"{name} tier: {tier['checkpoint'] or 'no model meets its rule'}")
    return choice


def write_summary(models: list[dict], out: Path) -> None:
    """The results folder's shared files for these (merged) entries: summary.json, results.md and the comparison chart."""
    report.save_figure(report.comparison_figure(models), out / COMPARISON_FILE)
    summary = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": models, "images": {"comparison": COMPARISON_FILE}}
    report.write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    report.write_atomic(out / MARKDOWN_FILE, results_markdown(models).encode())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        existing = [] if args.fresh else read_summary(out / SUMMARY_FILE)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checkpoints, errors = find_checkpoints(args.checkpoints)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    datasets = Datasets(args.data, args.ferplus, args.cache_dir)
    device = pick_device(args.device)
    entries = []
    for given, path in checkpoints:
        print(f"evaluating {given} on {device} (TTA {args.tta}) ...", flush=True)
        try:
            entries.append(evaluate_checkpoint(given, path, datasets, args, device, out))
        except (CheckpointError, DataError) as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    for spec in args.ensemble:
        try:
            name, members = parse_ensemble(spec)
            print(f"evaluating ensemble {name} of {', '.join(members)} on {device} (TTA {args.tta}) ...", flush=True)
            entries.append(evaluate_ensemble(members, name, datasets, args, device, out))
        except (CheckpointError, DataError, FileNotFoundError) as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    if entries:
        models = merge_models(existing, entries)
        write_summary(models, out)
        print(results_table(entries))
        print(f"wrote {out / SUMMARY_FILE} ({len(models)} models)")
        if args.choose_default:
            write_default(models)
    if errors:
        print(f"{len(errors)} checkpoint(s) not evaluated; see the errors above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
