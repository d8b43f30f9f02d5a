"""Training augmentation on uint8 faces: per-sample torchvision v2 transforms, or the same ideas batched on the device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from emoji_mirror.preprocessing import Preprocessing


def train_transform(cfg: Preprocessing) -> v2.Compose:
    """Random resized crop, flip, small rotation/shift, random erasing; uint8 (1, H, W) in and out."""
    size = cfg.input_size
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, translate=(0.05, 0.05)),
        v2.RandomErasing(p=0.5, scale=(0.02, 0.15), value=round(cfg.mean * 255)),
    ])


def batch_augment(x: torch.Tensor, out_size: int, generator: torch.Generator, degrees: float = 10.0,
                  scale=(0.9, 1.1), erase_p: float = 0.5, erase_area=(0.02, 0.15)) -> torch.Tensor:
    """Augment a normalised batch (N, 1, S, S) on its own device in one pass.

    One affine grid-sample per image does a random out_size crop at the original pixel scale, a flip, a zoom and a
    rotation; random erasing then blanks a rectangle to the mean (0 after normalisation). Outside-image pixels are 0 too.
    """
    n, device = x.shape[0], x.device

    def uniform(low, high, *shape):
        return torch.rand(*shape or (n,), generator=generator, device=device) * (high - low) + low

    angle = uniform(-math.radians(degrees), math.radians(degrees))
    zoom = uniform(*scale)
    flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    shift = (x.shape[-1] - out_size) / x.shape[-1]  # normalised room for the crop window to move
    tx, ty = uniform(-shift, shift), uniform(-shift, shift)
    ratio = out_size / x.shape[-1] / zoom
    cos, sin = torch.cos(angle) * ratio, torch.sin(angle) * ratio
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], out_size, out_size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if erase_p > 0:
        area = uniform(*erase_area) * out_size**2
        aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
        h = (area * aspect).sqrt().clamp(1, out_size).floor()
        w = (area / aspect).sqrt().clamp(1, out_size).floor()
        top = (uniform(0, 1) * (out_size - h + 1)).floor()
        left = (uniform(0, 1) * (out_size - w + 1)).floor()
        rows = torch.arange(out_size, device=device).view(1, -1, 1)
        cols = torch.arange(out_size, device=device).view(1, 1, -1)
        box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
               & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
        erase = (torch.rand(n, generator=generator, device=device) < erase_p).view(-1, 1, 1) & box
        out = out.masked_fill(erase.unsqueeze(1), 0.0)
    return out


class FaceTensorDataset(torch.utils.data.Dataset):
    """uint8 faces (N, H, W) with integer or soft targets, optionally augmented per sample."""

    def __init__(self, images, targets, transform=None):
        self.images = torch.from_numpy(images).unsqueeze(1)
        self.targets = torch.as_tensor(targets)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i]
