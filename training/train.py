"""Train registered models on FER2013 / FER+: `python -m training.train --model all --data PATH`."""

from __future__ import annotations

import argparse
import json
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
from tqdm import tqdm

from emoji_mirror.checkpoint import CheckpointError, atomic_torch_save, checkpoint_payload, load_model, read_checkpoint
from emoji_mirror.models import count_params, create_model, list_models
from emoji_mirror.preprocessing import Preprocessing, normalize

from .augment import FaceTensorDataset, train_transform
from .data import DataError, FaceDataset, holdout_split, load_dataset
from .recipes import SEED_MODELS, recipe_for
from .scoring import score, split_probabilities

REPO_ROOT = Path(__file__).resolve().parent.parent
# Settings a resumed run may change: extending or shortening the epoch budget keeps the run's history exact.
RESUMABLE_CHANGES = {"epochs"}


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


def prepare_run_data(dataset: FaceDataset, select_on: str, holdout_fraction: float, seed: int, targets: str, max_train: int | None) -> RunData:
    """Split the dataset: train, the selection split, and every other labelled split to report on."""
    train = dataset.splits["train"].labelled()
    labelled = {name: split.labelled() for name, split in dataset.splits.items() if name != "train"}
    if select_on == "train_holdout":
        train_idx, hold_idx = holdout_split(train.labels, holdout_fraction, seed)
        selection = (train.images[hold_idx], train.labels[hold_idx])
        train = train.subset(train_idx)
    elif select_on in labelled:
        selection = (labelled[select_on].images, labelled[select_on].labels)
    else:
        raise DataError(f"--select-on {select_on}: the data has no such split (has: train_holdout, {', '.join(labelled)})")
    if max_train:
        train = train.subset(np.sort(np.random.default_rng(seed).permutation(len(train))[:max_train]))
    if targets == "votes":
        if train.votes is None:
            raise DataError("--targets votes needs FER+ vote counts; this dataset has none")
        train_targets = train.votes / train.votes.sum(1, keepdims=True)
    else:
        train_targets = train.labels
    reports = {name: (s.images, s.labels) for name, s in labelled.items() if name != select_on}
    return RunData(train.images, train_targets, train.labels, f"{dataset.name}/{select_on}", selection, reports)


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """'Balanced' weights n / (k * count_c), as scikit-learn computes them; absent classes get 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


# ---------------------------------------------------------------- training one model


def run_name(args: argparse.Namespace, model_name: str) -> str:
    return args.name or model_name


def train_one(model_name: str, dataset: FaceDataset, args: argparse.Namespace, rt: Runtime) -> Path | None:
    """Train one model to early stopping (or --epochs), resumable; returns the best checkpoint path."""
    recipe = recipe_for(model_name)
    lr = args.lr if args.lr is not None else recipe["lr"]
    patience = args.patience if args.patience is not None else recipe["patience"]
    warmup = args.warmup_epochs if args.warmup_epochs is not None else recipe["warmup_epochs"]
    config = {
        "model": model_name, "model_kwargs": args.model_kwargs, "dataset": dataset.name, "data_fingerprint": dataset.fingerprint,
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "AdamW", "lr": lr, "weight_decay": args.weight_decay,
        "scheduler": "ReduceLROnPlateau", "plateau_patience": args.plateau_patience, "plateau_factor": args.plateau_factor,
        "patience": patience, "warmup_epochs": warmup, "class_weights": not args.no_class_weights, "label_smoothing": args.label_smoothing,
        "select_on": args.select_on, "holdout_fraction": args.holdout_fraction, "targets": args.targets, "seed": args.seed,
        "max_train_images": args.max_train_images, "amp": str(rt.amp_dtype), "device": rt.device.type, "world_size": rt.world_size,
    }
    run_dir = Path(args.output_dir) / run_name(args, model_name)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    data = prepare_run_data(dataset, args.select_on, args.holdout_fraction, args.seed, args.targets, args.max_train_images)
    cfg = Preprocessing()
    num_classes = len(dataset.classes)

    seed_everything(args.seed)
    model = create_model(model_name, num_classes=num_classes, **args.model_kwargs).to(rt.device)
    if rt.device.type != "cpu" or rt.amp_dtype is not None:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=args.plateau_factor, patience=args.plateau_patience)
    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": [], "done": False}

    if args.resume and last_path.exists():
        ckpt = read_checkpoint(last_path)
        changed = sorted(k for k in config if k not in RESUMABLE_CHANGES and ckpt["meta"]["config"].get(k) != config[k])
        if changed:
            raise CheckpointError(f"{last_path} was trained with other settings ({', '.join(changed)}); use a new --name or the same flags")
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        plateau.load_state_dict(ckpt["scheduler"])
        state = ckpt["train_state"]
        if rt.is_main:
            print(f"[{model_name}] resumed from {last_path} after epoch {state['epoch']}", flush=True)
    elif last_path.exists() and not args.resume and rt.is_main:
        print(f"[{model_name}] {run_dir} exists; starting over (pass --resume to continue it)", flush=True)

    if state["done"] and rt.is_main:
        print(f"[{model_name}] already finished; scoring and exporting its best checkpoint {best_path}", flush=True)

    ddp_model = model
    if rt.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    weights = class_weights(data.train_labels, num_classes).to(rt.device) if not args.no_class_weights else None
    train_ds = FaceTensorDataset(data.train_images, data.train_targets, train_transform(cfg) if not args.no_augment else None)
    meta_base = {"config": config, "params": count_params(model), "data_fingerprint": dataset.fingerprint, "dataset": dataset.name,
                 "selection_split": data.selection_name, "commit": git_commit()}
    if rt.is_main:
        print(f"[{model_name}] {count_params(model) / 1e6:.2f}M params, {len(train_ds)} training images, device {rt.device} "
              f"(amp {rt.amp_dtype}), selecting on {data.selection_name}", flush=True)

    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        # Every epoch's randomness derives from (seed, epoch), so a resumed run repeats the original exactly.
        seed_everything(args.seed * 1000 + epoch)
        if warmup and epoch <= warmup:
            for group in optimizer.param_groups:
                group["lr"] = lr * epoch / warmup
        started = time.time()
        train_loss, train_acc = run_epoch(ddp_model, train_ds, optimizer, weights, cfg, args, rt, epoch, model_name)
        sel_probs = split_probabilities(model, data.selection[0], cfg, rt.device)
        sel = score(sel_probs, data.selection[1])
        if epoch > warmup:
            plateau.step(sel["accuracy"])
        improved = sel["accuracy"] > state["best_acc"]
        if improved:
            state["best_acc"], state["best_epoch"] = sel["accuracy"], epoch
        record = {"epoch": epoch, "train_loss": round(train_loss, 4), "train_accuracy": round(train_acc, 2),
                  f"{data.selection_name}/accuracy": sel["accuracy"], f"{data.selection_name}/macro_f1": sel["macro_f1"],
                  "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - started, 1)}
        state["history"].append(record)
        state["epoch"] = epoch
        stop = epoch - state["best_epoch"] >= patience
        state["done"] = stop or epoch == args.epochs
        if rt.is_main:
            print(f"[{model_name}] epoch {epoch}: loss {train_loss:.4f} train acc {train_acc:.2f}% | "
                  f"{data.selection_name} acc {sel['accuracy']:.2f}% (best {state['best_acc']:.2f}% @ {state['best_epoch']}) "
                  f"lr {record['lr']:.2e} {record['seconds']}s", flush=True)
            meta = {**meta_base, "epoch": epoch, "metrics": {data.selection_name: sel}}
            if improved:
                atomic_torch_save(checkpoint_payload(model, model_name, args.model_kwargs, dataset.classes, cfg, meta), best_path)
            last = checkpoint_payload(model, model_name, args.model_kwargs, dataset.classes, cfg, meta)
            last.update(optimizer=optimizer.state_dict(), scheduler=plateau.state_dict(), train_state=state)
            atomic_torch_save(last, last_path)
            write_metrics_log(run_dir / "metrics.jsonl", state["history"])
        if stop:
            if rt.is_main:
                print(f"[{model_name}] early stop: no improvement for {patience} epochs", flush=True)
            break
    if rt.is_main:
        finalize(best_path, data, rt, args, state["history"])
    return best_path


def run_epoch(model, train_ds, optimizer, weights, cfg, args, rt: Runtime, epoch: int, model_name: str) -> tuple[float, float]:
    """One pass over the training data; returns mean loss and accuracy (percent)."""
    model.train()
    generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    sampler = None
    if rt.world_size > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(train_ds, num_replicas=rt.world_size, rank=rt.rank, shuffle=True, seed=args.seed)
        sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler, generator=generator,
        num_workers=args.workers, pin_memory=rt.device.type == "cuda", drop_last=len(train_ds) > args.batch_size,
    )
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"{model_name} epoch {epoch}", leave=False, disable=not rt.is_main or args.no_progress, dynamic_ncols=True)
    for images, targets in bar:
        x = normalize(images.to(rt.device, non_blocking=True), cfg)
        if rt.device.type != "cpu" or rt.amp_dtype is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = targets.to(rt.device, non_blocking=True)
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), targets, weight=weights, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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
            payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
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
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per model, seed values 1e-3 / 1e-3 / 5e-5)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (default: per model, 10 / 10 / 20)")
    p.add_argument("--warmup-epochs", type=int, default=None, help="linear LR warm-up epochs (default: per model, 5 for ViT)")
    p.add_argument("--plateau-patience", type=int, default=3, help="ReduceLROnPlateau patience (epochs)")
    p.add_argument("--plateau-factor", type=float, default=0.5, help="ReduceLROnPlateau factor")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--no-class-weights", action="store_true", help="plain instead of class-weighted cross-entropy")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--select-on", default="public_test", help="split for early stopping, LR schedule and best checkpoint: public_test or train_holdout")
    p.add_argument("--holdout-fraction", type=float, default=0.1, help="size of the stratified train holdout (with --select-on train_holdout)")
    p.add_argument("--targets", choices=["labels", "votes"], default="labels", help="FER+ only: train on the vote distribution")
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
