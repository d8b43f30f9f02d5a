"""What travels to the lent GPU machine (tracked + untracked-not-ignored files + carried packs) and the exact calls that run the sprint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from emoji_mirror.paths import REPO_ROOT

from .parts import part_paths
from .plan import PLANS

TRAVEL_LIMIT_MIB = 64.0  # the device tool's limit on the working tree plus carried paths, per call
RESULT_FILES = 8  # what comes back: at most 8 files of 16 MiB each under $OUT
RESULT_FILE_MIB = 16.0
RESULT_TOTAL_MIB = 64.0  # ... and 64 MiB together: a file beyond it does not come back
PACK_DIR = "data/sprint"  # ignored by git (data/), so the packs travel only when a call carries them
SPRINT_TIMEOUT_S = 600
CARRY_PATHS = 8  # the device tool's limit on carried paths per call
MIN_PART_MIB = 8.0  # the smallest pack part worth a call of its own: the tree may weigh up to the limit less this
SLACK_MIB = 0.5  # per call: the parts manifests, and rounding
TREE_ROOM_MIB = TRAVEL_LIMIT_MIB - MIN_PART_MIB - SLACK_MIB  # the most the tree may weigh for the sprint to travel at all


def part_mib(tree_mib: float) -> float:
    """The size of the pack parts for a tree of this size: as large as one call carries beside it."""
    return max(MIN_PART_MIB, TRAVEL_LIMIT_MIB - tree_mib - SLACK_MIB)


def tree_bytes(root: Path = REPO_ROOT, untracked: bool = True) -> int:
    """Bytes of the working tree a device call sends: tracked files present on disk, plus untracked files git does not ignore
    (`untracked=False`: the tracked files alone, what any clone sends)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", *(["--others", "--exclude-standard"] if untracked else [])], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / name).stat().st_size for name in listed if name and (root / name).is_file())


def device_calls(budget_min: float, manifests: dict[str, Path], plan: str, tree_mib: float) -> list[dict]:
    """The device `run` calls, in order: staging calls that carry pack parts (they stay on the warm machine: data/ is ignored),
    then the sprint, carrying the last parts and the manifests; the sprint joins and checks the parts (training/sprint/parts.py).

    Parts are grouped greedily into calls that fit beside the tree; the packs a plan does not need do not travel."""
    needed = [name for name in ("ferplus", "fer2013") if name in manifests and any(job.dataset == name for job in PLANS[plan][0])]
    room = (TRAVEL_LIMIT_MIB - tree_mib - SLACK_MIB) * 2**20
    groups, current, used = [], [], 0
    for part in (p for name in needed for p in part_paths(manifests[name])):
        size = part.stat().st_size if part.is_file() else room
        if current and (used + size > room or len(current) >= CARRY_PATHS - len(needed)):
            groups.append(current)
            current, used = [], 0
        current.append(part)
        used += size
    groups.append(current)

    def carried(paths):
        return [Path(PACK_DIR, p.name).as_posix() for p in paths]

    calls = [{"command": f"ls -l {PACK_DIR}", "carry": carried(group), "timeout_s": 60} for group in groups[:-1]]
    plan_flag = "" if plan == "accuracy" else f" --plan {plan}"
    calls.append({"command": f'python -m training.sprint{plan_flag} --budget-min {budget_min:g} --packs {PACK_DIR} --cache-dir runs/sprint_cache --out "$OUT"',
                  "carry": carried(groups[-1] + [manifests[name] for name in needed]), "timeout_s": SPRINT_TIMEOUT_S})
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
