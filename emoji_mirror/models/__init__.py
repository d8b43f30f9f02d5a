"""Model zoo: importing this package registers every architecture."""

from . import attention_cnn, baseline_cnn, ensemble, resnet_fer, vit_tiny  # noqa: F401  (registration side effects)
from ._registry import count_params, create_model, list_models, model_entry, register_model

__all__ = ["count_params", "create_model", "list_models", "model_entry", "register_model"]
