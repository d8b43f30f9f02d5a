"""Training augmentation on uint8 faces: per-sample torchvision v2 transforms, or the same ideas batched on the device."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class BatchAugment:
    """How much of each random change `batch_augment` applies (every field is a training flag).

    The camera terms imitate what a live crop differs by from a FER2013 face: the detector's box noise (box_scale,
    box_shift: extra zoom and shift, as fractions of the face), webcam softness (blur_p: a Gaussian blur of random
    width) and light (brightness, contrast, gamma: the spread of each, 0 = off).
    """

    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.15)
    box_scale: float = 0.0
    box_shift: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0


def batch_augment(x: torch.Tensor, out_size: int, generator: torch.Generator, aug: BatchAugment = BatchAugment(),
                  mean: float = 0.5, std: float = 0.25) -> torch.Tensor:
    """Augment a normalised batch (N, 1, S, S) on its own device in one pass.

    Light first (in [0, 1] pixel space: brightness, contrast, gamma, then blur), then one affine grid-sample per
    image does a random out_size crop at the original pixel scale, a flip, a zoom, a shift and a rotation; random
    erasing then blanks a rectangle to the mean (0 after normalisation). Outside-image pixels are 0 too.
    """
    n, device = x.shape[0], x.device

    def uniform(low, high, *shape):
        return torch.rand(*shape or (n,), generator=generator, device=device) * (high - low) + low

    if aug.brightness or aug.contrast or aug.gamma or aug.blur_p:
        x = photometric(x * std + mean, aug, uniform, n)
        x = (x - mean) / std
    angle = uniform(-math.radians(aug.degrees), math.radians(aug.degrees))
    zoom = uniform(*aug.scale)
    if aug.box_scale:
        zoom = zoom * torch.exp(uniform(-aug.box_scale, aug.box_scale))
    flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    room = (x.shape[-1] - out_size) / x.shape[-1]  # normalised room for the crop window to move
    shift = room + 2 * aug.box_shift
    tx, ty = uniform(-shift, shift), uniform(-shift, shift)
    ratio = out_size / x.shape[-1] / zoom
    cos, sin = torch.cos(angle) * ratio, torch.sin(angle) * ratio
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], out_size, out_size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.erase_p > 0:
        out = random_erase(out, aug, uniform, n)
    return out


def photometric(u: torch.Tensor, aug: BatchAugment, uniform, n: int) -> torch.Tensor:
    """Brightness shift, contrast and gamma per image, then a Gaussian blur on a random share of them; [0, 1] in and out."""
    shape = (n, 1, 1, 1)
    u = (u - 0.5) * torch.exp(uniform(-aug.contrast, aug.contrast)).view(shape) + 0.5 + uniform(-aug.brightness, aug.brightness).view(shape)
    u = u.clamp(0, 1) ** torch.exp(uniform(-aug.gamma, aug.gamma)).view(shape)
    if aug.blur_p > 0:
        sigma = uniform(*aug.blur_sigma) * (uniform(0, 1) < aug.blur_p)
        u = gaussian_blur(u, sigma)
    return u


def gaussian_blur(u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (N, 1, H, W) with its own sigma (0 = unchanged): one separable grouped convolution."""
    n, _, h, w = u.shape
    radius = max(1, math.ceil(3 * float(sigma.max()))) if bool((sigma > 0).any()) else 0
    if radius == 0:
        return u
    offsets = torch.arange(-radius, radius + 1, device=u.device, dtype=u.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.clamp_min(1e-3).view(-1, 1).to(u.dtype)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    planes = F.pad(u.view(1, n, h, w), (radius, radius, radius, radius), mode="replicate")
    planes = F.conv2d(planes, kernel.view(n, 1, 1, -1), groups=n)
    planes = F.conv2d(planes, kernel.view(n, 1, -1, 1), groups=n)
    return planes.view(n, 1, h, w)


def random_erase(out: torch.Tensor, aug: BatchAugment, uniform, n: int) -> torch.Tensor:
    """Blank one random rectangle (area and aspect drawn per image) to 0, the mean, in a share erase_p of the images."""
    size, device = out.shape[-1], out.device
    area = uniform(*aug.erase_area) * size**2
    aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
    h = (area * aspect).sqrt().clamp(1, size).floor()
    w = (area / aspect).sqrt().clamp(1, size).floor()
    top = (uniform(0, 1) * (size - h + 1)).floor()
    left = (uniform(0, 1) * (size - w + 1)).floor()
    rows = torch.arange(size, device=device).view(1, -1, 1)
    cols = torch.arange(size, device=device).view(1, 1, -1)
    box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
           & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
    erase = (uniform(0, 1) < aug.erase_p).view(-1, 1, 1) & box
    return out.masked_fill(erase.unsqueeze(1), 0.0)


def toward_neutral(x: torch.Tensor, targets: torch.Tensor, neutral: int, p: float, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weakened expressions (issue 19's lever for subtle faces): each face whose target is not mostly neutral is, with
    probability p, blended with a random mostly-neutral face of the batch, keeping a share lam ~ U(0.5, 1) of itself, and
    its target is mixed by the same share: a faint expression keeps most of its label. Targets come back as distributions
    (hard labels made one-hot); a batch without a neutral face is returned as it is."""
    soft = targets.float() if targets.ndim == 2 else F.one_hot(targets, num_classes).float()
    is_neutral = soft.argmax(1) == neutral
    pool = is_neutral.nonzero().flatten()
    if p <= 0 or not len(pool):
        return x, targets
    n = len(x)
    chosen = (torch.rand(n, device=x.device) < p) & ~is_neutral
    partner = pool[torch.randint(len(pool), (n,), device=x.device)]
    keep = torch.where(chosen, 0.5 + 0.5 * torch.rand(n, device=x.device), torch.ones(n, device=x.device))
    blended = keep.view(-1, 1, 1, 1) * x + (1 - keep).view(-1, 1, 1, 1) * x[partner]
    return blended.to(x.dtype), keep.view(-1, 1) * soft + (1 - keep).view(-1, 1) * soft[partner]


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
