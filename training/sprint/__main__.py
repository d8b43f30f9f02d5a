"""`python -m training.sprint`: train the plan on a lent GPU inside a budget; --pack, --import DIR, --smoke. See README, "GPU sprint"."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from emoji_mirror.checkpoint import CheckpointError
from emoji_mirror.preprocessing import TTA_MODES

from ..data import DataError, load_dataset, resolve_data_path
from ..data.pack import PACK_SUFFIX, describe, write_pack
from .device import PACK_DIR, device_calls, part_mib, travel_report, tree_bytes
from .home import import_sprint
from .parts import split_file
from .plan import PLANS
from .run import run
from .smoke import smoke


def pack(args) -> int:
    """Make (or keep, when newer than their sources) the data packs, then print what travels and the exact device calls."""
    sources = {"fer2013": args.data, "ferplus": args.ferplus}
    packs = {}
    for name, source in sources.items():
        if not source:
            continue
        path, src = Path(args.packs) / f"{name}{PACK_SUFFIX}", resolve_data_path(source)
        if not path.is_file() or path.stat().st_mtime < src.stat().st_mtime:
            print(f"packing {src} ...", flush=True)
            write_pack(src, load_dataset(src, args.cache_dir), path)
        packs[name] = path
        print(describe(path))
    if "fer2013" not in packs:
        raise DataError("--pack needs FER2013: pass --data PATH (and --ferplus PATH for the FER+ job)")
    tree = tree_bytes() / 2**20
    manifests = {name: split_file(path, int(part_mib(tree) * 2**20)) for name, path in packs.items()}  # parts that fit beside the tree
    report, fits = travel_report(device_calls(args.budget_min, manifests, args.plan, tree))
    print(report)
    return 0 if fits else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.sprint", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--pack", action="store_true", help="make the data packs in --packs from --data/--ferplus; print sizes and the device calls")
    mode.add_argument("--import", dest="import_dir", metavar="DIR", help="re-evaluate a sprint's returned files here, check them, install them")
    mode.add_argument("--smoke", action="store_true", help="the whole path on this CPU with tiny data and models (tmp --workdir)")
    p.add_argument("--plan", choices=sorted(PLANS), default="accuracy",
                   help="what to train: accuracy (the seven-model accuracy set), seeds (more resnet18_fer seeds for the ensemble), "
                        "teachers (the ensemble's members again, returning their soft labels) or students (each tier distilled "
                        "from the tracked soft labels)")
    p.add_argument("--budget-min", type=float, default=8.0, help="wall-clock minutes for the whole sprint (training stops on it, not on a crash)")
    p.add_argument("--out", default=os.environ.get("OUT", "runs/sprint_out"), help="where the (at most 8) returned files go (default: $OUT)")
    p.add_argument("--packs", default=PACK_DIR, help="folder of the *.sprintpack files")
    p.add_argument("--workdir", default=None, help="scratch folder (runs, logs; default runs/sprint, or a temporary one for --smoke)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), or a torch device string")
    p.add_argument("--cache-dir", default=None, help="decoded-data cache (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    p.add_argument("--data", default=os.environ.get("EMOJI_MIRROR_DATA"), help="FER2013 zip/folder/csv (--pack, --import)")
    p.add_argument("--ferplus", default=None, help="FER+ zip or folder (--pack, --import)")
    p.add_argument("--checkpoint-dir", default="checkpoints", help="--import: where the checkpoints, cards and default.json go")
    p.add_argument("--results", default="results", help="--import: the results folder whose summary.json is merged")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="--import: measure CPU ms per face (the default rule needs it)")
    p.add_argument("--tta", choices=("auto", *TTA_MODES), default="auto",
                   help="--import: auto re-scores every TTA mode and reports with the device's choice; one mode checks and reports only "
                        "that one (ten-crop on an 11M-parameter model takes this CPU about 20 minutes a split)")
    args = p.parse_args(argv)
    if args.budget_min <= 0:
        p.error(f"--budget-min must be positive (got {args.budget_min:g})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.pack:
            return pack(args)
        if args.import_dir:
            return import_sprint(Path(args.import_dir), args.data, args.ferplus, args.cache_dir, Path(args.checkpoint_dir),
                                 Path(args.results), Path(args.workdir or "runs/sprint_import"), args.latency, args.tta)
        if args.smoke:
            torch.set_num_threads(1)  # tiny tensors: more threads only wait on each other (the workers get one each too)
            with tempfile.TemporaryDirectory(prefix="sprint-smoke-") as tmp:
                args.workdir, args.device = args.workdir or tmp, "cpu"
                return smoke(args)
        args.workdir = args.workdir or "runs/sprint"
        return run(args, *PLANS[args.plan])
    except (DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
