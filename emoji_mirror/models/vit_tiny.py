"""ViT-Tiny from timm (~5.5M parameters) adapted to 1-channel 48x48 faces, the seed's third model."""

from __future__ import annotations

import timm
import torch.nn as nn

from ._registry import DROP, register_model

TIMM_NAME = "vit_tiny_patch16_224"
# What a checkpoint may set; never `pretrained` / `pretrained_file` (a download, a file): its own weights replace them.
CHECKPOINT_KWARGS = {
    "img_size": {"type": "integer", "minimum": 8, "maximum": 512},
    "patch_size": {"type": "integer", "minimum": 1, "maximum": 64},
    "depth": {"type": "integer", "minimum": 1, "maximum": 24},
    "num_heads": {"type": "integer", "minimum": 1, "maximum": 16},
    "embed_dim": {"type": "integer", "minimum": 8, "maximum": 1024},
    "drop_rate": DROP,
    "drop_path_rate": DROP,
}


@register_model(checkpoint_kwargs=CHECKPOINT_KWARGS, init_only=("pretrained", "pretrained_file"))
def vit_tiny(
    num_classes: int = 7,
    in_chans: int = 1,
    img_size: int = 48,
    patch_size: int = 8,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    **kwargs,
) -> nn.Module:
    """timm ViT-Tiny on 48x48 grayscale with 8x8 patches (36 tokens; patch_size=4 or 6 is finer and slower).

    pretrained=True loads timm's ImageNet weights (needs the internet, or timm's cache);
    pretrained_file loads them from a local .safetensors/.pth/.npz file instead. Either way timm
    sums the RGB patch filters into one channel, resamples them to the patch size and the
    position embeddings to the token grid.
    """
    overlay = {"file": str(pretrained_file)} if pretrained_file else None
    return timm.create_model(
        TIMM_NAME,
        pretrained=pretrained or bool(pretrained_file),
        pretrained_cfg_overlay=overlay,
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        patch_size=patch_size,
        **kwargs,
    )
