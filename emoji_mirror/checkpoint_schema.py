"""What a checkpoint may contain: its whole structure and values, checked once at load (a checkpoint is untrusted input).

Its scores and classes are also what results/summary.json holds, so results.py builds on them; torch and the model
registry are imported only when a checkpoint is checked, which keeps the Compare page light.
"""

from __future__ import annotations

import math
import reprlib
from functools import cache

from .labels import EMOJI

FORMAT = "emoji-mirror-checkpoint"
VERSION = 1


PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
SCORE_PROPERTIES = {"accuracy": PERCENT, "macro_f1": PERCENT, "n": {"type": "integer", "minimum": 0}}
CLASSES = {"type": "array", "minItems": 2, "maxItems": len(EMOJI), "uniqueItems": True, "items": {"enum": list(EMOJI)}}
# Every field of preprocessing.Preprocessing; a missing one takes the dataclass default, an unknown one is ignored.
PREPROCESSING = {
    "type": "object",
    "properties": {
        "input_size": {"type": "integer", "minimum": 8, "maximum": 512},
        "mean": {"type": "number"},
        "std": {"type": "number", "exclusiveMinimum": 0},
        "face_margin": {"type": "number", "minimum": -0.2, "maximum": 1.0},
        "face_offset_y": {"type": "number", "minimum": -0.5, "maximum": 0.5},
    },
}
OPTIONAL_TEXT = {"type": ["string", "null"]}
META = {
    "type": "object",
    "properties": {
        "metrics": {"type": "object", "additionalProperties": {"type": "object", "properties": SCORE_PROPERTIES}},
        "dataset": {"type": "string"},
        "selection_split": OPTIONAL_TEXT,
        "data_fingerprint": OPTIONAL_TEXT,
        "commit": OPTIONAL_TEXT,
        "epoch": {"type": "integer", "minimum": 0},
        "params": {"type": "integer", "minimum": 0},
        "history": {"type": "array"},
        "config": {"type": "object"},
    },
}
# Other top-level keys (the training state in a run's last.pt: raw_state_dict, ema, optimizer, ...) are not used here.
CHECKPOINT_SCHEMA = {
    "type": "object",
    "required": ["format", "arch", "classes", "state_dict"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"type": "integer", "minimum": 1},
        "arch": {"type": "string"},  # a registered architecture: checked with the registry
        "arch_kwargs": {"type": "object"},  # then checked against what the architecture declares (models/_registry.py)
        "classes": CLASSES,
        "preprocessing": PREPROCESSING,
        "meta": META,
        "state_dict": {"type": "object", "minProperties": 1, "propertyNames": {"type": "string"}},
        "int8_scales": {"type": "object", "propertyNames": {"type": "string"}},  # int8-stored weights: their per-channel scales
    },
}


@cache
def _validator():
    """jsonschema's Draft 2020-12 validator with our types, or None where jsonschema is not installed (then schema_lite checks).

    Numbers must be finite (no NaN or infinity), integers must be ints, and tuples count as arrays (torch.save keeps them)."""
    try:
        from jsonschema import Draft202012Validator, validators
    except ImportError:
        return None
    types = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {
            "number": lambda _, value: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
            "array": lambda _, value: isinstance(value, (list, tuple)),
        }
    )
    return validators.extend(Draft202012Validator, type_checker=types)


def schema_problem(instance: object, schema: dict, prefix: str = "") -> str | None:
    """'where: what' for the most relevant way `instance` breaks `schema`, or None when it follows it."""
    validator = _validator()
    if validator is None:
        from .schema_lite import first_problem

        found = first_problem(instance, schema)
        return None if found is None else f"{'/'.join(str(p) for p in (prefix, *found[0]) if p != '') or 'top level'}: {found[1]}"
    from jsonschema import exceptions

    error = exceptions.best_match(validator(schema).iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(part) for part in (prefix, *error.absolute_path) if part != "") or "top level"
    message = error.message
    if error.validator == "type":  # jsonschema would print the whole value, a list of tensors included
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        finite = " (numbers must be finite)" if isinstance(error.instance, float) and not math.isfinite(error.instance) else ""
        message = f"{reprlib.repr(error.instance)} is not of type {', '.join(map(repr, types))}{finite}"
    return f"{where}: {message}"


def arch_kwargs_schema(entry) -> dict:
    """The kwargs a checkpoint may set for a registered model: those it declares, plus its init-only ones (dropped at load)."""
    return {"type": "object", "properties": {**entry.checkpoint_kwargs, **dict.fromkeys(entry.init_only, {})}, "additionalProperties": False}


def checkpoint_problem(payload: object) -> str | None:
    """Why a loaded checkpoint dict cannot be used, as a predicate ('is not ...', 'has ...'); None when it can."""
    import torch

    from .models import model_entry

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return "is not an Emoji Mirror checkpoint (train one with `python -m training.train`)"
    version = payload.get("version", VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        return f"has checkpoint format version {version}; this code reads up to {VERSION}: update Emoji Mirror"
    problem = schema_problem(payload, CHECKPOINT_SCHEMA)
    if problem:
        return f"is not a valid Emoji Mirror checkpoint ({problem})"
    try:
        entry = model_entry(payload["arch"])
    except ValueError as exc:
        return f"names an architecture this code does not have ({exc})"
    problem = schema_problem(payload.get("arch_kwargs", {}), arch_kwargs_schema(entry), "arch_kwargs")
    if problem:
        return f"is not a valid Emoji Mirror checkpoint ({problem})"
    for name, value in payload["state_dict"].items():
        if not isinstance(value, torch.Tensor):
            return f"is not a valid Emoji Mirror checkpoint (state_dict/{name}: {reprlib.repr(value)} is not a tensor)"
        if value.layout != torch.strided or value.device.type == "meta":
            return f"is not a valid Emoji Mirror checkpoint (state_dict/{name} is a {value.layout} {value.device.type} tensor; weights must be dense)"
        if value.untyped_storage().nbytes() < value.numel() * value.element_size():
            return f"is not a valid Emoji Mirror checkpoint (state_dict/{name} is a view with repeated elements, {tuple(value.shape)} from a smaller storage)"
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"is damaged: its weights ({name}) hold NaN or infinite values"
    return int8_problem(payload["state_dict"], payload.get("int8_scales", {}))


def int8_problem(state_dict: dict, scales: dict) -> str | None:
    """Why the int8-stored weights cannot be restored (a scale for each, finite, >= 0, one per output channel); None when they can."""
    import torch

    for name, scale in scales.items():
        weight = state_dict.get(name)
        if not isinstance(weight, torch.Tensor) or weight.dtype != torch.int8:
            return f"is not a valid Emoji Mirror checkpoint (int8_scales/{name}: no int8 weight of that name in state_dict)"
        if (not isinstance(scale, torch.Tensor) or not scale.is_floating_point() or scale.dim() != weight.dim()
                or scale.shape[0] != weight.shape[0] or any(size != 1 for size in scale.shape[1:])):
            return f"is not a valid Emoji Mirror checkpoint (int8_scales/{name}: not one floating-point scale per output channel)"
        if not torch.isfinite(scale).all() or (scale < 0).any():
            return f"is damaged: the int8 scales of {name} are negative, NaN or infinite"
    return None
