"""--weaken (issue 19's lever for subtle faces): non-neutral faces blended toward neutral ones, their targets mixed alike."""

from __future__ import annotations

import torch
from test_train import common_flags, tiny_data  # noqa: F401 (the module's data fixture)

from emoji_mirror.checkpoint import read_checkpoint
from training import train
from training.augment import toward_neutral

NEUTRAL, CLASSES = 6, 7


def batch(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces whose pixels all equal their index, so a blend's partner and share can be read back."""
    return torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone(), torch.tensor(labels)


def test_every_expression_is_blended_toward_a_neutral_face_and_its_target_mixed_by_the_same_share():
    torch.manual_seed(0)
    labels = [0, 1, 2, 3, 4, 5, NEUTRAL, NEUTRAL] * 8
    x, targets = batch(labels)
    out, soft = toward_neutral(x, targets, NEUTRAL, 1.0, CLASSES)
    for i, label in enumerate(labels):
        if label == NEUTRAL:  # neutral faces stay as they are
            assert torch.equal(out[i], x[i]) and soft[i, NEUTRAL] == 1
            continue
        keep = soft[i, label].item()
        assert 0.5 <= keep <= 1 and abs(soft[i, NEUTRAL].item() - (1 - keep)) < 1e-6 and abs(soft[i].sum().item() - 1) < 1e-6
        partner = (out[i, 0, 0, 0].item() - keep * i) / (1 - keep) if keep < 1 else None
        assert partner is None or labels[round(partner)] == NEUTRAL  # the other face is a neutral one, by the same share
        assert torch.allclose(out[i], out[i, 0, 0, 0].expand_as(out[i]))


def test_soft_targets_mix_alike_and_nothing_changes_without_a_share_or_a_neutral_face():
    torch.manual_seed(1)
    x, labels = batch([0, NEUTRAL] * 4)
    teacher = torch.nn.functional.one_hot(labels, CLASSES).float() * 0.8 + 0.2 / CLASSES
    out, soft = toward_neutral(x, teacher, NEUTRAL, 1.0, CLASSES)
    keep = (soft[0, 0] - teacher[1, 0]) / (teacher[0, 0] - teacher[1, 0])
    assert torch.allclose(soft[0], keep * teacher[0] + (1 - keep) * teacher[1]) and 0.5 <= keep <= 1
    same, same_targets = toward_neutral(x, labels, NEUTRAL, 0.0, CLASSES)
    assert same is x and same_targets is labels
    none_neutral = batch([0, 1, 2])
    assert toward_neutral(*none_neutral, NEUTRAL, 1.0, CLASSES)[1] is none_neutral[1]


def test_a_run_trains_with_it_and_records_it(tiny_data, tmp_path):  # noqa: F811
    flags = ["--model", "baseline_cnn", "--epochs", "2", "--weaken", "0.5", "--max-train-images", "30",
             *common_flags(tiny_data, tmp_path / "runs", tmp_path / "cache")]
    assert train.main(flags) == 0
    assert read_checkpoint(tmp_path / "runs" / "baseline_cnn" / "last.pt")["meta"]["config"]["weaken"] == 0.5
    assert train.main(["--model", "baseline_cnn", "--weaken", "1.5", *common_flags(tiny_data, tmp_path / "r", tmp_path / "cache")]) == 2
