"""A packed ensemble: trained checkpoints of registered networks in one model, scored as the mean of their probabilities."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..preprocessing import PHOTOMETRY, Preprocessing, standardize
from ._registry import create_model, model_entry, register_model

# One member as a checkpoint stores it: its architecture, that architecture's settings, and its own photometry (the one
# preprocessing field members may differ in: the ensemble standardizes a member's input when that member was trained so).
MEMBER = {
    "type": "object",
    "required": ["arch"],
    "additionalProperties": False,
    "properties": {"arch": {"type": "string"}, "arch_kwargs": {"type": "object"}, "photometry": {"enum": list(PHOTOMETRY)}},
}
ENSEMBLE_KWARGS = {"members": {"type": "array", "minItems": 2, "maxItems": 8, "items": MEMBER},
                   "mean": {"type": "number"}, "std": {"type": "number", "exclusiveMinimum": 0}}


class Ensemble(nn.Module):
    """Members run on the same normalised faces (each standardized first when it was trained so); the output is the log of
    their mean class probabilities, so its softmax is the ensemble's probabilities and its argmax the ensemble's answer."""

    def __init__(self, members: list[nn.Module], photometries: list[str], preprocessing: Preprocessing):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.photometries = list(photometries)
        self.preprocessing = preprocessing  # the input's normalisation, which member standardization starts from

    def member_inputs(self, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor]]:
        """(member, the faces as that member sees them) for each member."""
        return [(member, standardize(x, self.preprocessing) if photometry == "standardize" else x)
                for member, photometry in zip(self.members, self.photometries)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([member(faces).float().softmax(-1) for member, faces in self.member_inputs(x)]).mean(0)
        return probabilities.clamp_min(1e-12).log()


@register_model(checkpoint_kwargs=ENSEMBLE_KWARGS, packed=True)
def ensemble(num_classes: int = 7, members: list[dict] | tuple = (), mean: float = Preprocessing.mean, std: float = Preprocessing.std) -> Ensemble:
    """Members given as {"arch", "arch_kwargs", "photometry"} records (built by `python -m training.export --ensemble`, which
    packs trained checkpoints); `mean`/`std` are the input's normalisation (the packed checkpoint's preprocessing)."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members (pack checkpoints with `python -m training.export --ensemble`)")
    built, photometries = [], []
    for spec in members:
        entry = model_entry(spec["arch"])  # ValueError naming the registered models when unknown
        if entry.packed:
            raise ValueError("an ensemble cannot be a member of an ensemble")
        kwargs = {k: v for k, v in spec.get("arch_kwargs", {}).items() if k not in entry.init_only}
        built.append(create_model(spec["arch"], num_classes=num_classes, **kwargs))
        photometries.append(spec.get("photometry", "none"))
    return Ensemble(built, photometries, Preprocessing(mean=mean, std=std))
