"""Model registry in the manner of timm: architectures register by name, `create_model` builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

# JSON-schema pieces for the constructor kwargs a checkpoint may set, bounded so that a file cannot ask for a huge model.
WIDTHS = {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "integer", "minimum": 1, "maximum": 2048}}
DEPTHS = {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "integer", "minimum": 1, "maximum": 16}}
DROP = {"type": "number", "minimum": 0, "maximum": 1}


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its constructor and what a checkpoint may pass to it."""

    build: Callable[..., nn.Module]
    checkpoint_kwargs: dict  # name -> JSON schema of each constructor kwarg a checkpoint's arch_kwargs may set
    init_only: tuple[str, ...]  # kwargs that only pick initial weights: a checkpoint's own weights replace them
    packed: bool = False  # built from other trained checkpoints (an ensemble), never trained by name


_model_entries: dict[str, ModelEntry] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, checkpoint_kwargs: dict | None = None, init_only: tuple[str, ...] = (),
                   packed: bool = False):
    """Decorator, bare or with arguments: register a model constructor under its function name.

    checkpoint_kwargs declares the kwargs (with a JSON schema each) a checkpoint may set; none when left out.
    init_only names kwargs that choose initial weights (downloads, files): the checkpoint loader drops them.
    packed marks a model built from other trained checkpoints (an ensemble): loadable, but not offered for training.
    """

    def register(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if constructor.__name__ in _model_entries:
            raise ValueError(f"model {constructor.__name__!r} is registered twice")
        _model_entries[constructor.__name__] = ModelEntry(constructor, dict(checkpoint_kwargs or {}), tuple(init_only), packed)
        return constructor

    return register(fn) if fn is not None else register


def list_models(packed: bool = False) -> list[str]:
    """Names of the registered models one can train, sorted; with packed=True, those built from trained checkpoints too."""
    return sorted(name for name, entry in _model_entries.items() if packed or not entry.packed)


def model_entry(name: str) -> ModelEntry:
    """The registration of a model; ValueError naming the registered ones when unknown."""
    try:
        return _model_entries[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models(packed=True))}") from None


def create_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    """Build a registered model by name; extra kwargs go to its constructor."""
    return model_entry(name).build(num_classes=num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
