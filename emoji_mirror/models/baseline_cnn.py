"""Baseline CNN: three conv layers and a small classifier (~0.4M parameters), the seed's first model."""

import torch
import torch.nn as nn

from ._registry import DROP, WIDTHS, register_model


class BaselineCNN(nn.Module):
    """conv-bn-relu-pool x3 -> 3x3 average pool -> dropout -> fc -> fc."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths=(32, 64, 128), hidden: int = 256, drop: float = 0.3):
        super().__init__()
        layers, chans = [], in_chans
        for width in widths:
            layers += [nn.Conv2d(chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            chans = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(3),  # 6x6 -> 3x3 at 48x48 input; any input size works
            nn.Flatten(),
            nn.Dropout(drop),
            nn.Linear(chans * 3 * 3, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop / 2),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(checkpoint_kwargs={"widths": WIDTHS, "hidden": {"type": "integer", "minimum": 1, "maximum": 4096}, "drop": DROP})
def baseline_cnn(num_classes: int = 7, **kwargs) -> BaselineCNN:
    """Seed baseline for 48x48 grayscale input."""
    return BaselineCNN(num_classes=num_classes, **kwargs)
