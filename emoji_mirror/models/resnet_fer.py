"""ResNet-style CNNs sized for 48x48 faces: the stronger models of our own (VGG-class accuracy, fewer FLOPs)."""

import torch
import torch.nn as nn

from ._registry import DEPTHS, DROP, WIDTHS, register_model

RESNET_KWARGS = {"widths": WIDTHS, "depths": DEPTHS, "drop": DROP, "stem_pool": {"type": "boolean"}}  # what a checkpoint may set


class BasicBlock(nn.Module):
    """Pre-activation-free residual block: two 3x3 convs, projection shortcut when shape changes."""

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_chans, out_chans, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_chans),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, stride, bias=False), nn.BatchNorm2d(out_chans))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNetFER(nn.Module):
    """conv stem at full resolution (optionally max-pooled), then stages of BasicBlocks that halve resolution, global
    pool, classifier."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), drop: float = 0.2,
                 stem_pool: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
                                  *([nn.MaxPool2d(2)] if stem_pool else []))
        blocks, chans = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            for j in range(depth):
                blocks.append(BasicBlock(chans, width, stride=2 if j == 0 and i > 0 else 1))
                chans = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(chans, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@register_model(checkpoint_kwargs=RESNET_KWARGS)
def resnet18_fer(num_classes: int = 7, **kwargs) -> ResNetFER:
    """ResNet-18 layout for 48x48 (11M params): the accuracy model, meant for >=73% PrivateTest on a GPU."""
    return ResNetFER(num_classes=num_classes, **kwargs)


@register_model(checkpoint_kwargs=RESNET_KWARGS)
def resnet_fer_small(num_classes: int = 7, **kwargs) -> ResNetFER:
    """Narrow ResNet (2.8M params) for the live mirror and CPU training."""
    kwargs.setdefault("widths", (32, 64, 128, 256))
    return ResNetFER(num_classes=num_classes, **kwargs)


@register_model(checkpoint_kwargs=RESNET_KWARGS)
def resnet_fer_fast(num_classes: int = 7, **kwargs) -> ResNetFER:
    """The CPU model (0.9M params): pooled stem, one block per stage; about 30 s a FER2013 epoch (camera recipe) and under 2 ms a face on 2 cores."""
    kwargs.setdefault("widths", (32, 64, 128, 192))
    kwargs.setdefault("depths", (1, 1, 1, 1))
    kwargs.setdefault("stem_pool", True)
    return ResNetFER(num_classes=num_classes, **kwargs)
