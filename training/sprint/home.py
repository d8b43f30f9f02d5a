"""Bring a GPU sprint home: re-evaluate its checkpoints here on the full data, check them against its numbers, install them."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path

from emoji_mirror.fileio import atomic_write
from emoji_mirror.checkpoint import CheckpointError, atomic_torch_save, load_model, read_checkpoint
from emoji_mirror.paths import REPO_ROOT

from ..data import DataError
from ..distill import load_soft_targets
from ..evaluate.entries import Datasets, evaluate_entry, labelled_splits, member_dataset
from ..evaluate.model_card import render_card
from ..evaluate.scoring import Probabilities, score, split_probabilities
from ..evaluate.summary import SUMMARY_FILE, update_summary, write_default
from .device import TRAVEL_LIMIT_MIB, TREE_ROOM_MIB, tree_bytes
from .parts import file_sha256

TOLERANCE = 0.1  # accuracy points between the device's scores and this machine's
SPRINT_FORMAT = "emoji-mirror-sprint"
SOFT_LABEL_DIR = "soft_labels"  # under the results folder: tracked, so distillation needs no GPU model on disk


def install_soft_labels(src: Path, entries: list[dict], datasets: Datasets, results_dir: Path) -> list[str]:
    """Check each returned soft-label file against this machine's data (fingerprint, shape, distributions) and copy it to
    results/soft_labels/<teacher name>.npz; the problems of those refused."""
    problems = []
    for entry in entries:
        path, target = src / entry["file"], results_dir / SOFT_LABEL_DIR / f"{entry['teacher_name']}.npz"
        try:
            load_soft_targets(path, datasets.get(entry["dataset"]))
        except DataError as exc:
            problems.append(f"{entry['file']}: {exc}")
            print(f"refused {entry['file']}: {exc}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        print(f"soft labels of {', '.join(entry['members'])} ({entry['dataset']}, TTA {entry['tta']}) checked and installed as {display(target)}")
    return problems


def unbundle(src: Path, parts: list[str], staging: Path, sha256: dict[str, str] | None = None) -> list[Path]:
    """Check the returned parts (present; sha256 where the sprint recorded it), join them, check and extract the tar (plain
    files, no paths) into the (new) staging folder; the *.pt found."""
    missing = [p for p in parts if not (src / p).is_file()]
    if missing:
        raise DataError(f"{src} lacks {', '.join(missing)} of the checkpoint bundle")
    damaged = [p for p in parts if sha256 and p in sha256 and file_sha256(src / p) != sha256[p]]
    if damaged:
        raise DataError(f"{src}: {', '.join(damaged)} of the checkpoint bundle arrived damaged (sha256 differs from the device's)")
    staging.mkdir(parents=True)
    joined = staging / "bundle.tar"
    with joined.open("wb") as f:
        for part in parts:
            f.write((src / part).read_bytes())
    with tarfile.open(joined) as tar:
        for member in tar.getmembers():
            if not member.isfile() or Path(member.name).name != member.name:
                raise DataError(f"{src}: the bundle holds {member.name!r}, not a plain file name")
        tar.extractall(staging, filter="data")
    joined.unlink()
    return sorted(staging.glob("*.pt"))


def complete_checkpoint(path: Path, datasets: Datasets) -> None:
    """Score the splits the device did not have (PrivateTest, FER+ test; no TTA, as training does) into the checkpoint, and rewrite its card."""
    loaded = load_model(path)
    dataset = member_dataset(loaded, datasets, path)
    payload = read_checkpoint(path)
    metrics = payload["meta"]["metrics"]
    for split, (images, labels) in labelled_splits(dataset, path).items():
        if split not in metrics:
            metrics[split] = score(split_probabilities(loaded.model, images, loaded.preprocessing), labels)
    atomic_torch_save(payload, path)
    atomic_write(path.with_suffix(".md"), render_card(path))


def mismatches(device: dict, here: dict | None) -> list[str]:
    """How the device's scores of one entry differ from this machine's by more than the tolerance (none: they agree).

    Scored here with every TTA mode (auto), each mode is checked; scored with one mode, that mode is."""
    if here is None:
        return ["not evaluated here"]
    every_mode = bool(here.get("tta_accuracy_on_selection"))
    here_modes = here["tta_accuracy_on_selection"] if every_mode else {here["tta"]: here["metrics"][here["selection_split"]]["accuracy"]}
    checked = device["tta_accuracy_on_selection"] if every_mode else \
        {mode: acc for mode, acc in device["tta_accuracy_on_selection"].items() if mode in here_modes}
    if not checked:
        return [f"the device did not score {here['tta']} TTA on the selection split"]
    found = [f"{mode} TTA on the selection split: {acc:.2f} there, {here_modes.get(mode, float('nan')):.2f} here"
             for mode, acc in checked.items() if not abs(acc - here_modes.get(mode, float("inf"))) <= TOLERANCE]
    if device["tta"] == here["tta"]:
        found += [f"{split}: {m['accuracy']:.2f} there, {here['metrics'][split]['accuracy']:.2f} here"
                  for split, m in device["metrics"].items()
                  if split in here["metrics"] and not abs(m["accuracy"] - here["metrics"][split]["accuracy"]) <= TOLERANCE]
    return found


def display(path: Path) -> str:
    path = path.resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def install(entries: list[dict], staging: Path, staged_results: Path, checkpoint_dir: Path, results_dir: Path) -> None:
    """Copy the accepted checkpoints, cards and result files home, merge results/summary.json and apply the default rule."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        names = entry.get("members") or [entry["name"]]
        if not entry.get("members"):
            for suffix in (".pt", ".md"):
                target = checkpoint_dir / f"{entry['name']}{suffix}"
                print(f"{'replaced' if target.exists() else 'added'} {target}")
                shutil.copy2(staging / f"{entry['name']}{suffix}", target)
        entry["checkpoint"] = " + ".join(display(checkpoint_dir / f"{n}.pt") for n in names)
        for image in [*entry.get("images", {}).values(), f"per_class_{entry['name']}.csv"]:
            shutil.copy2(staged_results / image, results_dir / image)
    models = update_summary(results_dir, entries)
    print(f"merged {len(entries)} entries into {results_dir / SUMMARY_FILE} ({len(models)} models)")
    write_default(models, checkpoint_dir / "default.json")


def import_sprint(src: Path, data, ferplus, cache_dir, checkpoint_dir: Path, results_dir: Path, workdir: Path, latency: bool = True,
                  tta: str = "auto") -> int:
    """Re-evaluate, check (±0.1 accuracy points) and install what a sprint returned; 1 when anything was refused.

    tta "auto" re-scores every mode and reports with the one chosen on the selection split; a fixed mode checks and reports that one."""
    try:
        sprint = json.loads((src / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{src}/summary.json is not a readable sprint summary: {exc}") from exc
    if sprint.get("format") != SPRINT_FORMAT:
        raise DataError(f"{src}/summary.json was not written by `python -m training.sprint`")
    workdir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix="sprint-import-", dir=workdir))
    staging, staged_results = stage / "checkpoints", stage / "results"
    unbundle(src, sprint["bundle"], staging, sprint.get("bundle_sha256"))
    datasets = Datasets(data, ferplus, cache_dir)
    for model in sprint["models"]:
        complete_checkpoint(staging / f"{model['name']}.pt", datasets)
    staged, evaluated = {}, 0
    staged_results.mkdir(parents=True)
    probabilities = Probabilities("cpu")
    named = [(m["name"], [(m["name"], staging / f"{m['name']}.pt")]) for m in sprint["models"]]
    named += [(e["name"], [(n, staging / f"{n}.pt") for n in e["members"]]) for e in sprint["ensembles"]]
    for name, members in named:  # scored here as `python -m training.evaluate` would, into the staging results
        try:
            staged[name] = evaluate_entry(members, name if len(members) > 1 else None, datasets, probabilities, staged_results, tta, latency)
        except (CheckpointError, DataError) as exc:
            print(f"error: {name}: {exc}")
            evaluated = 1
    accepted, refused = [], {}
    for entry in sprint["models"] + sprint["ensembles"]:
        problems = mismatches(entry, staged.get(entry["name"]))
        problems += [f"member {m} refused" for m in entry.get("members", []) if m in refused]
        if problems:
            refused[entry["name"]] = problems
            print(f"refused {entry['name']}: " + "; ".join(problems))
        else:
            accepted.append(staged[entry["name"]])
            print(f"checked {entry['name']}: the device's scores agree within {TOLERANCE} points")
    if accepted:
        install(accepted, staging, staged_results, checkpoint_dir, results_dir)
    soft_problems = install_soft_labels(src, sprint.get("soft_labels", []), datasets, results_dir)
    for job in sprint["failed"] + sprint.get("left_on_device", []):
        print(f"not returned: {job['name']} ({job['status']})")
    tree = tree_bytes() / 2**20
    if tree > TREE_ROOM_MIB:
        print(f"warning: the working tree is now {tree:.1f} MiB; a sprint call carries it plus a pack part of at least "
              f"{TRAVEL_LIMIT_MIB - TREE_ROOM_MIB:.1f} MiB within {TRAVEL_LIMIT_MIB:.0f} MiB, so keep it to {TREE_ROOM_MIB:.1f} MiB "
              f"(leave large checkpoints untracked)")
    return 1 if refused or soft_problems or evaluated != 0 or sprint["failed"] else 0
