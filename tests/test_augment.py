"""Batched on-device augmentation: exact crops and flips when the random parts are switched off, seeded, erasing to the
mean, and the camera terms (box noise, blur, light) doing what they say within the pixel range."""

import torch

from training.augment import BatchAugment, batch_augment, gaussian_blur

PLAIN = BatchAugment(degrees=0, scale=(1, 1), erase_p=0)
MEAN, STD = 0.5, 0.25
LOW, HIGH = (0 - MEAN) / STD, (1 - MEAN) / STD  # normalised black and white


def faces(n: int, seed: int = 0) -> torch.Tensor:
    """Normalised (n, 1, 48, 48) images with pixel values in [0, 1]: smooth blobs plus texture, like small faces."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g)
    u = torch.nn.functional.interpolate(coarse, size=(48, 48), mode="bilinear", align_corners=False)
    u = (0.8 * u + 0.2 * torch.rand(n, 1, 48, 48, generator=g)).clamp(0, 1)
    return (u - MEAN) / STD


def test_identity_settings_give_the_image_or_its_mirror():
    x = torch.randn(64, 1, 48, 48)
    out = batch_augment(x, 48, torch.Generator().manual_seed(0), PLAIN)
    same = (out - x).abs().amax((1, 2, 3)) < 1e-4
    mirrored = (out - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-4
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54  # about half are flipped


def test_crops_are_windows_of_the_original_at_its_pixel_scale():
    x = torch.randn(32, 1, 48, 48)
    out = batch_augment(x, 40, torch.Generator().manual_seed(1), PLAIN)
    assert out.shape == (32, 1, 40, 40)
    # Each crop's centre pixel value must occur in the source image (bilinear sampling at integer offsets or between them).
    windows = x.unfold(2, 40, 1).unfold(3, 40, 1).reshape(32, -1, 40, 40)  # every integer-offset 40x40 window
    best = torch.minimum((windows - out).abs().mean((2, 3)).amin(1), (windows - out.flip(-1)).abs().mean((2, 3)).amin(1))
    assert float(best.max()) < 0.8  # neighbours of a sub-pixel shift; an unrelated window differs by ~1.1 on N(0, 1) noise


def test_seeded_and_erasing_blanks_to_the_mean():
    x = torch.full((200, 1, 48, 48), 2.0)
    erase_all = BatchAugment(degrees=0, scale=(1, 1), erase_p=1.0)
    a = batch_augment(x, 40, torch.Generator().manual_seed(3), erase_all)
    b = batch_augment(x, 40, torch.Generator().manual_seed(3), erase_all)
    assert torch.equal(a, b)
    erased = (a == 0).flatten(1).float().mean(1)
    assert bool((erased >= 0.01).all()) and bool((erased <= 0.2).all())


CAMERA = BatchAugment(box_scale=0.1, box_shift=0.05, blur_p=0.5, brightness=0.15, contrast=0.3, gamma=0.25)


def test_camera_terms_are_seeded_shaped_and_stay_in_the_pixel_range():
    x = faces(64)
    a = batch_augment(x, 40, torch.Generator().manual_seed(5), CAMERA, MEAN, STD)
    b = batch_augment(x, 40, torch.Generator().manual_seed(5), CAMERA, MEAN, STD)
    c = batch_augment(x, 40, torch.Generator().manual_seed(6), CAMERA, MEAN, STD)
    assert a.shape == (64, 1, 40, 40) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= LOW - 1e-4 and float(a.max()) <= HIGH + 1e-4  # light changes clamp to black..white
    assert torch.isfinite(a).all()


def test_light_changes_brightness_and_contrast_per_image():
    x = faces(256)
    light = BatchAugment(degrees=0, scale=(1, 1), erase_p=0, brightness=0.2, contrast=0.4)
    out = batch_augment(x, 48, torch.Generator().manual_seed(7), light, MEAN, STD)
    plain = batch_augment(x, 48, torch.Generator().manual_seed(7), PLAIN, MEAN, STD)
    mean_shift = (out.mean((1, 2, 3)) - plain.mean((1, 2, 3))) * STD
    contrast = out.std((1, 2, 3)) / plain.std((1, 2, 3))
    assert float(mean_shift.std()) > 0.05 and float(mean_shift.abs().max()) < 0.45
    assert float(contrast.min()) < 0.85 and float(contrast.max()) > 1.15


def test_blur_softens_only_the_chosen_share_of_faces():
    x = faces(400)
    blur = BatchAugment(degrees=0, scale=(1, 1), erase_p=0, blur_p=0.3, blur_sigma=(0.8, 1.0))  # wide enough to tell apart
    out = batch_augment(x, 48, torch.Generator().manual_seed(8), blur, MEAN, STD)
    plain = batch_augment(x, 48, torch.Generator().manual_seed(8), PLAIN, MEAN, STD)

    def sharpness(t):  # mean absolute horizontal gradient per image
        return (t[..., 1:] - t[..., :-1]).abs().mean((1, 2, 3))

    ratio = sharpness(out) / sharpness(plain)
    blurred = ratio < 0.9
    assert 0.2 < float(blurred.float().mean()) < 0.4
    assert float(ratio[~blurred].min()) > 0.99  # the rest are untouched (up to the same flip)


def test_gaussian_blur_keeps_constant_images_and_mass():
    u = torch.rand(3, 1, 20, 20)
    u[0] = 0.7
    out = gaussian_blur(u, torch.tensor([1.0, 0.0, 1.5]))
    torch.testing.assert_close(out[0], u[0])  # constant stays constant
    torch.testing.assert_close(out[1], u[1])  # sigma 0: unchanged
    assert abs(float(out[2].mean() - u[2].mean())) < 0.02  # blurring moves no mass (replicated edges)
    assert float(out[2].std()) < float(u[2].std())


def test_box_noise_moves_and_zooms_the_face():
    """A bright square in the middle: box noise moves its centre and changes its size, as the detector's box noise does."""
    x = torch.full((300, 1, 48, 48), LOW)
    x[..., 16:32, 16:32] = HIGH
    plain = BatchAugment(degrees=0, scale=(1, 1), erase_p=0)
    noisy = BatchAugment(degrees=0, scale=(1, 1), erase_p=0, box_scale=0.15, box_shift=0.08)
    stats = []
    for aug in (plain, noisy):
        out = batch_augment(x, 48, torch.Generator().manual_seed(9), aug, MEAN, STD)
        mask = (out > 0).float()
        area = mask.sum((1, 2, 3))
        rows = torch.arange(48.0).view(1, 1, -1, 1)
        centre_y = (mask * rows).sum((1, 2, 3)) / area
        stats.append((area, centre_y))
    (area0, cy0), (area1, cy1) = stats
    assert float(area0.std()) < 1 and float(cy0.std()) < 0.1  # no noise: every square the same
    assert float(area1.std()) > 10 and float(cy1.std()) > 1  # noise: sizes and positions vary
