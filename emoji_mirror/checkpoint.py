"""Checkpoint format: weights plus metadata; atomic saving and safe (weights_only) loading with clear errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .fileio import atomic_open
from .schemas import FORMAT, VERSION, checkpoint_problem
from .models import count_params, create_model, model_entry
from .preprocessing import Preprocessing, normalize


PROBE_LEVELS = (0, 128, 255)  # the grey levels of the faces a checkpoint is tried on when it is loaded
MAX_PARAMS = 50_000_000  # ResNet-18 is 11M; a checkpoint asking for more is refused before the model is built
MAX_FILE_BYTES = 1 << 30  # 50M fp32 parameters with a run's training state (EMA, raw weights, momentum) fit; larger is refused unread


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, foreign, breaks the checkpoint schema or does not fit its architecture."""


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
    """torch.save through fileio.atomic_open: a kill never leaves half a file."""
    try:
        with atomic_open(path) as f:
            torch.save(obj, f)
    except RuntimeError as exc:  # torch's writer on a full disk: "unexpected pos ..."
        raise OSError(f"could not write {path}: {first_line(exc)} (is the disk full?)") from exc


def half_state_dict(state: dict) -> dict:
    """The weights with every floating-point tensor stored fp16 (half the file; widened again at load)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def quantize_int8(payload: dict) -> dict:
    """The checkpoint with every weight of 2+ dimensions (convolutions, linear layers) stored as int8 with a symmetric
    per-output-channel scale (`int8_scales`), and the rest fp16: about a quarter of the fp32 file. Loading restores
    float weights (value x scale); no int8 kernels are needed, so accuracy is all that changes (measure it)."""
    state, scales = {}, {}
    for name, value in float_state_dict(payload).items():  # an int8 or fp16 file is widened first, then stored again
        if value.is_floating_point() and value.dim() >= 2:
            reduce = tuple(range(1, value.dim()))
            scale = value.abs().amax(dim=reduce, keepdim=True) / 127
            state[name] = torch.round(value / torch.where(scale > 0, scale, 1)).clamp(-127, 127).to(torch.int8)
            scales[name] = scale
        else:
            state[name] = value
    return {**payload, "state_dict": half_state_dict(state), "int8_scales": scales}  # the rest (biases, norms) fp16


def float_state_dict(payload: dict) -> dict:
    """The checkpoint's weights as float32 (fp16 widened, int8 restored with its scales), ready for load_state_dict."""
    scales = payload.get("int8_scales", {})
    return {k: v.float() * scales[k] if k in scales else v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


def checkpoint_payload(model: nn.Module, arch: str, arch_kwargs: dict, classes, preprocessing: Preprocessing, meta: dict) -> dict:
    """The dict a checkpoint file holds: format tag, how to rebuild the model, its weights and metadata."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
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


def size_problem(arch: str, num_classes: int, kwargs: dict) -> str | None:
    """'build a ...' when these settings ask for more than MAX_PARAMS parameters, counted on the meta device (nothing is
    allocated); None when they fit. Shared by the checkpoint loader and the trainer's command line."""
    with torch.device("meta"):
        asked = count_params(create_model(arch, num_classes=num_classes, **kwargs))
    if asked > MAX_PARAMS:
        return f"build a {asked / 1e6:.0f}M-parameter {arch!r}; this code builds at most {MAX_PARAMS / 1e6:.0f}M (refused before building it)"
    return None


def probe_faces(preprocessing: Preprocessing) -> torch.Tensor:
    """Plain black, grey and white faces, normalised: what every checkpoint must score with finite numbers before it is used."""
    size = preprocessing.input_size
    return normalize(torch.tensor(PROBE_LEVELS, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, size, size), preprocessing)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when the message is empty."""
    return next(iter(str(exc).strip().splitlines()), type(exc).__name__)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict safely (weights_only=True) and check it against the schema (schemas.py); every
    failure is a CheckpointError of one sentence."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path} is {size / 2**30:.1f} GiB; checkpoints are at most {MAX_FILE_BYTES / 2**30:.0f} GiB (refused unread)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated, corrupt or unsafe): {first_line(exc)}") from exc
    problem = checkpoint_problem(payload)
    if problem:
        raise CheckpointError(f"{path} {problem}")
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model a checkpoint names, load its weights, check that it runs on its own input size, return it in eval mode."""
    return model_from_payload(read_checkpoint(path), path, device)


def model_from_payload(payload: dict, path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """load_model for a payload read_checkpoint already gave (from `path`, which the errors name)."""
    arch, classes = payload["arch"], tuple(payload["classes"])
    init_only = model_entry(arch).init_only  # never a download or a file chosen by the checkpoint; its weights replace them
    kwargs = {k: v for k, v in payload.get("arch_kwargs", {}).items() if k not in init_only}
    preprocessing = Preprocessing.from_dict(payload.get("preprocessing", {}))
    try:
        problem = size_problem(arch, len(classes), kwargs)
        if problem:
            raise CheckpointError(f"{path}: its settings {problem}")
        model = create_model(arch, num_classes=len(classes), **kwargs)
        weights, expected = float_state_dict(payload), model.state_dict()
        for name, value in weights.items():
            if name in expected and expected[name].is_floating_point() and not value.is_floating_point():
                raise CheckpointError(f"{path}: weight {name} is stored as {value.dtype}, not floating point "
                                      "(int8 weights need their scales in int8_scales)")
        model.load_state_dict(weights)
        model.eval()
        with torch.inference_mode():
            scores = model(probe_faces(preprocessing))
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise CheckpointError(f"{path}: its weights and settings do not fit architecture {arch!r}: {first_line(exc)}") from exc
    if tuple(scores.shape) != (len(PROBE_LEVELS), len(classes)):
        raise CheckpointError(f"{path}: architecture {arch!r} gives {tuple(scores.shape[1:])} scores for one face, not one per class ({len(classes)})")
    if not torch.isfinite(scores).all():
        raise CheckpointError(f"{path}: gives NaN or infinite scores for plain black, grey and white faces (its weights or preprocessing are broken)")
    model.to(device, memory_format=torch.channels_last)  # oneDNN's fast layout: about 2x faster per face on CPU at batch 1
    return LoadedModel(model, arch, classes, preprocessing, payload.get("meta", {}), Path(path))
