"""Training augmentation (torchvision transforms v2) on uint8 faces; normalisation stays in emoji_mirror.preprocessing."""

import torch
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
