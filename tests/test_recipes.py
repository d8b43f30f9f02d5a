"""The recipes' parts are library code giving the values the hand-written versions gave: torch's LinearLR + cosine for
the onecycle schedule, the EMA's TensorFlow-style decay warm-up, scikit-learn's balanced class weights."""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from training import recipes


def onecycle(warmup_epochs: int, lr: float = 0.05) -> argparse.Namespace:
    return argparse.Namespace(schedule="onecycle", warmup_epochs=warmup_epochs, lr=lr, optimizer="sgd", weight_decay=5e-4)


def closed_form(step: int, lr: float, warm: int, total: int) -> float:
    """The schedule as the trainer wrote it by hand before: per update, (t + 1) / warm, then a cosine to 0 at `total`."""
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(total - warm, 1))))


def optimizer_for(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=lr, momentum=0.9, nesterov=True)


def lr_curve(optimizer, scheduler, steps: int) -> list[float]:
    """The LR each update uses (the trainer steps the scheduler after each optimizer step), plus the one after the last.
    The optimizer steps once (torch checks the order on the first scheduler step); the LR does not depend on its steps."""
    curve = [optimizer.param_groups[0]["lr"]]
    optimizer.step()
    for _ in range(steps):
        scheduler.step()
        curve.append(optimizer.param_groups[0]["lr"])
    return curve


@pytest.mark.parametrize("lr, warmup_epochs, epochs, steps_per_epoch", [
    (0.05, 1, 3, 7),       # tiny data: 1 warm-up epoch, then the cosine
    (0.05, 3, 3, 7),       # all warm-up (the cosine's start is the end)
    (0.05, 3, 2, 7),       # warm-up longer than the run: it never reaches the cosine
    (1e-3, 0, 4, 5),       # no warm-up: the cosine alone
    (0.05, 1, 3, 1),       # one update per epoch (a one-update warm-up)
    (0.05, 3, 120, 224),   # a shipped config: ours on FER2013 (28,709 faces / batch 128 = 224 updates), 120 epochs
])
def test_onecycle_schedule_is_the_closed_form(lr, warmup_epochs, epochs, steps_per_epoch):
    optimizer = optimizer_for(lr)
    scheduler = recipes.build_scheduler(optimizer, onecycle(warmup_epochs, lr), epochs, steps_per_epoch)
    total, warm = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
    curve = lr_curve(optimizer, scheduler, total)
    expected = [closed_form(t, lr, warm, total) for t in range(total + 1)]
    np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-6 * lr)  # 1e-6 of the peak; measured: ~1e-16
    if warm < total:
        assert curve[-1] == 0.0  # the end of the cosine is exactly 0
    if 0 < warm <= total:
        assert curve[warm - 1] == pytest.approx(lr, abs=1e-12) and curve[warm] == lr  # peak at the warm-up's last update


def checkpointed(state: dict) -> dict:
    """Through torch.save/torch.load(weights_only=True), as last.pt stores it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("stop_at", [3, 7, 8, 12])  # mid-warm-up, at the milestone, just after it, mid-cosine
def test_onecycle_state_round_trips_through_a_resume(stop_at):
    s, epochs, steps = onecycle(1), 3, 7
    optimizer = optimizer_for(s.lr)
    scheduler = recipes.build_scheduler(optimizer, s, epochs, steps)
    straight = lr_curve(optimizer, scheduler, epochs * steps)

    optimizer = optimizer_for(s.lr)
    scheduler = recipes.build_scheduler(optimizer, s, epochs, steps)
    first = lr_curve(optimizer, scheduler, stop_at)
    saved = checkpointed({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    optimizer = optimizer_for(s.lr)  # a new process: fresh objects, then the trainer's load order
    scheduler = recipes.build_scheduler(optimizer, s, epochs, steps)
    optimizer.load_state_dict(saved["optimizer"])
    recipes.load_scheduler_state(scheduler, saved["scheduler"])
    resumed = first[:-1] + lr_curve(optimizer, scheduler, epochs * steps - stop_at)
    assert resumed == straight  # exactly


def test_a_run_saved_with_the_old_lambda_schedule_resumes_on_the_same_curve():
    s, epochs, steps, stop_at = onecycle(1), 3, 7, 5
    warm, total = steps, epochs * steps
    optimizer = optimizer_for(s.lr)  # the old scheduler: a LambdaLR of the hand-written factor
    old = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: closed_form(t, 1.0, warm, total))
    lr_curve(optimizer, old, stop_at)
    saved = checkpointed({"optimizer": optimizer.state_dict(), "scheduler": old.state_dict()})
    optimizer = optimizer_for(s.lr)
    scheduler = recipes.build_scheduler(optimizer, s, epochs, steps)
    optimizer.load_state_dict(saved["optimizer"])
    recipes.load_scheduler_state(scheduler, saved["scheduler"])
    rest = lr_curve(optimizer, scheduler, total - stop_at)
    np.testing.assert_allclose(rest, [closed_form(t, s.lr, warm, total) for t in range(stop_at, total + 1)], rtol=0, atol=1e-12)


def reference_ema(history: list[list[float]], decay: float, warmup: bool) -> list[float]:
    """Plain Python: the first update copies; update n (n = 1, 2, ...) keeps d = min(decay, (1 + n) / (10 + n)) of the
    average (TensorFlow's ExponentialMovingAverage with num_updates = n), or d = decay without warm-up."""
    average = list(history[0])
    for n, weights in enumerate(history[1:], start=1):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        average = [d * a + (1 - d) * w for a, w in zip(average, weights)]
    return average


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_is_the_named_formula(warmup):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = AveragedModel(model, multi_avg_fn=recipes.ema_multi_avg_fn(0.95, warmup), use_buffers=True)
    floats = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    history = []
    for _ in range(40):  # the model moves, the EMA follows
        with torch.no_grad():
            for t in floats:
                t.add_(torch.randn_like(t))
            model[1].num_batches_tracked.add_(1)
        history.append(torch.cat([t.detach().flatten() for t in floats]).double().tolist())
        ema.update_parameters(model)
    got = torch.cat([t.detach().flatten() for t in [*ema.module.parameters(), *ema.module.buffers()] if t.is_floating_point()])
    np.testing.assert_allclose(got.double().numpy(), reference_ema(history, 0.95, warmup), rtol=0, atol=1e-5)
    if warmup:  # integer buffers (BN's batch count) are copied, not averaged
        assert int(ema.module[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 40


def test_warmup_decay_is_tensorflows_num_updates_formula():
    assert recipes.warmup_decay(0.999, 0) == pytest.approx(0.1)
    assert recipes.warmup_decay(0.999, 10) == pytest.approx(11 / 20)
    assert recipes.warmup_decay(0.999, 10**6) == 0.999


@pytest.mark.parametrize("labels, num_classes", [
    ([0, 0, 0, 1, 2, 2], 3),                 # every class present
    ([0, 0, 0, 1], 3),                       # class 2 absent: weight 0 (scikit-learn refuses absent classes)
    ([6, 6, 3, 0, 0, 0, 0, 5, 3, 3], 7),     # FER2013's 7 classes, some absent
])
def test_class_weights_are_balanced_with_absent_classes_at_zero(labels, num_classes):
    labels = np.array(labels)
    counts = np.bincount(labels, minlength=num_classes)
    expected = [len(labels) / (num_classes * c) if c else 0.0 for c in counts]  # n / (k * count), k = all classes
    weights = recipes.class_weights(labels, num_classes)
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-7, atol=0)
    # the hand-written version it replaces, to the bit
    old = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    assert torch.equal(weights, torch.tensor(old, dtype=torch.float32))


def test_class_weights_of_no_labels_are_zero():
    assert torch.equal(recipes.class_weights(np.array([], dtype=np.int64), 3), torch.zeros(3))


def test_log_prior_from_labels_and_votes():
    np.testing.assert_allclose(recipes.log_prior(np.array([0, 0, 0, 1]), 3).exp().numpy(), [0.75, 0.25, 1e-6], rtol=1e-5)
    votes = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(recipes.log_prior(votes, 3).exp().numpy(), [0.75, 0.25, 1e-6], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("tau, expected", [(0.0, "prior"), (1.0, "uniform")])
def test_logit_adjusted_loss_learns_balanced_logits(tau, expected):
    """On uninformative inputs the best logits are log prior (plain loss) or flat (tau = 1): what the model then answers."""
    labels = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    prior = torch.bincount(labels, minlength=3).float() / len(labels)
    offset = tau * recipes.log_prior(labels.numpy(), 3) if tau else None
    bias = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.SGD([bias], lr=0.5)
    for _ in range(500):
        loss = recipes.balanced_cross_entropy(bias.expand(len(labels), 3), labels, logit_offset=offset)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    probs = bias.detach().softmax(0)
    target = prior if expected == "prior" else torch.full((3,), 1 / 3)
    torch.testing.assert_close(probs, target, atol=0.02, rtol=0)


def test_ema_warmup_follows_the_weights_early():
    """With warm-up the EMA tracks a model that moved after the first update; without it, 0.999 stays near the start."""
    from torch.optim.swa_utils import AveragedModel

    def run(warmup: bool) -> float:
        model = torch.nn.BatchNorm1d(1)  # a weight and integer buffers (num_batches_tracked: copied, not averaged)
        torch.nn.init.zeros_(model.weight)
        ema = AveragedModel(model, multi_avg_fn=recipes.ema_multi_avg_fn(0.999, warmup), use_buffers=True)
        ema.update_parameters(model)  # the first update copies the weights (0)
        with torch.no_grad():
            model.weight.fill_(1.0)  # then the model moves to 1 and stays there
        for _ in range(20):
            ema.update_parameters(model)
        return float(ema.module.weight.detach())

    assert run(True) > 0.9
    assert run(False) < 0.05
