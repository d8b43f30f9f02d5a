"""Train registered models on FER2013 / FER+: `python -m training.train --model all --data PATH`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import fcntl
import math
import reprlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from emoji_mirror.checkpoint import (CheckpointError, atomic_torch_save, checkpoint_payload, first_line, float_state_dict, half_state_dict, load_model,
                                     read_checkpoint, size_problem)
from emoji_mirror.fileio import atomic_write
from emoji_mirror.models import count_params, create_model, list_models, model_entry
from emoji_mirror.schemas import arch_kwargs_schema, schema_problem
from emoji_mirror.paths import run_name_problem
from emoji_mirror.preprocessing import PHOTOMETRY, Preprocessing, normalize, standardize

from .augment import BatchAugment, FaceTensorDataset, batch_augment, toward_neutral, train_transform
from .data import DataError, FaceDataset, load_dataset
from .data.splits import RunData, prepare_run_data
from .distill import load_soft_targets, weights_sha256
from .evaluate.scoring import score, split_probabilities
from .recipes import (RECIPES, SEED_MODELS, balanced_cross_entropy, build_optimizer, build_scheduler, class_weights, ema_multi_avg_fn,
                      load_scheduler_state, log_prior, recipe_for)
from .runtime import Runtime, epoch_seed, git_commit, rank_seed, seed_everything, seed_worker, setup_runtime

# Settings a resumed run may change without changing its history (plus "epochs" under the plateau schedule).
RESUMABLE_CHANGES = {"compile", "time_budget_min"}


# ---------------------------------------------------------------- one run's settings


def run_settings(args: argparse.Namespace, model_name: str) -> argparse.Namespace:
    """One run's settings in one object: every flag, the ones left unset taken from the recipe's defaults for this model."""
    recipe = recipe_for(model_name, args.recipe)
    given = {k: v for k, v in vars(args).items() if not (k in recipe and v is None)}
    return argparse.Namespace(**{**recipe, **given, "model": model_name, "recipe_keys": tuple(recipe)})


def run_config(s: argparse.Namespace, dataset: FaceDataset, rt: Runtime) -> dict:
    """What the checkpoint records of the run (and a resumed run must match): model, data, recipe values and run flags."""
    return {
        "model": s.model, "model_kwargs": s.model_kwargs, "dataset": dataset.name, "data_fingerprint": dataset.fingerprint,
        "recipe": s.recipe, "epochs": s.epochs, **{k: getattr(s, k) for k in s.recipe_keys}, "select_on": s.select_on,
        "holdout_fraction": s.holdout_fraction, "targets": s.targets, "teacher": s.teacher, "distill_alpha": s.distill_alpha if s.teacher else None,
        "seed": s.seed, "max_train_images": s.max_train_images, "amp": str(rt.amp_dtype), "device": rt.device.type,
        "world_size": rt.world_size, "compile": s.compile,
        "time_budget_min": s.time_budget_min,  # None unless given, so runs from before the flag still resume
        "photometry": None if s.photometry == "none" else s.photometry,  # likewise
        "ferplus_votes": s.ferplus_votes, "ferplus_weight": s.ferplus_weight if s.ferplus_votes else None,  # likewise
        "init_from": s.init_from,  # likewise
        "weaken": s.weaken or None,  # likewise
    }


def initial_weights(s: argparse.Namespace, dataset: FaceDataset) -> dict:
    """--init-from's weights as float32, refused unless its checkpoint is this run's architecture, settings, classes and
    preprocessing (a fine-tune starts where that model stopped; only the recipe differs)."""
    payload = read_checkpoint(s.init_from)
    theirs = (payload["arch"], payload.get("arch_kwargs", {}), list(payload["classes"]), Preprocessing.from_dict(payload.get("preprocessing", {})))
    ours = (s.model, s.model_kwargs, list(dataset.classes), Preprocessing(photometry=s.photometry))
    names = ("architecture", "model settings", "classes", "preprocessing")
    differ = [f"{name} {mine!r} against its {other!r}" for name, other, mine in zip(names, theirs, ours, strict=True) if other != mine]
    if differ:
        raise CheckpointError(f"--init-from {s.init_from} cannot start this run: {'; '.join(differ)}")
    return float_state_dict(payload)


def batch_augment_settings(s: argparse.Namespace) -> BatchAugment:
    """The batched augmentation's strengths from the run's settings."""
    return BatchAugment(
        degrees=s.aug_degrees, scale=(1 - s.aug_scale, 1 + s.aug_scale), erase_p=s.aug_erase, box_scale=s.aug_box_scale,
        box_shift=s.aug_box_shift, blur_p=s.aug_blur, brightness=s.aug_brightness, contrast=s.aug_contrast, gamma=s.aug_gamma,
    )


def tracked_splits(s: argparse.Namespace, data: RunData) -> list[str]:
    """The report splits --track names (scored each epoch to measure time-to-accuracy, never to select)."""
    tracked = [t.strip() for t in s.track.split(",") if t.strip()] if s.track else []
    missing = [t for t in tracked if t not in data.reports]
    if missing:
        raise DataError(f"--track {','.join(missing)}: not a report split of this run (report splits: {', '.join(data.reports)})")
    return tracked


# ---------------------------------------------------------------- the training state of one model


class TrainSet:
    """Training faces served as normalised batches: per-sample v2 transforms in DataLoader workers ('sample'),
    or the whole set kept on the device and augmented a batch at a time ('batch'; seconds per epoch on a GPU).

    Under DDP --batch-size is per rank: every rank draws the same global batches (batch size x ranks) a single process
    would draw, and trains on its contiguous share of each; the batched augmentation augments the whole global batch on
    every rank (cheap next to the model) and keeps its share, so each face gets the draws it gets in one process."""

    def __init__(self, data: RunData, s: argparse.Namespace, rt: Runtime):
        self.s, self.rt, self.cfg = s, rt, Preprocessing(photometry=s.photometry)
        self.unlit = dataclasses.replace(self.cfg, photometry="none")  # batched augmentation jitters the light first
        self.batch_size = s.batch_size
        self.size = len(data.train_targets)
        if self.size < rt.world_size:
            raise DataError(f"{self.size} training images cannot be shared among {rt.world_size} DDP ranks")
        self.augment = batch_augment_settings(s)
        if s.augment == "batch":
            self.images = torch.from_numpy(data.train_images).unsqueeze(1).to(rt.device)
            self.targets = torch.as_tensor(data.train_targets).to(rt.device)
        else:
            transform = train_transform(self.cfg) if s.augment == "sample" else None
            self.dataset = FaceTensorDataset(data.train_images, data.train_targets, transform)
        self.global_batch = self.batch_size * rt.world_size
        self.drop_last = self.size > self.global_batch
        self.steps_per_epoch = self.size // self.global_batch if self.drop_last else math.ceil(self.size / self.global_batch)

    def share(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of n (sizes differ by at most one, as in torch.tensor_split)."""
        per, extra = divmod(n, self.rt.world_size)
        start = self.rt.rank * per + min(self.rt.rank, extra)
        return slice(start, start + per + (self.rt.rank < extra))

    def batches(self, epoch: int):
        """(normalised images, targets) on the device, in an order and with augmentation fixed by (seed, epoch)."""
        seed = epoch_seed(self.s.seed, epoch)
        if self.s.augment == "batch":
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed))
            generator = torch.Generator(device=self.rt.device).manual_seed(seed)
            for step in range(self.steps_per_epoch):
                idx = order[step * self.global_batch : (step + 1) * self.global_batch].to(self.rt.device)
                x = batch_augment(normalize(self.images[idx], self.unlit), self.s.train_size, generator, self.augment, self.cfg.mean, self.cfg.std)
                x = standardize(x, self.cfg) if self.cfg.photometry == "standardize" else x  # after the light jitter, as the app sees faces
                mine = self.share(len(idx))
                yield x[mine], self.targets[idx[mine]]
            return
        generator = torch.Generator().manual_seed(seed)
        loader_args = dict(num_workers=self.s.workers, pin_memory=self.rt.device.type == "cuda", generator=generator)
        if self.rt.world_size == 1:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=self.drop_last, **loader_args)
        else:  # the single process's shuffled batches (the same generator, drawn in the same order), this rank's share of each
            batches = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(self.dataset, generator=generator), self.global_batch, self.drop_last)
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=RankShare(batches, self), worker_init_fn=functools.partial(seed_worker, self.rt.rank),
                                                 **loader_args)
        for images, targets in loader:
            yield normalize(images.to(self.rt.device, non_blocking=True), self.cfg), targets.to(self.rt.device, non_blocking=True)


class RankShare:
    """A batch sampler: this rank's share of each global batch of another batch sampler."""

    def __init__(self, batches: torch.utils.data.BatchSampler, train_set: TrainSet):
        self.batches, self.train_set = batches, train_set

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.train_set.share(len(batch))]


class Trainer:
    """One model in training: the network, its EMA (what is scored, selected and shipped when on), optimizer, LR schedule,
    loss terms and training faces; `train_epoch` runs one pass, `state_dicts`/`load` carry it through a resume."""

    def __init__(self, s: argparse.Namespace, data: RunData, num_classes: int, rt: Runtime, init: dict | None = None,
                 neutral: int | None = None):
        self.s, self.rt, self.num_classes, self.neutral = s, rt, num_classes, neutral
        seed_everything(s.seed)
        try:
            self.model = create_model(s.model, num_classes=num_classes, **s.model_kwargs).to(rt.device)
        except OSError as exc:  # initial weights that must be fetched (pretrained=true) and cannot be
            raise DataError(f"{s.model} with --model-kwargs {json.dumps(s.model_kwargs)}: cannot get its initial weights: {first_line(exc)}") from None
        if init is not None:
            self.model.load_state_dict(init)
        if rt.device.type != "cpu" or rt.amp_dtype is not None:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_multi_avg_fn(s.ema_decay, s.ema_warmup), use_buffers=True) if s.ema_decay else None
        self.train_set = TrainSet(data, s, rt)
        self.optimizer = build_optimizer(self.model, s)
        self.scheduler = build_scheduler(self.optimizer, s, s.epochs, self.train_set.steps_per_epoch)
        self.weights = class_weights(data.train_labels, num_classes).to(rt.device) if s.class_weights else None
        # The logit-adjusted loss (Menon et al. 2021): tau * log prior added to the logits in the loss only, so the model's own
        # logits come out class-balanced.
        self.logit_offset = s.logit_adjust * log_prior(data.train_targets, num_classes).to(rt.device) if s.logit_adjust else None
        self.forward = self.model  # what trains: wrapped for DDP and torch.compile by `wrap` (after a resume has loaded)

    @property
    def selected(self) -> torch.nn.Module:
        """What is scored, selected and shipped: the EMA weights when the recipe keeps them, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def state_dicts(self) -> dict:
        """What last.pt adds to the checkpoint to resume exactly."""
        extra = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.ema is not None:
            extra.update(raw_state_dict=self.model.state_dict(), ema=self.ema.state_dict())
        return extra

    def load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"] if self.ema is None else ckpt["raw_state_dict"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        load_scheduler_state(self.scheduler, ckpt["scheduler"])

    def wrap(self) -> None:
        if self.rt.world_size > 1:
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[self.rt.device.index] if self.rt.device.type == "cuda" else None)
        if self.s.compile:
            self.forward = torch.compile(self.forward)

    def start_epoch(self, epoch: int) -> None:
        """Seed the epoch's randomness from (seed, epoch) (and the DDP rank) and apply the plateau schedule's linear warm-up."""
        seed_everything(rank_seed(epoch_seed(self.s.seed, epoch), self.rt.rank))
        if self.s.schedule == "plateau" and self.s.warmup_epochs and epoch <= self.s.warmup_epochs:
            for group in self.optimizer.param_groups:
                group["lr"] = self.s.lr * epoch / self.s.warmup_epochs

    def end_epoch(self, epoch: int, selection_accuracy: float) -> None:
        """Step the plateau schedule on the selection split's accuracy (after its warm-up)."""
        if self.s.schedule == "plateau" and epoch > self.s.warmup_epochs:
            self.scheduler.step(selection_accuracy)

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training data (mixup optional; EMA and a per-step schedule updated each step); mean loss, accuracy %."""
        s, rt = self.s, self.rt
        self.forward.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(self.train_set.batches(epoch), total=self.train_set.steps_per_epoch, desc=f"{s.model} epoch {epoch}", leave=False,
                   disable=not rt.is_main or s.no_progress, dynamic_ncols=True)
        for x, targets in bar:
            if rt.device.type != "cpu" or rt.amp_dtype is not None:
                x = x.contiguous(memory_format=torch.channels_last)
            if s.weaken:
                x, targets = toward_neutral(x, targets, self.neutral, s.weaken, self.num_classes)
            lam, perm = 1.0, None
            if s.mixup > 0:
                lam = float(np.random.beta(s.mixup, s.mixup))
                perm = torch.randperm(len(x), device=x.device)
                x = lam * x + (1 - lam) * x[perm]
            with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None):
                logits = self.forward(x)

            def criterion(y):
                return balanced_cross_entropy(logits, y, self.weights, self.logit_offset, s.label_smoothing)

            loss = criterion(targets) if perm is None else lam * criterion(targets) + (1 - lam) * criterion(targets[perm])
            weight = len(targets)  # of this batch's mean loss in the epoch's
            if rt.world_size > 1:
                loss, weight = self.global_batch_loss(loss, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if s.schedule != "plateau":
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            hard = targets if targets.ndim == 1 else targets.argmax(1)
            total_loss += loss.item() * weight
            correct += int((logits.argmax(1) == hard).sum())
            seen += len(targets)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
        total_loss, correct, seen = rt.all_sum([total_loss, correct, seen])  # under DDP: over every rank's share
        return total_loss / max(seen, 1), 100.0 * correct / max(seen, 1)

    def global_batch_loss(self, loss: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Under DDP: this rank's mean loss rescaled so that DDP's average of the ranks' gradients is the gradient of the
        global batch's mean loss, as one process would take it: the ranks' shares may differ in size (a last short batch)
        or in class weight (a class-weighted mean divides by the sum of its targets' weights). Returns it and its weight
        in the epoch's mean loss (the global batch's size over the ranks: the ranks' rescaled losses average to its loss)."""
        weighted = self.weights is not None and targets.ndim == 1
        mine = self.weights[targets].sum() if weighted else torch.tensor(float(len(targets)), device=targets.device)
        sums = torch.stack([mine.float(), torch.tensor(float(len(targets)), device=targets.device)])
        dist.all_reduce(sums)
        return loss * (self.rt.world_size * mine / sums[0]), float(sums[1]) / self.rt.world_size


# ---------------------------------------------------------------- training one model


def resume(trainer: Trainer, last_path: Path, config: dict, s: argparse.Namespace) -> dict:
    """The training state to continue from: last.pt's (checked to be the same run, then loaded into the trainer) with
    --resume, else a fresh one."""
    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": [], "done": False, "elapsed": 0.0}
    if not last_path.exists():
        return state
    if not s.resume:
        if trainer.rt.is_main:
            print(f"[{s.model}] {last_path.parent} exists; starting over (pass --resume to continue it)", flush=True)
        return state
    ckpt = read_checkpoint(last_path)
    old = ckpt["meta"]["config"]
    resumable = RESUMABLE_CHANGES | ({"epochs"} if s.schedule == "plateau" else set())
    changed = sorted(k for k in config.keys() | old.keys() if k not in resumable and old.get(k) != config.get(k))
    if changed:
        raise CheckpointError(f"{last_path} was trained with other settings ({', '.join(changed)}); use a new --name or the same flags")
    trainer.load(ckpt)
    if trainer.rt.is_main:
        print(f"[{s.model}] resumed from {last_path} after epoch {ckpt['train_state']['epoch']}", flush=True)
    return ckpt["train_state"]


def epoch_record(trainer: Trainer, data: RunData, dataset_name: str, tracked: list[str], epoch: int, losses: tuple[float, float],
                 started: float, state: dict) -> tuple[dict, dict]:
    """Score the selected weights on the selection split (and the tracked splits: logged, never used for selection, LR or
    stopping); returns (selection scores, the epoch's history record)."""
    cfg, device, rt = trainer.train_set.cfg, trainer.rt.device, trainer.rt
    # Under DDP rank 0 scores and every rank takes its scores, so the plateau schedule and stopping agree on every rank
    # (BatchNorm's running statistics are each rank's own: DDP sends rank 0's at each forward).
    sel = rt.from_main(score(split_probabilities(trainer.selected, data.selection[0], cfg, device), data.selection[1]) if rt.is_main else None)
    trainer.end_epoch(epoch, sel["accuracy"])
    state["elapsed"] += time.time() - started  # full precision; rounded only when printed
    record = {"epoch": epoch, "train_loss": round(losses[0], 4), "train_accuracy": round(losses[1], 2),
              f"{data.selection_name}/accuracy": sel["accuracy"], f"{data.selection_name}/macro_f1": sel["macro_f1"],
              "lr": trainer.optimizer.param_groups[0]["lr"], "seconds": time.time() - started, "elapsed_seconds": state["elapsed"]}
    for split in tracked if rt.is_main else ():  # only rank 0's record is written
        images, labels = data.reports[split]
        record[f"{dataset_name}/{split}/accuracy (tracked)"] = score(split_probabilities(trainer.selected, images, cfg, device), labels)["accuracy"]
    return sel, record


def save_epoch(trainer: Trainer, dataset: FaceDataset, meta: dict, state: dict, run_dir: Path, improved: bool) -> None:
    """best.pt when the epoch improved on the selection split, last.pt (with what a resume needs) and metrics.jsonl."""
    s = trainer.s
    payload = checkpoint_payload(trainer.selected, s.model, s.model_kwargs, dataset.classes, trainer.train_set.cfg, meta)
    if improved:
        atomic_torch_save(payload, run_dir / "best.pt")
    atomic_torch_save({**payload, **trainer.state_dicts(), "train_state": state}, run_dir / "last.pt")
    write_metrics_log(run_dir / "metrics.jsonl", state["history"])


def train_one(model_name: str, dataset: FaceDataset, args: argparse.Namespace, rt: Runtime) -> Path | None:
    """Train one model to its epoch budget (or early stopping, or its time budget), resumable; returns the best checkpoint path."""
    s = run_settings(args, model_name)
    teacher = load_soft_targets(s.teacher, dataset) if s.teacher else None
    votes = load_soft_targets(s.ferplus_votes, dataset, "--ferplus-votes") if s.ferplus_votes else None
    data = prepare_run_data(dataset, s.select_on, s.holdout_fraction, s.seed, s.targets, s.max_train_images, teacher, s.distill_alpha,
                            votes, s.ferplus_weight)
    tracked = tracked_splits(s, data)
    config = run_config(s, dataset, rt)
    run_dir = Path(s.output_dir) / (s.name or model_name)
    if s.weaken and "neutral" not in dataset.classes:
        raise DataError(f"--weaken blends faces toward neutral ones, and {dataset.name} has no neutral class")
    trainer = Trainer(s, data, len(dataset.classes), rt, initial_weights(s, dataset) if s.init_from else None,
                      list(dataset.classes).index("neutral") if s.weaken else None)
    with run_lock(run_dir, rt):
        return train_locked(trainer, s, dataset, data, tracked, config, run_dir, rt)


@contextlib.contextmanager
def run_lock(run_dir: Path, rt: Runtime):
    """Hold an exclusive flock on the run's folder while training (rank 0; no lock file): a second process given the same
    run is refused, never interleaved."""
    if not rt.is_main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"run {run_dir} is being trained by another process right now; wait for it, or use another --name") from None
        yield
    finally:
        os.close(fd)


def train_locked(trainer: Trainer, s: argparse.Namespace, dataset: FaceDataset, data: RunData, tracked: list[str], config: dict,
                 run_dir: Path, rt: Runtime) -> Path:
    """train_one's loop, under the run's lock: resume, train epoch by epoch (saving each), then finalize."""
    model_name = s.model
    deadline = time.monotonic() + 60 * s.time_budget_min if s.time_budget_min else None
    state = resume(trainer, run_dir / "last.pt", config, s)
    if state["done"] and rt.is_main:
        print(f"[{model_name}] already finished; scoring and exporting its best checkpoint {run_dir / 'best.pt'}", flush=True)
    trainer.wrap()
    meta_base = {"config": config, "params": count_params(trainer.model), "data_fingerprint": dataset.fingerprint, "dataset": dataset.name,
                 "selection_split": data.selection_name, "commit": git_commit(), **({"init_sha256": weights_sha256(s.init_from)} if s.init_from else {})}
    if rt.is_main:
        print(f"[{model_name}] {count_params(trainer.model) / 1e6:.2f}M params, {len(data.train_targets)} training images, device {rt.device} "
              f"(amp {rt.amp_dtype}), recipe {s.recipe} ({s.optimizer}, {s.schedule}, lr {s.lr}, ema {s.ema_decay}), "
              f"selecting on {data.selection_name}", flush=True)
    for epoch in range(state["epoch"] + 1, s.epochs + 1):
        trainer.start_epoch(epoch)
        started = time.time()
        losses = trainer.train_epoch(epoch)
        sel, record = epoch_record(trainer, data, dataset.name, tracked, epoch, losses, started, state)
        improved = sel["accuracy"] > state["best_acc"]
        if improved:
            state["best_acc"], state["best_epoch"] = sel["accuracy"], epoch
        state["history"].append(record)
        state["epoch"] = epoch
        stop = bool(s.patience) and epoch - state["best_epoch"] >= s.patience
        out_of_time = rt.from_main(deadline is not None and time.monotonic() + record["seconds"] > deadline)  # another epoch would overrun
        state["done"] = stop or out_of_time or epoch == s.epochs
        if rt.is_main:
            tracked_text = "".join(f" | {k} {v:.2f}%" for k, v in record.items() if k.endswith("(tracked)"))
            print(f"[{model_name}] epoch {epoch}: loss {losses[0]:.4f} train acc {losses[1]:.2f}% | "
                  f"{data.selection_name} acc {sel['accuracy']:.2f}% (best {state['best_acc']:.2f}% @ {state['best_epoch']}) "
                  f"lr {record['lr']:.2e} {record['seconds']:.1f}s{tracked_text}", flush=True)
            save_epoch(trainer, dataset, {**meta_base, "epoch": epoch, "metrics": {data.selection_name: sel}}, state, run_dir, improved)
        if stop or (out_of_time and epoch < s.epochs):
            if rt.is_main:
                print(f"[{model_name}] early stop: no improvement for {s.patience} epochs" if stop else
                      f"[{model_name}] time budget: stopping after epoch {epoch} of {s.epochs} (--time-budget-min {s.time_budget_min})", flush=True)
            break
    if rt.is_main:
        finalize(run_dir / "best.pt", data, rt, s, state["history"])
    return run_dir / "best.pt"


def finalize(best_path: Path, data: RunData, rt: Runtime, args: argparse.Namespace, history: list[dict]) -> None:
    """Score the best checkpoint on every report split, store those metrics and the run's history in it, and export it."""
    loaded = load_model(best_path, rt.device)
    payload = read_checkpoint(best_path)
    payload["meta"]["history"] = history
    name = payload["meta"]["dataset"]
    for split, (images, labels) in data.reports.items():
        payload["meta"]["metrics"][f"{name}/{split}"] = score(split_probabilities(loaded.model, images, loaded.preprocessing, rt.device), labels)
    atomic_torch_save(payload, best_path)
    summary = ", ".join(f"{k} {v['accuracy']:.2f}%" for k, v in payload["meta"]["metrics"].items())
    print(f"[{payload['arch']}] best epoch {payload['meta']['epoch']} (selected on {payload['meta']['selection_split']}): {summary}", flush=True)
    if args.export_dir:
        export = Path(args.export_dir) / f"{best_path.parent.name}.pt"
        if args.export_half:
            payload["state_dict"] = half_state_dict(payload["state_dict"])
        atomic_torch_save(payload, export)
        print(f"[{payload['arch']}] exported {export}", flush=True)


def write_metrics_log(path: Path, history: list[dict]) -> None:
    """Rewrite the per-epoch log atomically from the run's history (so a resumed run's log stays exact)."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in history))


# ---------------------------------------------------------------- command line


# The batched augmentation's flags (--aug-NAME; recipes.AUGMENT_DEFAULTS holds their defaults).
AUGMENT_FLAGS = {
    "degrees": "rotation range, +- degrees", "scale": "zoom range, 1 +- this", "erase": "share of faces with a random rectangle erased",
    "box_scale": "detector box noise: extra zoom, exp(+- this)", "box_shift": "detector box noise: extra shift, +- this fraction of the face",
    "blur": "share of faces blurred (Gaussian, sigma 0.3-1 px): webcam softness", "brightness": "brightness shift, +- this (pixels in [0, 1])",
    "contrast": "contrast factor, exp(+- this)", "gamma": "gamma, exp(+- this)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="all", help=f"'all' (the seed's three: {', '.join(SEED_MODELS)}), or comma-separated names from: {', '.join(list_models())}")
    p.add_argument("--model-kwargs", type=json.loads, default={}, help='JSON kwargs for create_model, e.g. \'{"drop": 0.4}\'')
    p.add_argument("--data", help="FER2013/FER+ zip, folder or fer2013.csv (default: $EMOJI_MIRROR_DATA)")
    p.add_argument("--cache-dir", help="where decoded data is cached (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    p.add_argument("--recipe", choices=RECIPES, default="seed", help="flag defaults: 'seed' (the original project's: AdamW, plateau, "
                   "class weights, early stopping), 'ours' (SGD-Nesterov, warm-up + cosine, label smoothing, EMA, batched on-device augmentation) "
                   "or 'camera' (ours + detector-box, blur and light augmentation, logit-adjusted loss, EMA warm-up)")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (the cosine schedule's length; plateau runs usually stop sooner)")
    p.add_argument("--batch-size", type=int, default=None, help="default: recipe (seed 64, ours 128)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default=None, help="default: recipe (seed adamw, ours sgd with Nesterov momentum 0.9)")
    p.add_argument("--schedule", choices=["plateau", "onecycle"], default=None, help="ReduceLROnPlateau on the selection split, or warm-up + cosine to 0")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: recipe; seed 1e-3 / 1e-3 / 5e-5, ours 0.05)")
    p.add_argument("--weight-decay", type=float, default=None, help="default: recipe (seed 1e-4, ours 5e-4)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs, 0 = never (default: recipe; seed 10 / 10 / 20, ours 0)")
    p.add_argument("--warmup-epochs", type=int, default=None, help="linear LR warm-up epochs (default: recipe)")
    p.add_argument("--plateau-patience", type=int, default=None, help="ReduceLROnPlateau patience (epochs; default 3)")
    p.add_argument("--plateau-factor", type=float, default=None, help="ReduceLROnPlateau factor (default 0.5)")
    p.add_argument("--label-smoothing", type=float, default=None, help="default: recipe (seed 0, ours 0.1)")
    p.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=None, help="class-weighted cross-entropy (default: recipe; seed on, ours off)")
    p.add_argument("--ema-decay", type=float, default=None, help="keep an EMA of the weights and select/ship it; 0 = off (default: recipe; ours 0.999)")
    p.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=None,
                   help="EMA decay warm-up min(d, (1+n)/(10+n)) after n updates (TensorFlow's ExponentialMovingAverage num_updates "
                   "formula) so early epochs are usable (default: recipe; camera on)")
    p.add_argument("--logit-adjust", type=float, default=None,
                   help="tau: add tau * log(class prior) to the logits in the loss (balanced predictions); 0 = off (default: recipe; camera 0.5)")
    p.add_argument("--mixup", type=float, default=None, help="mixup Beta(a, a) parameter, 0 = off")
    p.add_argument("--augment", choices=["sample", "batch", "none"], default=None, help="per-sample v2 transforms in workers, batched on the device, or none")
    p.add_argument("--train-size", type=int, default=None, help="training crop side with --augment batch (default: recipe; ours 40 of 48)")
    aug = p.add_argument_group("batched augmentation (--augment batch; default: recipe, camera terms on in --recipe camera)")
    for name, text in AUGMENT_FLAGS.items():
        aug.add_argument(f"--aug-{name.replace('_', '-')}", type=float, default=None, help=text)
    p.add_argument("--track", default=None, help="report splits to score every epoch, only to measure time-to-accuracy (never used for selection), e.g. private_test")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on a GPU)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="wall-clock minutes for this run: stop after the epoch whose successor would overrun (best epoch kept, run done)")
    p.add_argument("--select-on", default="public_test", help="split for early stopping, LR schedule and best checkpoint: public_test or train_holdout")
    p.add_argument("--holdout-fraction", type=float, default=0.1, help="size of the stratified train holdout (with --select-on train_holdout)")
    p.add_argument("--photometry", choices=PHOTOMETRY, default="none",
                   help="each face's brightness and contrast: as it is, or standardized to FER2013's typical face (stored in the checkpoint; the app does the same)")
    p.add_argument("--targets", choices=["labels", "votes"], default="labels", help="FER+ only: train on the vote distribution")
    p.add_argument("--teacher", default=None, help="distil from these soft labels (.npz from `python -m training.distill`)")
    p.add_argument("--distill-alpha", type=float, default=0.7, help="weight of the teacher's soft labels against the labels (with --teacher)")
    p.add_argument("--ferplus-votes", default=None, help="FER2013 only: mix FER+'s vote distributions for the same faces into the labels "
                   "(soft labels from `python -m training.data.ferplus_votes`; results/soft_labels/ferplus_votes.npz is tracked)")
    p.add_argument("--ferplus-weight", type=float, default=0.5, help="weight of the FER+ votes against the FER2013 label (with --ferplus-votes)")
    p.add_argument("--weaken", type=float, default=0.0,
                   help="share of non-neutral training faces blended toward a neutral face of the batch (keeping 50-100%% of "
                        "themselves, the target mixed alike): weakened expressions, for subtle real faces; 0 = off")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (same architecture, settings, classes and preprocessing): a fine-tune, e.g. "
                        "distilling an ensemble into one of its members")
    p.add_argument("--max-train-images", type=int, default=None, help="use only the first N training images (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), or a torch device string")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast: auto = on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX; emulated bf16 is slower than fp32)")
    p.add_argument("--workers", type=int, default=min(4, max(1, (os.cpu_count() or 2) - 1)), help="DataLoader worker processes")
    p.add_argument("--output-dir", default="runs", help="run folders (last.pt, best.pt, metrics.jsonl) go here")
    p.add_argument("--name", default=None, help="run name (default: the model name); only with a single model")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir/<name> from its last epoch")
    p.add_argument("--export-dir", default=None, help="copy each finished best checkpoint here (e.g. checkpoints/)")
    p.add_argument("--export-half", action="store_true", help="export fp16 weights (half the size)")
    p.add_argument("--no-progress", action="store_true", help="no per-batch progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def command_line(**settings) -> list[str]:
    """The `python -m training.train` command for these settings, named as the parser's destinations (model="x",
    export_half=True; None and False leave a flag out; dicts go as JSON). Checked against the parser here, so the Train
    page's jobs and the GPU sprint cannot build a command it would refuse."""
    argv = []
    for dest, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + dest.replace("_", "-")
        argv += [flag] if value is True else [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    known, unknown = build_parser().parse_known_args(argv)
    wrong = unknown + [dest for dest in settings if not hasattr(known, dest)]
    if wrong:
        raise ValueError(f"training.train has no setting {', '.join(map(str, wrong))}")
    return [sys.executable, "-m", "training.train", *argv]


def cli_problem(args: argparse.Namespace, models: list[str] = ()) -> str | None:
    """What makes the command line unusable before any data is read (None when nothing does): counts below 1, numbers that
    are not finite, model settings the architecture does not take or that build too large a model, output folders that
    are files or cannot be made (checked now, not after training)."""
    if args.epochs < 1:
        return f"--epochs must be at least 1 (got {args.epochs})"
    for flag in ("batch_size", "max_train_images", "workers"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "workers" else 1):
            return f"--{flag.replace('_', '-')} must be at least {0 if flag == 'workers' else 1} (got {value})"
    for flag, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"--{flag.replace('_', '-')} must be a finite number (got {value})"
    if args.lr is not None and args.lr <= 0:
        return f"--lr must be positive (got {args.lr})"
    if not isinstance(args.model_kwargs, dict):
        return f"--model-kwargs must be a JSON object (got {reprlib.repr(args.model_kwargs)})"
    for model in models:
        entry = model_entry(model)
        unknown = sorted(set(args.model_kwargs) - set(entry.checkpoint_kwargs) - set(entry.init_only))
        problem = (f"{model} takes no setting {', '.join(unknown)} (it takes: {', '.join([*entry.checkpoint_kwargs, *entry.init_only]) or 'none'})"
                   if unknown else schema_problem(args.model_kwargs, arch_kwargs_schema(entry)))
        try:
            problem = problem or size_problem(model, 8, {k: v for k, v in args.model_kwargs.items() if k not in entry.init_only})
        except (TypeError, ValueError, RuntimeError) as exc:
            problem = f"does not build {model}: {first_line(exc)}"
        if problem:
            return f"--model-kwargs {json.dumps(args.model_kwargs)[:200]}: {problem}"
    for flag in ("distill_alpha", "ferplus_weight", "weaken"):
        if not 0 <= getattr(args, flag) <= 1:
            return f"--{flag.replace('_', '-')} must be between 0 and 1 (got {getattr(args, flag)})"
    if args.time_budget_min is not None and args.time_budget_min <= 0:
        return f"--time-budget-min must be positive (got {args.time_budget_min})"
    if args.name and run_name_problem(args.name):  # the name is a folder under --output-dir: never a path out of it
        return f"--name: {run_name_problem(args.name)}"
    for flag in ("output_dir", "export_dir"):
        problem = getattr(args, flag) and folder_problem(Path(getattr(args, flag)))
        if problem:
            return f"--{flag.replace('_', '-')} {str(getattr(args, flag))[:200]}: {problem}"
    return None


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot be (or become) a writable folder, without creating anything; None when it can."""
    try:
        for ancestor in (folder, *folder.parents):
            if ancestor.exists():
                if not ancestor.is_dir():
                    return f"cannot be a folder here ({ancestor} is a file)"
                return None if os.access(ancestor, os.W_OK) else f"cannot be a folder here ({ancestor} is not writable)"
    except OSError as exc:
        return f"cannot be a folder here ({exc.strerror or exc})"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = list(SEED_MODELS) if args.model == "all" else [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}", file=sys.stderr)
        return 2
    if args.name and len(models) > 1:
        print("error: --name needs a single --model", file=sys.stderr)
        return 2
    problem = cli_problem(args, models)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        dataset = load_dataset(args.data, args.cache_dir)
        rt = setup_runtime(args.device, args.amp)
        for model_name in models:
            train_one(model_name, dataset, args, rt)
    except (DataError, CheckpointError, OSError) as exc:  # OSError: a file that cannot be written (a full disk)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
