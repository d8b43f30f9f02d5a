"""Checkpoint format: weights plus metadata; atomic saving and safe (weights_only) loading with clear errors."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .models import create_model
from .preprocessing import Preprocessing

FORMAT = "emoji-mirror-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, foreign or does not fit its architecture."""


@dataclass
class LoadedModel:
    """A ready-to-run model with everything its checkpoint says about it."""

    model: nn.Module
    arch: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    meta: dict
    path: Path


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside `path`, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_payload(model: nn.Module, arch: str, arch_kwargs: dict, classes, preprocessing: Preprocessing, meta: dict, half: bool = False) -> dict:
    """The dict a checkpoint file holds: format tag, how to rebuild the model, its weights and metadata."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "classes": list(classes),
        "preprocessing": preprocessing.to_dict(),
        "meta": meta,
        "state_dict": state,
    }


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict safely (weights_only=True), turning every failure into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated, corrupt or unsafe): {str(exc).splitlines()[0]}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an Emoji Mirror checkpoint (train one with `python -m training.train`)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {payload['version']}; this code reads up to {VERSION}: update Emoji Mirror")
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model a checkpoint names, load its weights, and return it in eval mode."""
    payload = read_checkpoint(path)
    arch, kwargs, classes = payload["arch"], payload.get("arch_kwargs", {}), tuple(payload["classes"])
    try:
        model = create_model(arch, num_classes=len(classes), **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot build architecture {arch!r}: {exc}") from exc
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r}: {str(exc).splitlines()[0]}") from exc
    model.to(device).eval()
    return LoadedModel(model, arch, classes, Preprocessing.from_dict(payload.get("preprocessing", {})), payload.get("meta", {}), Path(path))
