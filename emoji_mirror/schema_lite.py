"""A small JSON-schema checker for the keywords this project's schemas use, where jsonschema is not installed (a bare PyTorch image)."""

from __future__ import annotations

import math
import reprlib

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
}
_IGNORED = {"$schema"}


def first_problem(instance: object, schema: dict, path: tuple = ()) -> tuple[tuple, str] | None:
    """(path, message) of the first way `instance` breaks `schema`, or None; unknown keywords are a programming error."""
    unknown = set(schema) - _CHECKS.keys() - _IGNORED
    if unknown:
        raise ValueError(f"schema_lite does not implement {sorted(unknown)}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            finite = " (numbers must be finite)" if isinstance(instance, float) and not math.isfinite(instance) else ""
            return path, f"{reprlib.repr(instance)} is not of type {', '.join(map(repr, types))}{finite}"
    for keyword, check in _CHECKS.items():
        if keyword != "type" and keyword in schema:
            found = check(instance, schema[keyword], schema, path)
            if found:
                return found
    return None


def _scalar(test, text):
    def check(value, limit, _schema, path):
        if _TYPES["number"](value) and not test(value, limit):
            return path, f"{value!r} is {text} {limit!r}"
        return None

    return check


def _const(value, expected, _schema, path):
    return None if value == expected else (path, f"{expected!r} was expected")


def _enum(value, options, _schema, path):
    return None if value in options else (path, f"{reprlib.repr(value)} is not one of {reprlib.repr(options)}")


def _min_length(value, limit, _schema, path):
    return (path, f"{value!r} is too short") if isinstance(value, str) and len(value) < limit else None


def _required(value, keys, _schema, path):
    missing = [k for k in keys if isinstance(value, dict) and k not in value]
    return (path, f"{missing[0]!r} is a required property") if missing else None


def _dependent_required(value, rules, _schema, path):
    for key, needs in rules.items():
        if isinstance(value, dict) and key in value:
            found = _required(value, needs, None, path)
            if found:
                return found
    return None


def _properties(value, properties, _schema, path):
    for key, sub in properties.items():
        if isinstance(value, dict) and key in value:
            found = first_problem(value[key], sub, (*path, key))
            if found:
                return found
    return None


def _additional(value, sub, schema, path):
    if not isinstance(value, dict):
        return None
    for key in (k for k in value if k not in schema.get("properties", {})):
        if sub is False:
            return path, f"Additional properties are not allowed ({key!r} was unexpected)"
        found = first_problem(value[key], sub, (*path, key)) if isinstance(sub, dict) else None
        if found:
            return found
    return None


def _min_properties(value, limit, _schema, path):
    return (path, f"{reprlib.repr(value)} should be non-empty") if isinstance(value, dict) and len(value) < limit else None


def _property_names(value, sub, _schema, path):
    for key in value if isinstance(value, dict) else ():
        found = first_problem(key, sub, path)
        if found:
            return found
    return None


def _items(value, sub, _schema, path):
    for i, item in enumerate(value if isinstance(value, (list, tuple)) else ()):
        found = first_problem(item, sub, (*path, i))
        if found:
            return found
    return None


def _size(test, text):
    def check(value, limit, _schema, path):
        if isinstance(value, (list, tuple)) and not test(len(value), limit):
            return path, f"{reprlib.repr(value)} is {text}"
        return None

    return check


def _unique(value, wanted, _schema, path):
    if wanted and isinstance(value, (list, tuple)) and any(value[i] in value[:i] for i in range(len(value))):
        return path, f"{reprlib.repr(value)} has non-unique elements"
    return None


_CHECKS = {
    "type": None,
    "const": _const,
    "enum": _enum,
    "minimum": _scalar(lambda v, lim: v >= lim, "less than the minimum of"),
    "maximum": _scalar(lambda v, lim: v <= lim, "greater than the maximum of"),
    "exclusiveMinimum": _scalar(lambda v, lim: v > lim, "less than or equal to the minimum of"),
    "minLength": _min_length,
    "required": _required,
    "dependentRequired": _dependent_required,
    "properties": _properties,
    "additionalProperties": _additional,
    "minProperties": _min_properties,
    "propertyNames": _property_names,
    "items": _items,
    "minItems": _size(lambda n, lim: n >= lim, "too short"),
    "maxItems": _size(lambda n, lim: n <= lim, "too long"),
    "uniqueItems": _unique,
}
