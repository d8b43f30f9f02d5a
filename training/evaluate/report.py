"""Evaluation figures: confusion matrices, the accuracy comparison, and attention maps (CBAM, Grad-CAM, ViT rollout)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay
from timm.models.vision_transformer import VisionTransformer

from emoji_mirror.fileio import atomic_write
from emoji_mirror.models.ensemble import Ensemble

ATTENTION_FACES_PER_CLASS = 2


# ---------------------------------------------------------------- writing files


def save_figure(fig: Figure, path: Path, lossless: bool = True) -> None:
    """Render a figure (matplotlib's Agg renderer, no GUI backend) to PNG, or to WebP for a .webp path, and write it atomically.

    WebP keeps the tree that travels to a GPU small: lossless for charts (the same pixels as the PNG in about 40% of its
    bytes), lossy at quality 85 (`lossless=False`) for the photo-like attention maps (a seventh of the PNG's bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    if path.suffix == ".webp":
        rendered, buffer = Image.open(buffer).convert("RGB"), io.BytesIO()
        rendered.save(buffer, format="webp", **({"lossless": True} if lossless else {"quality": 85}))
    atomic_write(path, buffer.getvalue())


# ---------------------------------------------------------------- metric figures


def confusion_figure(matrices: dict[str, np.ndarray], classes: list[str], accuracies: dict[str, float], title: str) -> Figure:
    """One confusion-matrix panel (counts; rows = true class) per dataset/split."""
    fig = Figure(figsize=(5.2 * len(matrices), 5), layout="constrained")
    for ax, (split, matrix) in zip(fig.subplots(1, len(matrices), squeeze=False)[0], matrices.items()):
        ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes).plot(ax=ax, colorbar=False, values_format="d", xticks_rotation=45)
        ax.set_title(f"{split}: {accuracies[split]:.2f}% accuracy")
    fig.suptitle(title)
    return fig


def comparison_figure(models: list[dict]) -> Figure:
    """Grouped horizontal bars, one group per model: accuracy on every dataset/split; the model's selection split is
    hatched. It grows downwards with the models (a row each), never past an image format's width limit."""
    splits = list(dict.fromkeys(split for entry in models for split in entry["metrics"]))
    fig = Figure(figsize=(9, max(3.5, 0.16 * len(models) * len(splits) + 1.5)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(splits)
    for i, split in enumerate(splits):
        for j, entry in enumerate(models):
            if split in entry["metrics"]:
                bar = ax.barh(j + (i - (len(splits) - 1) / 2) * height, entry["metrics"][split]["accuracy"], height, color=f"C{i}",
                              hatch="//" if split == entry["selection_split"] else None, edgecolor="black", linewidth=0.5)
                ax.bar_label(bar, fmt="%.1f", fontsize=6, padding=2)
    ax.set_yticks(range(len(models)), [f"{e['name']} (TTA {e.get('tta', 'none')})" for e in models], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%)")
    ax.set_xlim(0, 100)
    ax.set_title("Accuracy per dataset/split")
    legend = [Patch(facecolor=f"C{i}", edgecolor="black", label=split) for i, split in enumerate(splits)]
    legend.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="selection split (optimistic)"))
    fig.legend(handles=legend, loc="outside lower center", ncols=min(len(legend), 4), fontsize=8)
    return fig


# ---------------------------------------------------------------- attention maps


def attention_faces(labels: np.ndarray, num_classes: int, per_class: int = ATTENTION_FACES_PER_CLASS) -> np.ndarray:
    """The fixed faces attention maps are drawn for: the first `per_class` of each class, in class order."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]).astype(np.int64)


def _rescale(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) maps -> (N, H, W), each min-max scaled to [0, 1]."""
    maps = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = maps.flatten(1).min(1).values[:, None, None]
    high = maps.flatten(1).max(1).values[:, None, None]
    return (maps - low) / (high - low).clamp_min(1e-8)


def cbam_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean of the model's own spatial attention maps (every CBAM stage) after one forward pass."""
    with torch.no_grad():
        model(x)
    size = x.shape[-2:]
    gates = [F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0] for m in model.spatial_maps()]
    return _rescale(torch.stack(gates).mean(0), size)


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on the last Conv2d: ReLU(sum_k mean(d score / d A_k) * A_k)."""
    layer = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    captured = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.update(activation=output))
    try:
        with torch.enable_grad():
            logits = model(x)
            (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), captured["activation"])
    finally:
        handle.remove()
    activation = captured["activation"].detach()
    cam = F.relu((grads.mean((2, 3), keepdim=True) * activation).sum(1))
    return _rescale(cam, x.shape[-2:])


def vit_attentions(model: VisionTransformer, x: torch.Tensor) -> list[torch.Tensor]:
    """Head-averaged attention (N, T, T) of every block, recomputed as softmax(q k^T * scale) from each qkv output."""
    attentions = []

    def capture(attn: nn.Module):
        def hook(module, inputs, qkv):
            batch, tokens, _ = qkv.shape
            q, k, _ = qkv.reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            scores = (attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)
            attentions.append(scores.softmax(-1).mean(1))

        return hook

    handles = [block.attn.qkv.register_forward_hook(capture(block.attn)) for block in model.blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return attentions


def vit_rollout(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): attention plus identity, row-normalised, multiplied over blocks; CLS row."""
    attentions = vit_attentions(model, x)
    rollout = torch.eye(attentions[0].shape[-1], device=x.device).expand_as(attentions[0])
    for attention in attentions:
        mixed = 0.5 * attention + 0.5 * torch.eye(attention.shape[-1], device=x.device)
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    grid = model.patch_embed.grid_size
    cls_to_patches = rollout[:, 0, model.num_prefix_tokens :].reshape(len(x), *grid)
    return _rescale(cls_to_patches, x.shape[-2:])


def saliency_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(maps (N, H, W) in [0, 1], predicted classes (N,), method name) for a normalised batch, by architecture."""
    with torch.no_grad():
        predicted = model(x).argmax(1)
    if isinstance(model, Ensemble):
        each = [saliency_maps(member, faces) for member, faces in model.member_inputs(x)]
        return torch.stack([maps for maps, _, _ in each]).mean(0), predicted, f"mean of the members' maps: {'; '.join(sorted({method for *_, method in each}))}"
    if hasattr(model, "spatial_maps"):
        return cbam_maps(model, x), predicted, "CBAM spatial attention (mean of stages)"
    if isinstance(model, VisionTransformer):
        return vit_rollout(model, x), predicted, "ViT attention rollout (CLS token)"
    return grad_cam(model, x, predicted), predicted, "Grad-CAM (last conv layer, predicted class)"


def attention_figure(faces: np.ndarray, maps: np.ndarray, labels: np.ndarray, predicted: np.ndarray, classes: list[str], title: str) -> Figure:
    """Rows of (face, overlay) pairs, ATTENTION_FACES_PER_CLASS faces per row, titled with true and predicted class."""
    per_row = ATTENTION_FACES_PER_CLASS
    rows = -(-len(faces) // per_row)
    height = 1.45 * rows + 0.7  # inches: rows of faces under a two-line title
    fig = Figure(figsize=(2.6 * per_row, height))
    layout = {"left": 0.02, "right": 0.98, "bottom": 0.01, "top": 1 - 0.7 / height, "hspace": 0.3, "wspace": 0.05}
    axes = fig.subplots(rows, 2 * per_row, squeeze=False, gridspec_kw=layout)
    for ax in axes.flat:
        ax.axis("off")
    for i, (face, heat) in enumerate(zip(faces, maps)):
        face_ax, overlay_ax = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        face_ax.imshow(face, cmap="gray", vmin=0, vmax=255)
        face_ax.set_title(f"true {classes[labels[i]]}", fontsize=7)
        overlay_ax.imshow(face, cmap="gray", vmin=0, vmax=255)
        overlay_ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        overlay_ax.set_title(f"pred {classes[predicted[i]]}", fontsize=7)
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    return fig
