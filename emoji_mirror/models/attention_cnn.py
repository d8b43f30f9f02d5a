"""CNN with CBAM channel and spatial attention (~1.2M parameters), the seed's second model."""

import torch
import torch.nn as nn

from ._registry import DROP, WIDTHS, register_model


class ChannelAttention(nn.Module):
    """Squeeze avg- and max-pooled descriptors through a shared MLP into per-channel gates."""

    def __init__(self, chans: int, reduction: int = 16):
        super().__init__()
        hidden = max(chans // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(chans, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, chans, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        return x * gate.sigmoid()


class SpatialAttention(nn.Module):
    """A 7x7 conv over channel-pooled maps gives one gate per pixel; the last map is kept for plotting."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.last_map: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        gate = self.conv(pooled).sigmoid()
        self.last_map = gate.detach()
        return x * gate


def conv_bn(in_chans: int, out_chans: int) -> list[nn.Module]:
    return [nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True)]


class AttentionStage(nn.Module):
    """Two 3x3 convs followed by CBAM (channel then spatial attention)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.convs = nn.Sequential(*conv_bn(in_chans, out_chans), *conv_bn(out_chans, out_chans))
        self.channel = ChannelAttention(out_chans)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(self.convs(x)))


class AttentionCNN(nn.Module):
    """stem -> 3 CBAM stages with max-pooling between -> global pool -> classifier."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths=(32, 64, 128, 256), drop: float = 0.3):
        super().__init__()
        stem, *stage_widths = widths
        self.stem = nn.Sequential(*conv_bn(in_chans, stem), nn.MaxPool2d(2))
        stages, chans = [], stem
        for i, width in enumerate(stage_widths):
            stages.append(AttentionStage(chans, width))
            if i < len(stage_widths) - 1:
                stages.append(nn.MaxPool2d(2))
            chans = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(chans, num_classes))

    def spatial_maps(self) -> list[torch.Tensor]:
        """Spatial attention maps of the last forward pass, shallowest first."""
        return [m.last_map for m in self.modules() if isinstance(m, SpatialAttention) and m.last_map is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@register_model(checkpoint_kwargs={"widths": WIDTHS, "drop": DROP})
def attention_cnn(num_classes: int = 7, **kwargs) -> AttentionCNN:
    """Seed attention CNN for 48x48 grayscale input."""
    return AttentionCNN(num_classes=num_classes, **kwargs)
