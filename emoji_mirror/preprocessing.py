"""The one preprocessing definition: face crop -> normalised tensor, for training, evaluation and the app."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

TTA_MODES = ("none", "flip", "tencrop")
PHOTOMETRY = ("none", "standardize")
# FER2013 train's per-face brightness and contrast (mean and standard deviation of a face's pixels, averaged, over 255):
# "standardize" gives every face these, whatever the camera's exposure.
FACE_MEAN, FACE_STD = 131.0 / 255, 77.5 / 255


@dataclass(frozen=True)
class Preprocessing:
    """How a grayscale face becomes model input; stored in every checkpoint."""

    input_size: int = 48  # square side in pixels, grayscale
    mean: float = 0.5  # applied after scaling uint8 to [0, 1]
    std: float = 0.25
    # The live crop's framing, calibrated to FER2013's 48x48 faces with MediaPipe's box (`python -m training.data.framing`):
    face_margin: float = 0.11  # fraction of the detector's box side added on each side before cropping
    face_offset_y: float = -0.11  # crop centre moved down by this fraction of the box side (negative: up)
    # Each face's brightness and contrast: "none" as it is (every checkpoint before this field), "standardize" matched to
    # FER2013's typical face (FACE_MEAN, FACE_STD) before the normalisation above; training and inference alike.
    photometry: str = "none"

    def __post_init__(self):
        if self.photometry not in PHOTOMETRY:
            raise ValueError(f"unknown photometry {self.photometry!r}; choose one of {', '.join(PHOTOMETRY)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)


def normalize(images: torch.Tensor, cfg: Preprocessing) -> torch.Tensor:
    """uint8 (N, 1, H, W) or (N, H, W) faces -> float32 (N, 1, S, S), scaled, resized and normalised."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    x = images.to(torch.float32) / 255.0
    if x.shape[-1] != cfg.input_size or x.shape[-2] != cfg.input_size:
        x = F.interpolate(x, size=(cfg.input_size, cfg.input_size), mode="bilinear", antialias=True, align_corners=False)
    x = (x - cfg.mean) / cfg.std
    return standardize(x, cfg) if cfg.photometry == "standardize" else x


def standardize(x: torch.Tensor, cfg: Preprocessing) -> torch.Tensor:
    """Normalised faces (N, 1, S, S) with each face's brightness and contrast set to FER2013's typical face (FACE_MEAN,
    FACE_STD), still normalised: the "standardize" photometry, which training applies after its light augmentation."""
    mean, std = x.mean(dim=(-2, -1), keepdim=True), x.std(dim=(-2, -1), keepdim=True)
    return ((x - mean) / std.clamp_min(1 / (255 * cfg.std)) * FACE_STD + FACE_MEAN - cfg.mean) / cfg.std


def tta_views(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Stack test-time views of a normalised batch: (V, N, 1, S, S), V = 1, 2 or 10."""
    if mode == "none":
        return x.unsqueeze(0)
    if mode == "flip":
        return torch.stack([x, x.flip(-1)])
    if mode == "tencrop":
        size = x.shape[-1]
        crop = round(size * 0.9)
        starts = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop), ((size - crop) // 2,) * 2]
        crops = [x[..., top : top + crop, left : left + crop] for top, left in starts]
        crops = [F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False) for c in crops]
        return torch.stack(crops + [c.flip(-1) for c in crops])
    raise ValueError(f"unknown TTA mode {mode!r}; choose one of {', '.join(TTA_MODES)}")


@torch.inference_mode()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Class probabilities for a normalised batch, averaged over the TTA views."""
    views = tta_views(x, tta)
    logits = model(views.flatten(0, 1))
    probs = logits.float().softmax(-1)
    return probs.view(views.shape[0], x.shape[0], -1).mean(0)
