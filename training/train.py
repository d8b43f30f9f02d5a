"""Train registered models on FER2013 / FER+: `python -m training.train --model all --data PATH`."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from emoji_mirror.checkpoint import CheckpointError, atomic_torch_save, checkpoint_payload, half_state_dict, load_model, read_checkpoint
from emoji_mirror.models import count_params, create_model, list_models
from emoji_mirror.preprocessing import Preprocessing, normalize
from emoji_mirror.paths import run_name_problem

from .augment import BatchAugment, FaceTensorDataset, batch_augment, train_transform
from .data import DataError, FaceDataset, holdout_split, load_dataset
from .recipes import RECIPES, SEED_MODELS, recipe_for
from .scoring import score, split_probabilities
from .soft_targets import load_soft_targets

REPO_ROOT = Path(__file__).resolve().parent.parent
# Settings a resumed run may change without changing its history (plus "epochs" under the plateau schedule).
RESUMABLE_CHANGES = {"compile", "time_budget_min"}


# ---------------------------------------------------------------- environment


@dataclass
class Runtime:
    """Where training runs: device, mixed precision, and the distributed rank (0 of 1 when single-process)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_runtime(device_name: str, amp: str) -> Runtime:
    """Pick the device, start DDP when launched by torchrun, and choose bf16 autocast where it pays."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world_size > 1:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    else:
        device = pick_device(device_name)
    use_amp = amp == "on" or (amp == "auto" and device.type == "cuda")
    if amp == "auto" and device.type == "cpu":
        use_amp = bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return Runtime(device, torch.bfloat16 if use_amp else None, rank, world_size)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Every epoch's randomness derives from (seed, epoch), so a resumed run repeats the original exactly."""
    return seed * 1000 + epoch


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------- data for one run


@dataclass
class RunData:
    """The arrays one run trains on, selects on, and reports on."""

    train_images: np.ndarray
    train_targets: np.ndarray  # int labels, or (N, C) vote distributions
    train_labels: np.ndarray
    selection_name: str
    selection: tuple[np.ndarray, np.ndarray]
    reports: dict[str, tuple[np.ndarray, np.ndarray]]


def prepare_run_data(dataset: FaceDataset, select_on: str, holdout_fraction: float, seed: int, targets: str, max_train: int | None,
                     teacher: np.ndarray | None = None, distill_alpha: float = 0.0) -> RunData:
    """Split the dataset: train, the selection split, and every other labelled split to report on.

    With a teacher (soft labels for every labelled training face), the targets are distill_alpha * teacher +
    (1 - distill_alpha) * the labels (one-hot, or the vote distribution): knowledge distillation at temperature 1."""
    train = dataset.splits["train"].labelled()
    index = np.arange(len(train))  # rows of the full training split kept, to subset the teacher the same way
    labelled = {name: split.labelled() for name, split in dataset.splits.items() if name != "train"}
    if select_on == "train_holdout":
        train_idx, hold_idx = holdout_split(train.labels, holdout_fraction, seed)
        selection = (train.images[hold_idx], train.labels[hold_idx])
        train, index = train.subset(train_idx), index[train_idx]
    elif select_on in labelled:
        selection = (labelled[select_on].images, labelled[select_on].labels)
    else:
        raise DataError(f"--select-on {select_on}: the data has no such split (has: train_holdout, {', '.join(labelled)})")
    if max_train:
        kept = np.sort(np.random.default_rng(seed).permutation(len(train))[:max_train])
        train, index = train.subset(kept), index[kept]
    if targets == "votes":
        if train.votes is None:
            raise DataError("--targets votes needs FER+ vote counts; this dataset has none")
        train_targets = (train.votes / train.votes.sum(1, keepdims=True)).astype(np.float32)
    else:
        train_targets = train.labels
    if teacher is not None:
        hard = train_targets if train_targets.ndim == 2 else np.eye(len(dataset.classes), dtype=np.float32)[train_targets]
        train_targets = (distill_alpha * teacher[index] + (1 - distill_alpha) * hard).astype(np.float32)
    reports = {name: (s.images, s.labels) for name, s in labelled.items() if name != select_on}
    return RunData(train.images, train_targets, train.labels, f"{dataset.name}/{select_on}", selection, reports)


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """'Balanced' weights n / (k * count_c), as scikit-learn computes them; absent classes get 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def log_prior(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """Log of the training class frequencies (from labels, or the mean of vote distributions); a floor keeps it finite."""
    freq = np.bincount(targets, minlength=num_classes).astype(np.float64) if targets.ndim == 1 else targets.mean(0).astype(np.float64)
    freq = np.maximum(freq / max(freq.sum(), 1e-12), 1e-6)
    return torch.tensor(np.log(freq), dtype=torch.float32)


def balanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                           logit_offset: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy (hard or soft targets) with optional class weights and a logit offset (tau * log prior) added in
    the loss only: the logit-adjusted loss of Menon et al. (2021), whose raw logits rank classes as if balanced."""
    logits = logits.float() if logit_offset is None else logits.float() + logit_offset
    return F.cross_entropy(logits, targets, weight=weights, label_smoothing=label_smoothing)


def ema_multi_avg_fn(decay: float, warmup: bool):
    """EMA update for AveragedModel; with warm-up the decay is min(decay, (1 + n) / (10 + n)) after n updates (timm's)."""
    if not warmup:
        return get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(ema_params, current_params, num_averaged):
        if not torch.is_floating_point(ema_params[0]):  # grouped by dtype: integer buffers (BN batch counts) are copied
            torch._foreach_copy_(ema_params, current_params)
            return
        d = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged)))
        torch._foreach_lerp_(ema_params, current_params, 1 - d)

    return update


def batch_augment_settings(hp: dict) -> BatchAugment:
    """The batched augmentation's strengths from the run's hyperparameters."""
    return BatchAugment(
        degrees=hp["aug_degrees"], scale=(1 - hp["aug_scale"], 1 + hp["aug_scale"]), erase_p=hp["aug_erase"],
        box_scale=hp["aug_box_scale"], box_shift=hp["aug_box_shift"], blur_p=hp["aug_blur"],
        brightness=hp["aug_brightness"], contrast=hp["aug_contrast"], gamma=hp["aug_gamma"],
    )


# ---------------------------------------------------------------- training one model


def run_name(args: argparse.Namespace, model_name: str) -> str:
    return args.name or model_name


def resolve_hparams(args: argparse.Namespace, model_name: str) -> dict:
    """The run's hyperparameters: the recipe's defaults for this model, overridden by every flag given."""
    hp = recipe_for(model_name, args.recipe)
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in hp.items()}


def build_optimizer(model: torch.nn.Module, hp: dict) -> torch.optim.Optimizer:
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=0.9, nesterov=True, weight_decay=hp["weight_decay"])
    return torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])


def build_scheduler(optimizer, hp: dict, epochs: int, steps_per_epoch: int):
    """plateau: ReduceLROnPlateau on selection accuracy (stepped per epoch); onecycle: linear warm-up then cosine to 0, per step."""
    if hp["schedule"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=hp["plateau_factor"], patience=hp["plateau_patience"])
    warm, total = hp["warmup_epochs"] * steps_per_epoch, max(epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(total - warm, 1))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one(model_name: str, dataset: FaceDataset, args: argparse.Namespace, rt: Runtime) -> Path | None:
    """Train one model to its epoch budget (or early stopping), resumable; returns the best checkpoint path."""
    hp = resolve_hparams(args, model_name)
    teacher = load_soft_targets(args.teacher, dataset) if args.teacher else None
    data = prepare_run_data(dataset, args.select_on, args.holdout_fraction, args.seed, args.targets, args.max_train_images,
                            teacher, args.distill_alpha)
    tracked = [s.strip() for s in args.track.split(",") if s.strip()] if args.track else []
    missing = [s for s in tracked if s not in data.reports]
    if missing:
        raise DataError(f"--track {','.join(missing)}: not a report split of this run (report splits: {', '.join(data.reports)})")
    config = {
        "model": model_name, "model_kwargs": args.model_kwargs, "dataset": dataset.name, "data_fingerprint": dataset.fingerprint,
        "recipe": args.recipe, "epochs": args.epochs, **hp, "select_on": args.select_on, "holdout_fraction": args.holdout_fraction,
        "targets": args.targets, "teacher": args.teacher, "distill_alpha": args.distill_alpha if args.teacher else None,
        "seed": args.seed, "max_train_images": args.max_train_images, "amp": str(rt.amp_dtype),
        "device": rt.device.type, "world_size": rt.world_size, "compile": args.compile,
        "time_budget_min": args.time_budget_min,  # None unless given, so runs from before the flag still resume
    }
    resumable = RESUMABLE_CHANGES | ({"epochs"} if hp["schedule"] == "plateau" else set())
    run_dir = Path(args.output_dir) / run_name(args, model_name)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    cfg = Preprocessing()
    num_classes = len(dataset.classes)
    deadline = time.monotonic() + 60 * args.time_budget_min if args.time_budget_min else None

    seed_everything(args.seed)
    model = create_model(model_name, num_classes=num_classes, **args.model_kwargs).to(rt.device)
    if rt.device.type != "cpu" or rt.amp_dtype is not None:
        model = model.to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(hp["ema_decay"], hp["ema_warmup"]), use_buffers=True) if hp["ema_decay"] else None
    selected_model = ema.module if ema is not None else model  # what is scored, selected and shipped
    train_set = TrainSet(data, hp, cfg, rt, args)
    optimizer = build_optimizer(model, hp)
    scheduler = build_scheduler(optimizer, hp, args.epochs, train_set.steps_per_epoch)
    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": [], "done": False, "elapsed": 0.0}

    if args.resume and last_path.exists():
        ckpt = read_checkpoint(last_path)
        old = ckpt["meta"]["config"]
        changed = sorted(k for k in config.keys() | old.keys() if k not in resumable and old.get(k) != config.get(k))
        if changed:
            raise CheckpointError(f"{last_path} was trained with other settings ({', '.join(changed)}); use a new --name or the same flags")
        model.load_state_dict(ckpt["state_dict"] if ema is None else ckpt["raw_state_dict"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["train_state"]
        if rt.is_main:
            print(f"[{model_name}] resumed from {last_path} after epoch {state['epoch']}", flush=True)
    elif last_path.exists() and not args.resume and rt.is_main:
        print(f"[{model_name}] {run_dir} exists; starting over (pass --resume to continue it)", flush=True)

    if state["done"] and rt.is_main:
        print(f"[{model_name}] already finished; scoring and exporting its best checkpoint {best_path}", flush=True)

    train_model = model
    if rt.world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if args.compile:
        train_model = torch.compile(train_model)
    weights = class_weights(data.train_labels, num_classes).to(rt.device) if hp["class_weights"] else None
    logit_offset = hp["logit_adjust"] * log_prior(data.train_targets, num_classes).to(rt.device) if hp["logit_adjust"] else None
    meta_base = {"config": config, "params": count_params(model), "data_fingerprint": dataset.fingerprint, "dataset": dataset.name,
                 "selection_split": data.selection_name, "commit": git_commit()}
    if rt.is_main:
        print(f"[{model_name}] {count_params(model) / 1e6:.2f}M params, {len(data.train_targets)} training images, device {rt.device} "
              f"(amp {rt.amp_dtype}), recipe {args.recipe} ({hp['optimizer']}, {hp['schedule']}, lr {hp['lr']}, "
              f"ema {hp['ema_decay']}), selecting on {data.selection_name}", flush=True)

    patience = hp["patience"]
    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        seed_everything(epoch_seed(args.seed, epoch))
        if hp["schedule"] == "plateau" and hp["warmup_epochs"] and epoch <= hp["warmup_epochs"]:
            for group in optimizer.param_groups:
                group["lr"] = hp["lr"] * epoch / hp["warmup_epochs"]
        started = time.time()
        train_loss, train_acc = run_epoch(train_model, ema, train_set, optimizer, scheduler, (weights, logit_offset), hp, args, rt, epoch, model_name)
        sel = score(split_probabilities(selected_model, data.selection[0], cfg, rt.device), data.selection[1])
        if hp["schedule"] == "plateau" and epoch > hp["warmup_epochs"]:
            scheduler.step(sel["accuracy"])
        state["elapsed"] += time.time() - started  # full precision; rounded only when printed
        improved = sel["accuracy"] > state["best_acc"]
        if improved:
            state["best_acc"], state["best_epoch"] = sel["accuracy"], epoch
        record = {"epoch": epoch, "train_loss": round(train_loss, 4), "train_accuracy": round(train_acc, 2),
                  f"{data.selection_name}/accuracy": sel["accuracy"], f"{data.selection_name}/macro_f1": sel["macro_f1"],
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started, "elapsed_seconds": state["elapsed"]}
        for split in tracked:  # logged to measure time-to-accuracy; never used for selection, LR or stopping
            images, labels = data.reports[split]
            record[f"{dataset.name}/{split}/accuracy (tracked)"] = score(split_probabilities(selected_model, images, cfg, rt.device), labels)["accuracy"]
        state["history"].append(record)
        state["epoch"] = epoch
        stop = bool(patience) and epoch - state["best_epoch"] >= patience
        out_of_time = deadline is not None and time.monotonic() + record["seconds"] > deadline  # another epoch would overrun
        state["done"] = stop or out_of_time or epoch == args.epochs
        if rt.is_main:
            tracked_text = "".join(f" | {k} {v:.2f}%" for k, v in record.items() if k.endswith("(tracked)"))
            print(f"[{model_name}] epoch {epoch}: loss {train_loss:.4f} train acc {train_acc:.2f}% | "
                  f"{data.selection_name} acc {sel['accuracy']:.2f}% (best {state['best_acc']:.2f}% @ {state['best_epoch']}) "
                  f"lr {record['lr']:.2e} {record['seconds']:.1f}s{tracked_text}", flush=True)
            meta = {**meta_base, "epoch": epoch, "metrics": {data.selection_name: sel}}
            if improved:
                atomic_torch_save(checkpoint_payload(selected_model, model_name, args.model_kwargs, dataset.classes, cfg, meta), best_path)
            last = checkpoint_payload(selected_model, model_name, args.model_kwargs, dataset.classes, cfg, meta)
            last.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), train_state=state)
            if ema is not None:
                last.update(raw_state_dict=model.state_dict(), ema=ema.state_dict())
            atomic_torch_save(last, last_path)
            write_metrics_log(run_dir / "metrics.jsonl", state["history"])
        if stop:
            if rt.is_main:
                print(f"[{model_name}] early stop: no improvement for {patience} epochs", flush=True)
            break
        if out_of_time and epoch < args.epochs:
            if rt.is_main:
                print(f"[{model_name}] time budget: stopping after epoch {epoch} of {args.epochs} (--time-budget-min {args.time_budget_min})", flush=True)
            break
    if rt.is_main:
        finalize(best_path, data, rt, args, state["history"])
    return best_path


class TrainSet:
    """Training faces served as normalised batches: per-sample v2 transforms in DataLoader workers ('sample'),
    or the whole set kept on the device and augmented a batch at a time ('batch'; seconds per epoch on a GPU)."""

    def __init__(self, data: RunData, hp: dict, cfg: Preprocessing, rt: Runtime, args: argparse.Namespace):
        self.hp, self.cfg, self.rt, self.args = hp, cfg, rt, args
        self.batch_size = hp["batch_size"]
        self.size = len(data.train_targets)
        self.augment = batch_augment_settings(hp)
        if hp["augment"] == "batch":
            self.images = torch.from_numpy(data.train_images).unsqueeze(1).to(rt.device)
            self.targets = torch.as_tensor(data.train_targets).to(rt.device)
        else:
            transform = train_transform(cfg) if hp["augment"] == "sample" else None
            self.dataset = FaceTensorDataset(data.train_images, data.train_targets, transform)
        per_rank = math.ceil(self.size / rt.world_size)
        self.drop_last = per_rank > self.batch_size
        self.steps_per_epoch = per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def batches(self, epoch: int):
        """(normalised images, targets) on the device, in an order and with augmentation fixed by (seed, epoch)."""
        seed = epoch_seed(self.args.seed, epoch)
        if self.hp["augment"] == "batch":
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed))[self.rt.rank :: self.rt.world_size]
            generator = torch.Generator(device=self.rt.device).manual_seed(seed)
            for step in range(self.steps_per_epoch):
                idx = order[step * self.batch_size : (step + 1) * self.batch_size].to(self.rt.device)
                x = batch_augment(normalize(self.images[idx], self.cfg), self.hp["train_size"], generator, self.augment, self.cfg.mean, self.cfg.std)
                yield x, self.targets[idx]
            return
        sampler = None
        if self.rt.world_size > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(self.dataset, num_replicas=self.rt.world_size, rank=self.rt.rank, shuffle=True, seed=self.args.seed)
            sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=sampler is None, sampler=sampler, generator=torch.Generator().manual_seed(seed),
            num_workers=self.args.workers, pin_memory=self.rt.device.type == "cuda", drop_last=self.drop_last,
        )
        for images, targets in loader:
            yield normalize(images.to(self.rt.device, non_blocking=True), self.cfg), targets.to(self.rt.device, non_blocking=True)


def run_epoch(model, ema, train_set: TrainSet, optimizer, scheduler, balance, hp: dict, args, rt: Runtime, epoch: int, model_name: str) -> tuple[float, float]:
    """One pass over the training data (mixup optional; EMA and a per-step schedule updated each step); mean loss, accuracy %.

    `balance` is (class weights or None, logit offset or None): the offset (tau * log prior) is added to the logits in the
    loss only, so the model's own logits come out class-balanced."""
    weights, logit_offset = balance
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(train_set.batches(epoch), total=train_set.steps_per_epoch, desc=f"{model_name} epoch {epoch}", leave=False,
               disable=not rt.is_main or args.no_progress, dynamic_ncols=True)
    for x, targets in bar:
        if rt.device.type != "cpu" or rt.amp_dtype is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        lam, perm = 1.0, None
        if hp["mixup"] > 0:
            lam = float(np.random.beta(hp["mixup"], hp["mixup"]))
            perm = torch.randperm(len(x), device=x.device)
            x = lam * x + (1 - lam) * x[perm]
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None):
            logits = model(x)

        def criterion(y):
            return balanced_cross_entropy(logits, y, weights, logit_offset, hp["label_smoothing"])

        loss = criterion(targets) if perm is None else lam * criterion(targets) + (1 - lam) * criterion(targets[perm])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if hp["schedule"] != "plateau":
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model.module if hasattr(model, "module") else model)
        hard = targets if targets.ndim == 1 else targets.argmax(1)
        total_loss += loss.item() * len(targets)
        correct += int((logits.argmax(1) == hard).sum())
        seen += len(targets)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
    return total_loss / max(seen, 1), 100.0 * correct / max(seen, 1)


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
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, path)


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
                   help="EMA decay warm-up min(d, (1+n)/(10+n)) so early epochs are usable (default: recipe; camera on)")
    p.add_argument("--logit-adjust", type=float, default=None,
                   help="tau: add tau * log(class prior) to the logits in the loss (balanced predictions); 0 = off (default: recipe; camera 0.5)")
    p.add_argument("--mixup", type=float, default=None, help="mixup Beta(a, a) parameter, 0 = off")
    p.add_argument("--augment", choices=["sample", "batch", "none"], default=None, help="per-sample v2 transforms in workers, batched on the device, or none")
    p.add_argument("--train-size", type=int, default=None, help="training crop side with --augment batch (default: recipe; ours 40 of 48)")
    aug = p.add_argument_group("batched augmentation (--augment batch; default: recipe, camera terms on in --recipe camera)")
    aug.add_argument("--aug-degrees", type=float, default=None, help="rotation range, +- degrees")
    aug.add_argument("--aug-scale", type=float, default=None, help="zoom range, 1 +- this")
    aug.add_argument("--aug-erase", type=float, default=None, help="share of faces with a random rectangle erased")
    aug.add_argument("--aug-box-scale", type=float, default=None, help="detector box noise: extra zoom, exp(+- this)")
    aug.add_argument("--aug-box-shift", type=float, default=None, help="detector box noise: extra shift, +- this fraction of the face")
    aug.add_argument("--aug-blur", type=float, default=None, help="share of faces blurred (Gaussian, sigma 0.3-1 px): webcam softness")
    aug.add_argument("--aug-brightness", type=float, default=None, help="brightness shift, +- this (pixels in [0, 1])")
    aug.add_argument("--aug-contrast", type=float, default=None, help="contrast factor, exp(+- this)")
    aug.add_argument("--aug-gamma", type=float, default=None, help="gamma, exp(+- this)")
    p.add_argument("--track", default=None, help="report splits to score every epoch, only to measure time-to-accuracy (never used for selection), e.g. private_test")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on a GPU)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="wall-clock minutes for this run: stop after the epoch whose successor would overrun (best epoch kept, run done)")
    p.add_argument("--select-on", default="public_test", help="split for early stopping, LR schedule and best checkpoint: public_test or train_holdout")
    p.add_argument("--holdout-fraction", type=float, default=0.1, help="size of the stratified train holdout (with --select-on train_holdout)")
    p.add_argument("--targets", choices=["labels", "votes"], default="labels", help="FER+ only: train on the vote distribution")
    p.add_argument("--teacher", default=None, help="distil from these soft labels (.npz from `python -m training.soft_targets`)")
    p.add_argument("--distill-alpha", type=float, default=0.7, help="weight of the teacher's soft labels against the labels (with --teacher)")
    p.add_argument("--max-train-images", type=int, default=None, help="use only the first N training images (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), or a torch device string")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast: auto = on CUDA and on CPUs with bf16 support")
    p.add_argument("--workers", type=int, default=min(4, max(1, (os.cpu_count() or 2) - 1)), help="DataLoader worker processes")
    p.add_argument("--output-dir", default="runs", help="run folders (last.pt, best.pt, metrics.jsonl) go here")
    p.add_argument("--name", default=None, help="run name (default: the model name); only with a single model")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir/<name> from its last epoch")
    p.add_argument("--export-dir", default=None, help="copy each finished best checkpoint here (e.g. checkpoints/)")
    p.add_argument("--export-half", action="store_true", help="export fp16 weights (half the size)")
    p.add_argument("--no-progress", action="store_true", help="no per-batch progress bar")
    return p.parse_args(argv)


def cli_problem(args: argparse.Namespace) -> str | None:
    """What makes the command line unusable before any data is read (None when nothing does)."""
    if args.epochs < 1:
        return f"--epochs must be at least 1 (got {args.epochs})"
    if args.time_budget_min is not None and args.time_budget_min <= 0:
        return f"--time-budget-min must be positive (got {args.time_budget_min})"
    if args.name and run_name_problem(args.name):  # the name is a folder under --output-dir: never a path out of it
        return f"--name: {run_name_problem(args.name)}"
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
    problem = cli_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        dataset = load_dataset(args.data, args.cache_dir)
        rt = setup_runtime(args.device, args.amp)
        for model_name in models:
            train_one(model_name, dataset, args, rt)
    except (DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
