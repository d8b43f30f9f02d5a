"""The two files we read back, as schemas: a checkpoint (untrusted input, checked once at load) and results/summary.json.

Both are validated with jsonschema where it is installed; where it is not (a bare GPU image), the plain checks of what
loading needs run instead, in code. The writer of summary.json (training.evaluate) and its reader (the Compare page)
validate with the same `summary_problem`. torch and the model registry are imported only when a checkpoint is checked,
which keeps the Compare page light.
"""

from __future__ import annotations

import math
import reprlib
from functools import cache

from .labels import EMOJI

FORMAT = "emoji-mirror-checkpoint"
VERSION = 1


PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
COUNT = {"type": "integer", "minimum": 0, "maximum": 10**9}  # images, votes, confusion counts: far above any dataset, far below overflow
PARAMS = {"type": "integer", "minimum": 0, "maximum": 10**12}
SCORE_PROPERTIES = {"accuracy": PERCENT, "macro_f1": PERCENT, "mean_recall": PERCENT, "n": COUNT, "detection_rate": PERCENT}
CLASSES = {"type": "array", "minItems": 2, "maxItems": len(EMOJI), "uniqueItems": True, "items": {"enum": list(EMOJI)}}
# Every field of preprocessing.Preprocessing; a missing one takes the dataclass default, an unknown one is ignored.
PREPROCESSING = {
    "type": "object",
    "properties": {
        "input_size": {"type": "integer", "minimum": 8, "maximum": 512},
        # inputs are scaled to [0, 1] first: wider bounds could only overflow the network (NaN scores), never help it
        "mean": {"type": "number", "minimum": -1, "maximum": 2},
        "std": {"type": "number", "minimum": 0.01, "maximum": 10},
        "face_margin": {"type": "number", "minimum": -0.2, "maximum": 1.0},
        "face_offset_y": {"type": "number", "minimum": -0.5, "maximum": 0.5},
        "photometry": {"enum": ["none", "standardize"]},
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
        "epoch": COUNT,
        "params": PARAMS,
        "history": {"type": "array"},
        "config": {"type": "object"},
        # ONNX Runtime's calibration cache (activation ranges) and the wiring of the graph it was measured on
        "onnx_int8": {"type": "object", "required": ["signature", "cache"],
                      "properties": {"signature": {"type": "string"}, "cache": {"type": "object"}, "faces": {"type": "string"}}},
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


# results/summary.json: one entry per evaluated model (or ensemble), its scores and classes as a checkpoint records them.
_SCORES = {"type": "object", "required": ["accuracy", "macro_f1"], "properties": SCORE_PROPERTIES}
_CLASS_SCORES = {
    "type": "object",
    "required": ["precision", "recall", "f1", "support"],
    "properties": {**{name: PERCENT for name in ("precision", "recall", "f1")}, "support": COUNT},
}
_IMAGES = {"type": "object", "additionalProperties": {"type": "string"}}
_MODEL = {
    "type": "object",
    "required": ["name", "params", "selection_split", "metrics"],
    "dependentRequired": {"confusion_matrix": ["classes"], "per_class": ["classes"]},
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "arch": {"type": "string"},
        "checkpoint": {"type": "string"},
        "params": PARAMS,
        "file_mb": {"type": "number", "minimum": 0},
        "data_fingerprint": OPTIONAL_TEXT,
        "commit": OPTIONAL_TEXT,
        "rebuild": {"type": "string"},  # the command that trains an entry whose checkpoint does not ship again
        "members": {"type": "array", "items": {"type": "string"}},  # an ensemble scored as the mean of these checkpoints
        "packed": {"type": "array", "items": {"type": "string"}},  # one checkpoint packing these members (training.export --ensemble)
        "storage": {"enum": ["fp32", "fp16", "int8"]},  # a packed checkpoint's weights, as stored
        "tta_accuracy_on_selection": {"type": "object", "additionalProperties": PERCENT},
        "dataset": {"type": "string"},
        "classes": CLASSES,
        "selection_split": {"type": ["string", "null"]},
        "tta": {"type": "string"},
        "metrics": {"type": "object", "minProperties": 1, "additionalProperties": _SCORES},
        "per_class": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": _CLASS_SCORES}},
        "confusion_matrix": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "array", "items": COUNT}},
        },
        "latency_ms_per_face": {"type": ["object", "null"], "additionalProperties": {"type": "number", "minimum": 0}},
        "int8_activations": {"type": "string"},  # scored and timed int8 on ONNX Runtime: the faces its activation ranges came from
        "train": {"type": "object"},
        "images": _IMAGES,
    },
}
SUMMARY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["models"],
    "properties": {"generated": {"type": "string"}, "models": {"type": "array", "items": _MODEL}, "images": _IMAGES},
}


@cache
def _validator():
    """jsonschema's Draft 2020-12 validator with our types, or None where jsonschema is not installed (then the plain checks run).

    Numbers must be finite (no NaN or infinity), integers must be ints, and tuples count as arrays (torch.save keeps them)."""
    try:
        from jsonschema import Draft202012Validator, validators
    except ImportError:
        return None
    types = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {
            "number": lambda _, value: _is_number(value),
            "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
            "array": lambda _, value: isinstance(value, (list, tuple)),
        }
    )
    return validators.extend(Draft202012Validator, type_checker=types)


def schema_problem(instance: object, schema: dict, prefix: str = "") -> str | None:
    """'where: what' for the most relevant way `instance` breaks `schema`, or None when it follows it."""
    validator = _validator()
    if validator is None:
        return None  # no jsonschema: the plain checks (checkpoint_fields_problem, summary_problem) still run
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


def _is_number(value) -> bool:
    """An int (of any size) or a finite float; not a bool."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and math.isfinite(value))


def checkpoint_fields_problem(payload: dict) -> str | None:
    """'where: what' for the fields loading relies on, checked in plain code (with or without jsonschema): the architecture's
    name, the classes, the preprocessing numbers (finite, within PREPROCESSING's bounds) and the weights' names."""
    for key, kind in (("arch", str), ("arch_kwargs", dict), ("meta", dict), ("preprocessing", dict), ("state_dict", dict), ("int8_scales", dict)):
        if key in payload and not isinstance(payload[key], kind):
            return f"{key}: {reprlib.repr(payload[key])} is not of type {kind.__name__}"
    classes = payload.get("classes")
    if not isinstance(classes, (list, tuple)) or not 2 <= len(classes) <= len(EMOJI) or len(set(map(str, classes))) != len(classes) \
            or not all(isinstance(c, str) and c in EMOJI for c in classes):
        return f"classes: {reprlib.repr(classes)} is not a list of 2 to {len(EMOJI)} different class names from {list(EMOJI)}"
    for name, bounds in PREPROCESSING["properties"].items():
        value = payload.get("preprocessing", {}).get(name)
        if value is None:
            continue
        if "enum" in bounds:
            if value not in bounds["enum"]:
                return f"preprocessing/{name}: {reprlib.repr(value)} is not one of {bounds['enum']}"
            continue
        low, high, above = bounds.get("minimum", -math.inf), bounds.get("maximum", math.inf), bounds.get("exclusiveMinimum", -math.inf)
        wrong_type = not isinstance(value, int) or isinstance(value, bool) if bounds["type"] == "integer" else not _is_number(value)
        if wrong_type or not low <= value <= high or not value > above:
            return f"preprocessing/{name}: {reprlib.repr(value)} is not a finite {bounds['type']} within its bounds {bounds}"
    if not payload.get("state_dict") or not all(isinstance(k, str) for k in payload["state_dict"]):
        return "state_dict: not a non-empty dict of weights by name"
    return None


def summary_problem(data: object) -> str | None:
    """Why a summary.json document is unusable ('where: what'), None when it is usable: the schema, square confusion matrices
    (one row and column per class) and unique model names. The writer checks before writing, the reader after reading."""
    problem = schema_problem(data, SUMMARY_SCHEMA)
    if problem:
        return problem
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in data["models"]):
        return "models: not a list of model entries with names"
    for model in data["models"]:
        size = len(model.get("classes") or [])
        for split, matrix in (model.get("confusion_matrix") or {}).items():
            if not isinstance(matrix, list) or len(matrix) != size or any(not isinstance(row, list) or len(row) != size for row in matrix):
                return f"{model['name']}: confusion matrix for {split} is not {size}x{size} (one row and column per class)"
    names = [m["name"] for m in data["models"]]
    if len(set(names)) != len(names):
        return f"models: a model name is listed twice ({', '.join(names)})"
    return None


def arch_kwargs_schema(entry) -> dict:
    """The kwargs a checkpoint may set for a registered model: those it declares, plus its init-only ones (dropped at load)."""
    return {"type": "object", "properties": {**entry.checkpoint_kwargs, **dict.fromkeys(entry.init_only, {})}, "additionalProperties": False}


def members_problem(entry, arch_kwargs: dict) -> str | None:
    """'where: what' for a packed model's members (an ensemble's): each a registered architecture one can train, with settings
    that architecture takes; None when they are all buildable, or the model is not packed."""
    from .models import model_entry

    if not entry.packed:
        return None
    for i, spec in enumerate(arch_kwargs.get("members", [])):
        where = f"arch_kwargs/members/{i}"
        if not isinstance(spec, dict):
            return f"{where}: {reprlib.repr(spec)} is not a member record"
        try:
            member = model_entry(spec.get("arch"))
        except ValueError as exc:
            return f"{where}: {exc}"
        if member.packed:
            return f"{where}: an ensemble cannot be a member of an ensemble"
        problem = schema_problem(spec.get("arch_kwargs", {}), arch_kwargs_schema(member), f"{where}/arch_kwargs")
        if problem:
            return problem
    return None


def checkpoint_problem(payload: object) -> str | None:
    """Why a loaded checkpoint dict cannot be used, as a predicate ('is not ...', 'has ...'); None when it can."""
    import torch

    from .models import model_entry

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return "is not an Emoji Mirror checkpoint (train one with `python -m training.train`)"
    version = payload.get("version", VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        return f"has checkpoint format version {version}; this code reads up to {VERSION}: update Emoji Mirror"
    problem = schema_problem(payload, CHECKPOINT_SCHEMA) or checkpoint_fields_problem(payload)
    if problem:
        return f"is not a valid Emoji Mirror checkpoint ({problem})"
    try:
        entry = model_entry(payload["arch"])
    except ValueError as exc:
        return f"names an architecture this code does not have ({exc})"
    problem = schema_problem(payload.get("arch_kwargs", {}), arch_kwargs_schema(entry), "arch_kwargs") or members_problem(entry, payload["arch_kwargs"])
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
