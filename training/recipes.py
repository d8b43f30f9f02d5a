"""Per-model training defaults (the seed's recipe); every value can be overridden by a flag."""

SEED_RECIPE = {
    "baseline_cnn": {"lr": 1e-3, "patience": 10, "warmup_epochs": 0},
    "attention_cnn": {"lr": 1e-3, "patience": 10, "warmup_epochs": 0},
    "vit_tiny": {"lr": 5e-5, "patience": 20, "warmup_epochs": 5},
}
DEFAULT_RECIPE = {"lr": 1e-3, "patience": 10, "warmup_epochs": 0}
SEED_MODELS = tuple(SEED_RECIPE)


def recipe_for(model: str) -> dict:
    """Defaults for a model: the seed's values for the seed's three, a sensible default otherwise."""
    return dict(SEED_RECIPE.get(model, DEFAULT_RECIPE))
