"""Resolve checkpoint names and paths the same way wherever the app or CLI is started from."""

from __future__ import annotations

import json
import os
import re
import reprlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
CHECKPOINT_ENV = "EMOJI_MIRROR_CHECKPOINT"
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RUN_NAME_MAX = 64  # characters: the name becomes folder and file names (runs/<name>/, <name>.pt, the job's files)
# The default model's name, written by `python -m training.evaluate --choose-default` by the rule in the README.
DEFAULT_FILE = CHECKPOINT_DIR / "default.json"
SERVED_TTA = ("none", "flip", "tencrop")  # preprocessing.TTA_MODES, without importing torch here


def list_checkpoints(directory: Path | None = None) -> list[Path]:
    """Checkpoint files shipped in (or trained into) checkpoints/, sorted by name."""
    directory = directory or CHECKPOINT_DIR
    return sorted(directory.glob("*.pt")) if directory.is_dir() else []


def tier_record(tier: str = "live") -> dict:
    """checkpoints/default.json's record for a tier (the live tier is the file's top level, the others are under "tiers");
    empty when absent or unreadable."""
    try:
        record = json.loads(DEFAULT_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if tier != "live":
        record = record.get("tiers") if isinstance(record, dict) else None
        record = record.get(tier) if isinstance(record, dict) else None
    return record if isinstance(record, dict) else {}


def _candidates(record: dict) -> list[dict]:
    return [c for c in record.get("candidates", []) if isinstance(c, dict)] if isinstance(record.get("candidates"), list) else []


def default_checkpoint_names(tier: str = "live") -> list[str]:
    """The names checkpoints/default.json gives for a tier, best first: its choice, then the rule's other eligible candidates
    in rank order (a model that is listed but not shipped falls through to the next); empty when absent or unreadable."""
    record = tier_record(tier)
    names = [record.get("checkpoint")] + [c.get("model") for c in _candidates(record) if c.get("eligible")]
    return [name for name in names if isinstance(name, str) and name and Path(name).name == name]


def served_backend(checkpoint: Path, tier: str = "live") -> str:
    """The backend a shipped checkpoint runs with: "onnxruntime" when the tier's rule measured it faster with ONNX Runtime
    (default.json's candidates say so), else "torch"."""
    if checkpoint.parent.resolve() != CHECKPOINT_DIR.resolve():
        return "torch"
    row = next((c for c in _candidates(tier_record(tier)) if c.get("model") == checkpoint.stem), {})
    return "onnxruntime" if row.get("backend") == "onnxruntime" else "torch"


def served_tta(checkpoint: Path, tier: str = "live") -> str:
    """The test-time augmentation a shipped checkpoint runs with: the one its summary row was scored and timed with, which
    default.json's candidates record ("flip", "tencrop"), else "none" (also for checkpoints outside checkpoints/)."""
    if checkpoint.parent.resolve() != CHECKPOINT_DIR.resolve():
        return "none"
    row = next((c for c in _candidates(tier_record(tier)) if c.get("model") == checkpoint.stem), {})
    return row.get("tta") if row.get("tta") in SERVED_TTA else "none"


def default_checkpoint(tier: str = "live") -> Path | None:
    """The first checkpoint default.json names for the tier that is on disk in checkpoints/ (None when none is)."""
    return next((CHECKPOINT_DIR / f"{n}.pt" for n in default_checkpoint_names(tier) if (CHECKPOINT_DIR / f"{n}.pt").is_file()), None)


def resolve_checkpoint(spec: str | os.PathLike | None = None, tier: str = "live") -> Path:
    """Turn a registry/run name, a path (absolute, ~, relative to cwd or repo), or $EMOJI_MIRROR_CHECKPOINT into a file.

    With no spec and no environment variable, the model checkpoints/default.json names for the tier is used (the photo
    tier falls back to the live one; else the first shipped). Raises FileNotFoundError listing every place that was tried.
    """
    spec = spec or os.environ.get(CHECKPOINT_ENV)
    if not spec:
        chosen = default_checkpoint(tier) or default_checkpoint()
        if chosen:
            return chosen
        shipped = list_checkpoints()
        if shipped:
            return shipped[0]
        available = ", ".join(p.name for p in list_checkpoints()) or "none"
        raise FileNotFoundError(f"no default checkpoint in {CHECKPOINT_DIR} (available: {available}); train one with `python -m training.train`")
    raw = Path(os.path.expandvars(str(spec))).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, REPO_ROOT / raw, CHECKPOINT_DIR / raw]
    if not raw.suffix:
        candidates.append(CHECKPOINT_DIR / f"{raw.name}.pt")
    for candidate in candidates:
        if _is_file(candidate):
            return candidate.resolve()
    tried = "\n  ".join(reprlib.repr(str(c)) for c in candidates)
    raise FileNotFoundError(f"checkpoint {reprlib.repr(str(spec))} not found; tried:\n  {tried}")


def _is_file(path: Path) -> bool:
    """Path.is_file, False for a name the system refuses (too long, an embedded NUL) instead of an OSError/ValueError."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot name a run (a folder under the runs folder and an exported <name>.pt), or None when it can."""
    if not RUN_NAME_PATTERN.fullmatch(name) or name == "jobs":
        return f"run name {name!r}: use letters, digits, '_', '.', '-' (and not 'jobs')"
    if len(name) > RUN_NAME_MAX:
        return f"run name of {len(name)} characters: use at most {RUN_NAME_MAX}"
    return None
