"""Score checkpoints on every labelled test split: `python -m training.evaluate --checkpoints checkpoints --data PATH --out results`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoji_mirror.checkpoint import CheckpointError
from emoji_mirror.classifier import EmotionClassifier
from emoji_mirror.detector import FaceDetector
from emoji_mirror.paths import CHECKPOINT_DIR, DEFAULT_FILE, REPO_ROOT, resolve_checkpoint
from emoji_mirror.default_rule import DEFAULT_RULE, TIERS
from emoji_mirror.preprocessing import TTA_MODES

from ..data import DataError
from ..runtime import pick_device
from . import pack_search
from .entries import Datasets, display_path, entry_name, evaluate_entry, find_checkpoints, resolve_members
from .photos import open_photo_set, photo_entry, photo_line, score_photos
from .scoring import Probabilities
from .summary import SUMMARY_FILE, read_summary, results_table, update_summary, write_default


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
    p.add_argument("--photos", metavar="DIR|ZIP",
                   help="labelled photos (<class>/<photo> folders, or a labels.csv with path,label): score each checkpoint end to end as "
                   "the app does (detect, crop, classify; no face found = wrong) into summary.json as photos/<name>; default "
                   "checkpoints: the live and photo tiers' models")
    p.add_argument("--photos-name", help="the photo set's name in photos/<name> (default: the folder or zip name)")
    p.add_argument("--pack-search", action="store_true",
                   help="rank every mean of up to --max-members of --checkpoints by --tier's measure on their selection split and print "
                   "the export command of the best (writes nothing)")
    p.add_argument("--tier", choices=tuple(TIERS), default="live", help="with --pack-search: whose measure ranks the packs")
    p.add_argument("--max-members", type=int, default=4, help="with --pack-search: the largest pack tried")
    p.add_argument("--rows", type=int, default=15, help="with --pack-search: packs printed")
    p.add_argument("--choose-default", action="store_true",
                   help=f"write {DEFAULT_FILE.relative_to(REPO_ROOT)} with the model the default rule picks from the merged summary: {DEFAULT_RULE}")
    args = p.parse_args(argv)
    if args.photos and (args.ensemble or args.tta != "none"):
        p.error("--photos scores single checkpoints the way the app runs them (no --ensemble, no --tta)")
    if args.pack_search and (args.photos or args.ensemble or args.tta != "none" or not args.checkpoints or len(args.checkpoints) < 2):
        p.error("--pack-search ranks packs of two or more --checkpoints (no --photos, --ensemble or --tta)")
    if args.max_members < 1 or args.rows < 1:
        p.error("--max-members and --rows must be at least 1")
    if args.checkpoints is None:
        tiers = dict.fromkeys(str(resolve_checkpoint(None, tier)) for tier in ("live", "photo")) if args.photos else None
        args.checkpoints = [] if args.ensemble else list(tiers) if tiers else [str(CHECKPOINT_DIR)]
    return args


def parse_ensemble(spec: str) -> tuple[str, list[str]]:
    """'NAME=A,B' or 'A,B' -> (name, members); at least two members."""
    name, _, members_text = spec.rpartition("=")
    members = [m.strip() for m in members_text.split(",") if m.strip()]
    if len(members) < 2:
        raise DataError(f"--ensemble {spec}: name at least two checkpoints, comma-separated")
    return name.strip() or "ensemble_" + "+".join(Path(m).stem for m in members), members




def evaluate_photos(args: argparse.Namespace, out: Path, checkpoints: list[tuple[str, Path]], errors: list[str]) -> int:
    """Score each checkpoint on the labelled photos and merge the photos/<name> split into its summary entry."""
    try:
        photo_set = open_photo_set(Path(args.photos), args.photos_name)
        existing = {m["name"]: m for m in read_summary(out / SUMMARY_FILE)}
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    split, entries = f"photos/{photo_set.name}", []
    with FaceDetector() as detector:
        for given, path in checkpoints:
            try:
                # as the Photo page and the CLI run it: the backend and TTA the photo tier's rule measured it with
                classifier = EmotionClassifier.served(path, "photo")
                scores = score_photos(photo_set, classifier, detector)
            except (CheckpointError, DataError) as exc:
                errors.append(str(exc))
                print(f"error: {exc}", file=sys.stderr)
                continue
            for problem in scores.skipped:
                print(f"skipped: {problem}", file=sys.stderr)
            name = entry_name(path)
            entries.append(photo_entry(name, display_path(given, path), classifier, split, scores, existing.get(name)))
            print(photo_line(name, split, entries[-1]["metrics"][split], entries[-1]["per_class"][split]), flush=True)
    if entries:
        try:
            models = update_summary(out, entries)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {out / SUMMARY_FILE} ({len(models)} models)")
    if errors:
        print(f"{len(errors)} checkpoint(s) not evaluated; see the errors above", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pack_search:  # reads checkpoints and data, writes nothing
        checkpoints, errors = find_checkpoints(args.checkpoints)
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 2 if errors else pack_search.main(checkpoints, Datasets(args.data, args.ferplus, args.cache_dir), Probabilities(pick_device(args.device)),
                                                 TIERS[args.tier], args.max_members, args.rows, args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not args.fresh:
            read_summary(out / SUMMARY_FILE)  # a broken summary is reported before hours of scoring, not after
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checkpoints, errors = find_checkpoints(args.checkpoints)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if args.photos:
        return evaluate_photos(args, out, checkpoints, errors)
    datasets = Datasets(args.data, args.ferplus, args.cache_dir)
    device = pick_device(args.device)
    entries = []
    probabilities = Probabilities(device)
    for given, path in checkpoints:
        print(f"evaluating {given} on {device} (TTA {args.tta}) ...", flush=True)
        try:
            entries.append(evaluate_entry([(given, path)], None, datasets, probabilities, out, args.tta, args.latency))
        except (CheckpointError, DataError) as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    for spec in args.ensemble:
        try:
            name, members = parse_ensemble(spec)
            print(f"evaluating ensemble {name} of {', '.join(members)} on {device} (TTA {args.tta}) ...", flush=True)
            entries.append(evaluate_entry(resolve_members(members), name, datasets, probabilities, out, args.tta, args.latency))
        except (CheckpointError, DataError, FileNotFoundError) as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    if entries:
        try:
            models = update_summary(out, entries, args.fresh)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
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

