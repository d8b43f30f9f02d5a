"""Batched on-device augmentation: exact crops and flips when the random parts are switched off, seeded, erasing to the mean."""

import torch

from training.augment import batch_augment


def test_identity_settings_give_the_image_or_its_mirror():
    x = torch.randn(64, 1, 48, 48)
    out = batch_augment(x, 48, torch.Generator().manual_seed(0), degrees=0, scale=(1, 1), erase_p=0)
    same = (out - x).abs().amax((1, 2, 3)) < 1e-4
    mirrored = (out - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-4
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54  # about half are flipped


def test_crops_are_windows_of_the_original_at_its_pixel_scale():
    x = torch.randn(32, 1, 48, 48)
    out = batch_augment(x, 40, torch.Generator().manual_seed(1), degrees=0, scale=(1, 1), erase_p=0)
    assert out.shape == (32, 1, 40, 40)
    # Each crop's centre pixel value must occur in the source image (bilinear sampling at integer offsets or between them).
    windows = x.unfold(2, 40, 1).unfold(3, 40, 1).reshape(32, -1, 40, 40)  # every integer-offset 40x40 window
    best = torch.minimum((windows - out).abs().mean((2, 3)).amin(1), (windows - out.flip(-1)).abs().mean((2, 3)).amin(1))
    assert float(best.max()) < 0.8  # neighbours of a sub-pixel shift; an unrelated window differs by ~1.1 on N(0, 1) noise


def test_seeded_and_erasing_blanks_to_the_mean():
    x = torch.full((200, 1, 48, 48), 2.0)
    a = batch_augment(x, 40, torch.Generator().manual_seed(3), degrees=0, scale=(1, 1), erase_p=1.0)
    b = batch_augment(x, 40, torch.Generator().manual_seed(3), degrees=0, scale=(1, 1), erase_p=1.0)
    assert torch.equal(a, b)
    erased = (a == 0).flatten(1).float().mean(1)
    assert bool((erased >= 0.01).all()) and bool((erased <= 0.2).all())
