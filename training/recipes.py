"""Training recipes as flag defaults: the seed's (per model) and ours; every value can be overridden by a flag."""

from __future__ import annotations

RECIPES = ("seed", "ours", "camera")

# Batched augmentation's strengths (training/augment.py: BatchAugment); the camera terms are off unless a recipe sets them.
AUGMENT_DEFAULTS = {
    "aug_degrees": 10.0, "aug_scale": 0.1, "aug_erase": 0.5, "aug_box_scale": 0.0, "aug_box_shift": 0.0, "aug_blur": 0.0,
    "aug_brightness": 0.0, "aug_contrast": 0.0, "aug_gamma": 0.0,
}

# The original project's recipe: AdamW, ReduceLROnPlateau, class-weighted cross-entropy, early stopping, batch 64.
SEED_DEFAULTS = {
    "optimizer": "adamw", "schedule": "plateau", "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4, "patience": 10,
    "warmup_epochs": 0, "class_weights": True, "label_smoothing": 0.0, "ema_decay": 0.0, "mixup": 0.0,
    "augment": "sample", "train_size": 48, "plateau_patience": 3, "plateau_factor": 0.5, "logit_adjust": 0.0,
    "ema_warmup": False, **AUGMENT_DEFAULTS,
}
SEED_PER_MODEL = {"vit_tiny": {"lr": 5e-5, "patience": 20, "warmup_epochs": 5}}

# Ours: SGD-Nesterov with warm-up + cosine decay (one cycle), label smoothing, an EMA of the weights that is what gets
# selected and shipped, and batched on-device augmentation cropping 40 px windows (evaluation sees the whole 48 px face).
# No early stopping: a cosine schedule is meant to run to its end; the best epoch is still chosen on the selection split.
OUR_DEFAULTS = {
    "optimizer": "sgd", "schedule": "onecycle", "batch_size": 128, "lr": 0.05, "weight_decay": 5e-4, "patience": 0,
    "warmup_epochs": 3, "class_weights": False, "label_smoothing": 0.1, "ema_decay": 0.999, "mixup": 0.0,
    "augment": "batch", "train_size": 40, "plateau_patience": 3, "plateau_factor": 0.5, "logit_adjust": 0.0,
    "ema_warmup": False, **AUGMENT_DEFAULTS,
}
OUR_PER_MODEL = {"vit_tiny": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 5, "train_size": 48}}

# Camera: ours, trained for what a live crop looks like and for every class. The detector's box noise (extra zoom and
# shift), webcam blur and light (brightness, contrast, gamma); a logit-adjusted loss (Menon et al. 2021: the log class
# prior added to the logits in training, so the raw logits rank classes as if they were balanced); an EMA that starts
# from the raw weights (decay warm-up min(d, (1 + n) / (10 + n)), as timm does) so early epochs are usable.
CAMERA_DEFAULTS = {
    **OUR_DEFAULTS, "logit_adjust": 0.5, "ema_warmup": True, "aug_box_scale": 0.1, "aug_box_shift": 0.05, "aug_blur": 0.25,
    "aug_brightness": 0.15, "aug_contrast": 0.3, "aug_gamma": 0.25,
}

SEED_MODELS = ("baseline_cnn", "attention_cnn", "vit_tiny")


def recipe_for(model: str, recipe: str = "seed") -> dict:
    """Flag defaults for a model under a recipe ('seed' or 'ours')."""
    if recipe == "seed":
        return {**SEED_DEFAULTS, **SEED_PER_MODEL.get(model, {})}
    if recipe == "ours":
        return {**OUR_DEFAULTS, **OUR_PER_MODEL.get(model, {})}
    if recipe == "camera":
        return {**CAMERA_DEFAULTS, **OUR_PER_MODEL.get(model, {})}
    raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
