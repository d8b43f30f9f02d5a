"""ViT-Tiny from timm (~5.5M parameters) adapted to 1-channel 48x48 faces, the seed's third model."""

from __future__ import annotations

from functools import partial

import timm
import torch.nn as nn
from timm.layers import HybridEmbed
from timm.models.vision_transformer_hybrid import ConvStem

from ._registry import DROP, register_model

TIMM_NAME = "vit_tiny_patch16_224"
STEMS = ("patch", "conv")  # timm's patchify convolution, or its ConvStem (stride-2 3x3 convolutions)
# What a checkpoint may set; never `pretrained` / `pretrained_file` (a download, a file): its own weights replace them.
CHECKPOINT_KWARGS = {
    "img_size": {"type": "integer", "minimum": 8, "maximum": 512},
    "patch_size": {"type": "integer", "minimum": 1, "maximum": 64},
    "depth": {"type": "integer", "minimum": 1, "maximum": 24},
    "num_heads": {"type": "integer", "minimum": 1, "maximum": 16},
    "embed_dim": {"type": "integer", "minimum": 8, "maximum": 1024},
    "drop_rate": DROP,
    "drop_path_rate": DROP,
    "stem": {"enum": list(STEMS)},
}


@register_model(checkpoint_kwargs=CHECKPOINT_KWARGS, init_only=("pretrained", "pretrained_file"))
def vit_tiny(
    num_classes: int = 7,
    in_chans: int = 1,
    img_size: int = 48,
    patch_size: int = 8,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    stem: str = "patch",
    **kwargs,
) -> nn.Module:
    """timm ViT-Tiny on 48x48 grayscale with 8x8 patches (36 tokens; patch_size=4 or 6 is finer and slower).

    pretrained=True loads timm's ImageNet weights (needs the internet, or timm's cache);
    pretrained_file loads them from a local .safetensors/.pth/.npz file instead. Either way timm
    sums the RGB patch filters into one channel, resamples them to the patch size and the
    position embeddings to the token grid.

    stem="conv" embeds with timm's ConvStem instead of one patchify convolution: 3x3 stride-2 convolutions (BatchNorm,
    ReLU) down to the same token grid, then a 1x1 projection; Xiao et al. (2021), "Early convolutions help transformers
    see better", found it makes a ViT train faster and more stably from scratch. ImageNet weights exist only for "patch".
    """
    if stem not in STEMS:
        raise ValueError(f"unknown ViT stem {stem!r}; choose one of {', '.join(STEMS)}")
    if stem == "conv":
        strides = patch_size.bit_length() - 1
        if patch_size < 2 or patch_size != 1 << strides:
            raise ValueError(f"the conv stem needs a power-of-two patch size (2, 4, 8, ...), not {patch_size}")
        if pretrained or pretrained_file:
            raise ValueError("ImageNet ViT-Tiny weights fit the patch stem only; train the conv stem from scratch")
        embed_dim = kwargs.get("embed_dim", 192)
        backbone = ConvStem(in_chans=in_chans, depth=strides, channels=embed_dim, stride=(2,) * strides)
        kwargs["embed_layer"] = partial(HybridEmbed, backbone=backbone)
        patch_size = 1  # the stem did the downsampling; HybridEmbed projects each of its output pixels to one token
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
