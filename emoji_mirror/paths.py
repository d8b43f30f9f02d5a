"""Resolve checkpoint names and paths the same way wherever the app or CLI is started from."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
CHECKPOINT_ENV = "EMOJI_MIRROR_CHECKPOINT"
# Preferred default checkpoints, best on the selection split (PublicTest) first; the first one present is used.
DEFAULT_CHECKPOINTS = ("attention_cnn_ours", "attention_cnn", "baseline_cnn")


def list_checkpoints(directory: Path = CHECKPOINT_DIR) -> list[Path]:
    """Checkpoint files shipped in (or trained into) checkpoints/, sorted by name."""
    return sorted(directory.glob("*.pt")) if directory.is_dir() else []


def resolve_checkpoint(spec: str | os.PathLike | None = None) -> Path:
    """Turn a registry/run name, a path (absolute, ~, relative to cwd or repo), or $EMOJI_MIRROR_CHECKPOINT into a file.

    With no spec and no environment variable, the first of DEFAULT_CHECKPOINTS present is used.
    Raises FileNotFoundError listing every place that was tried.
    """
    spec = spec or os.environ.get(CHECKPOINT_ENV)
    if not spec:
        for name in DEFAULT_CHECKPOINTS:
            if (CHECKPOINT_DIR / f"{name}.pt").is_file():
                return CHECKPOINT_DIR / f"{name}.pt"
        available = ", ".join(p.name for p in list_checkpoints()) or "none"
        raise FileNotFoundError(f"no default checkpoint in {CHECKPOINT_DIR} (available: {available}); train one with `python -m training.train`")
    raw = Path(os.path.expandvars(str(spec))).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, REPO_ROOT / raw, CHECKPOINT_DIR / raw]
    if not raw.suffix:
        candidates.append(CHECKPOINT_DIR / f"{raw.name}.pt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"checkpoint {str(spec)!r} not found; tried:\n  {tried}")
