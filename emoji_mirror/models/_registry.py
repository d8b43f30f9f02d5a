"""Model registry in the manner of timm: architectures register by name, `create_model` builds them."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name."""
    if fn.__name__ in _model_entrypoints:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _model_entrypoints[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_model_entrypoints)


def create_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    """Build a registered model by name; extra kwargs go to its constructor."""
    try:
        entrypoint = _model_entrypoints[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None
    return entrypoint(num_classes=num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
