"""What travels to the lent GPU machine (tracked + untracked-not-ignored files + carried packs) and the exact calls that run the sprint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .sprint_plan import PLANS

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAVEL_LIMIT_MIB = 64.0  # the device tool's limit on the working tree plus carried paths, per call
RESULT_FILES = 8  # what comes back: at most 8 files of 16 MiB each under $OUT
RESULT_FILE_MIB = 16.0
RESULT_TOTAL_MIB = 64.0  # ... and 64 MiB together: a file beyond it does not come back
PACK_DIR = "data/sprint"  # ignored by git (data/), so the packs travel only when a call carries them
SPRINT_TIMEOUT_S = 600
FER2013_PACK_MIB = 44.3  # measured: train + PublicTest as their original JPEGs, xz
FERPLUS_PACK_MIB = 46.5  # measured: train + Valid as labelled pixels, xz (the larger pack: it sets the room the tree has)
TREE_ROOM_MIB = TRAVEL_LIMIT_MIB - max(FER2013_PACK_MIB, FERPLUS_PACK_MIB)  # the most the tree may weigh for every call to fit


def tree_bytes(root: Path = REPO_ROOT, untracked: bool = True) -> int:
    """Bytes of the working tree a device call sends: tracked files present on disk, plus untracked files git does not ignore
    (`untracked=False`: the tracked files alone, what any clone sends)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", *(["--others", "--exclude-standard"] if untracked else [])], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / name).stat().st_size for name in listed if name and (root / name).is_file())


def device_calls(budget_min: float, packs: dict[str, Path], plan: str = "accuracy") -> list[dict]:
    """The device `run` calls, in order: FER+'s pack first (it stays on the warm machine: data/ is ignored), then the sprint with FER2013's.

    The two packs do not fit one call beside the tree (64 MiB), so FER+ travels in a short call just before the sprint; a plan
    without FER+ jobs skips that call."""
    calls = []
    plan_flag = "" if plan == "accuracy" else f" --plan {plan}"
    if "ferplus" in packs and any(job.dataset == "ferplus" for job in PLANS[plan][0]):
        calls.append({"command": f"ls -l {PACK_DIR}", "carry": [f"{PACK_DIR}/{packs['ferplus'].name}"], "timeout_s": 60})
    calls.append({"command": f'python -m training.sprint{plan_flag} --budget-min {budget_min:g} --packs {PACK_DIR} --cache-dir runs/sprint_cache --out "$OUT"',
                  "carry": [f"{PACK_DIR}/{packs['fer2013'].name}"], "timeout_s": SPRINT_TIMEOUT_S})
    return calls


def travel_report(calls: list[dict], root: Path = REPO_ROOT) -> tuple[str, bool]:
    """Lines with each call's size (tree + carried) against the limit, and whether every call fits."""
    tree = tree_bytes(root) / 2**20
    lines, fits = [f"working tree (tracked + untracked-not-ignored): {tree:.1f} MiB"], True
    for i, call in enumerate(calls, 1):
        carried = sum((root / p).stat().st_size for p in call["carry"] if (root / p).is_file()) / 2**20
        total = tree + carried
        fits &= total <= TRAVEL_LIMIT_MIB
        lines.append(f"call {i}: {tree:.1f} + {carried:.1f} MiB carried = {total:.1f} MiB of {TRAVEL_LIMIT_MIB:.0f} "
                     f"({'fits' if total <= TRAVEL_LIMIT_MIB else 'TOO BIG'})")
        lines.append(f"  run {json.dumps(call)}")
    return "\n".join(lines), fits
