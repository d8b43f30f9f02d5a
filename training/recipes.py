"""Training recipes: flag defaults (the seed's per model, ours, camera) and the parts they name: optimizer, LR schedule, EMA and loss."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch.optim.swa_utils import get_ema_multi_avg_fn

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
# from the raw weights (decay warm-up min(d, (1 + n) / (10 + n)): TensorFlow's ExponentialMovingAverage with num_updates,
# not timm's ModelEmaV3 warm-up) so early epochs are usable.
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


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """'Balanced' weights n / (k * count_c) over all k = num_classes classes: scikit-learn's compute_class_weight, which
    only takes the classes present in the labels (and divides by their number), rescaled to k classes; absent classes get 0."""
    labels = np.asarray(labels)
    weights = np.zeros(num_classes, dtype=np.float64)
    present = np.unique(labels)
    if present.size:
        balanced = compute_class_weight("balanced", classes=present, y=labels)
        weights[present] = balanced if present.size == num_classes else balanced * (present.size / num_classes)
    return torch.tensor(weights, dtype=torch.float32)


def log_prior(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """Log of the training class frequencies (from labels, or the mean of vote distributions); a floor keeps it finite."""
    freq = np.bincount(targets, minlength=num_classes).astype(np.float64) if targets.ndim == 1 else targets.mean(0).astype(np.float64)
    freq = np.maximum(freq / max(freq.sum(), 1e-12), 1e-6)
    return torch.tensor(np.log(freq), dtype=torch.float32)


def balanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                           logit_offset: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy (hard or soft targets) with optional class weights and a logit offset (tau * log prior) added in
    the loss only: the logit-adjusted loss of Menon et al. (2021), whose raw logits rank classes as if balanced."""
    logits = logits.float() if logit_offset is None else logits.float() + logit_offset
    return F.cross_entropy(logits, targets, weight=weights, label_smoothing=label_smoothing)


def warmup_decay(decay: float, num_updates: float) -> float:
    """The EMA decay after n updates with warm-up: min(decay, (1 + n) / (10 + n)), the formula of TensorFlow's
    tf.train.ExponentialMovingAverage(decay, num_updates=n). (timm's ModelEmaV3 warms up otherwise: 1 - (1 + n / gamma)^-power.)"""
    return min(decay, (1 + float(num_updates)) / (10 + float(num_updates)))


def ema_multi_avg_fn(decay: float, warmup: bool):
    """EMA update for AveragedModel: torch's get_ema_multi_avg_fn at a fixed decay, or with warm-up the decay
    `warmup_decay(decay, n)` after n updates (TensorFlow's num_updates formula), by public per-tensor lerp_/copy_."""
    if not warmup:
        return get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(ema_params, current_params, num_averaged):
        if not torch.is_floating_point(ema_params[0]):  # grouped by dtype: integer buffers (BN batch counts) are copied
            for ema, current in zip(ema_params, current_params, strict=True):
                ema.copy_(current)
            return
        weight = 1 - warmup_decay(decay, num_averaged)
        for ema, current in zip(ema_params, current_params, strict=True):
            ema.lerp_(current, weight)

    return update


def build_optimizer(model: torch.nn.Module, s) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)


def build_scheduler(optimizer, s, epochs: int, steps_per_epoch: int):
    """plateau: ReduceLROnPlateau on selection accuracy (stepped per epoch). onecycle, stepped per update: a linear
    warm-up over the first `warm` updates from lr / warm to lr (torch's LinearLR), then a cosine from lr to 0 at the last
    update (CosineAnnealingLR), chained by SequentialLR. The LR of update t (counting from 0) is lr * (t + 1) / warm while
    t < warm, then lr * (1 + cos(pi * (t - warm) / (total - warm))) / 2; tests/test_recipes.py checks it."""
    lr_scheduler = torch.optim.lr_scheduler
    if s.schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=s.plateau_factor, patience=s.plateau_patience)
    warm, total = s.warmup_epochs * steps_per_epoch, max(epochs * steps_per_epoch, 1)
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warm, 1), eta_min=0.0)
    if not warm:
        return cosine
    # LinearLR reaches end_factor after total_iters updates: lr at update warm - 1 (and the cosine starts at lr too).
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1 / warm, end_factor=1.0, total_iters=max(warm - 1, 1))
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warm])


def load_scheduler_state(scheduler, state: dict) -> None:
    """Load a scheduler's state_dict; a onecycle state saved by the old hand-written LambdaLR (from before the library
    schedulers, in a run's last.pt) is replayed instead: the new schedule stepped as many updates gives the same LR."""
    if "lr_lambdas" in state and not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr  # back to the fresh schedule's first LR: the library schedulers step from the current one
        with warnings.catch_warnings():  # stepping without optimizer steps is what replaying means here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(state["last_epoch"]):
                scheduler.step()
        return
    scheduler.load_state_dict(state)
