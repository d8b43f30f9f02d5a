"""DDP: two ranks under torchrun (CPU, gloo, loopback) train like one process with their global batch.

What makes them equal: every rank draws the global batches one process would draw and trains on its contiguous share
(the batched augmentation augments the whole global batch on every rank and keeps its share); DDP averages the ranks'
gradients, and a rank's mean loss is rescaled by its share of the global batch (of its size, or of its class weight).
What cannot be equal, and so is not tested: BatchNorm normalises over each rank's share (torch's SyncBatchNorm runs on
GPUs only), dropout masks, mixup pairs and per-sample augmentation are drawn by each rank. The test model is therefore
a one-block ViT (LayerNorm, no dropout), trained with SGD (its step is linear in the gradient, so float noise stays
float noise; Adam's first steps amplify it to about 1e-5)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emoji_mirror.checkpoint import read_checkpoint
from training import train
from training.data.synthetic import make_fer2013
from training.runtime import Runtime

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = ["--model", "vit_tiny", "--model-kwargs", json.dumps({"depth": 1, "embed_dim": 32, "num_heads": 2}), "--optimizer", "sgd", "--lr", "0.05"]
RECIPES = {  # the batched on-device augmentation path, and the per-sample DataLoader path (class-weighted, plateau)
    "camera-batch": ["--recipe", "camera", "--warmup-epochs", "1"],
    "seed-sample": ["--recipe", "seed", "--augment", "none", "--patience", "0"],
}
PER_RANK_BATCH = 8


@pytest.fixture(scope="module")
def tiny_fer(tmp_path_factory) -> Path:
    """56 training faces: 3 global batches of 16 (8 left over, dropped as one process drops them)."""
    return make_fer2013(tmp_path_factory.mktemp("ddp") / "fer2013.zip", per_class={"train": 8, "public_test": 2, "private_test": 1})


def flags(data: Path, out: Path, batch_size: int) -> list[str]:
    return ["--data", str(data), "--cache-dir", str(out / "cache"), "--output-dir", str(out / "runs"), "--device", "cpu", "--amp", "off",
            "--workers", "0", "--no-progress", "--epochs", "2", "--batch-size", str(batch_size), *MODEL]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "training.train", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_two_ranks_train_like_one_process_with_their_global_batch(tiny_fer, tmp_path, recipe):
    one, two = tmp_path / "one", tmp_path / "two"
    assert train.main([*flags(tiny_fer, one, 2 * PER_RANK_BATCH), *RECIPES[recipe]]) == 0
    proc = torchrun([*flags(tiny_fer, two, PER_RANK_BATCH), *RECIPES[recipe]])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("epoch 2:") == 1  # only rank 0 reports (and writes)
    assert sorted(p.name for p in (two / "runs" / "vit_tiny").iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]

    a, b = read_checkpoint(one / "runs" / "vit_tiny" / "last.pt"), read_checkpoint(two / "runs" / "vit_tiny" / "last.pt")
    assert (a["meta"]["config"]["world_size"], b["meta"]["config"]["world_size"]) == (1, 2)
    for part in ("state_dict", "raw_state_dict"):  # the selected (EMA under camera) and the raw weights
        for key, value in a.get(part, {}).items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=1e-5, msg=f"{part} {key}")  # measured: 6e-8
    ha, hb = a["train_state"]["history"], b["train_state"]["history"]
    assert [r["lr"] for r in ha] == [r["lr"] for r in hb]
    assert [r["fer2013/public_test/accuracy"] for r in ha] == [r["fer2013/public_test/accuracy"] for r in hb]
    np.testing.assert_allclose([r["train_loss"] for r in hb], [r["train_loss"] for r in ha], atol=2e-4)  # every rank's share, rounded to 1e-4
    assert [r["train_accuracy"] for r in ha] == [r["train_accuracy"] for r in hb]


@pytest.mark.parametrize("augment", ["batch", "none"])
@pytest.mark.parametrize("size", [56, 33, 20, 3])  # full global batches (and a rest), odd sizes, one short global batch
def test_ranks_shares_make_up_the_single_process_batches(augment, size):
    """Without processes: rank r of 2 (per-rank batch 8) gets the rows one process with batch 16 gets, in two shares."""
    rng = np.random.default_rng(0)
    data = SimpleNamespace(train_images=rng.integers(0, 256, (size, 48, 48), dtype=np.uint8), train_targets=rng.integers(0, 7, size))
    args = train.parse_args(["--recipe", "camera", "--workers", "0", "--augment", augment])

    def batches(batch_size: int, rank: int, world_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        s = train.run_settings(argparse_copy(args, batch_size=batch_size), "baseline_cnn")
        train_set = train.TrainSet(data, s, Runtime(torch.device("cpu"), None, rank, world_size))
        out = list(train_set.batches(epoch=3))
        assert len(out) == train_set.steps_per_epoch
        return out

    single = batches(16, 0, 1)
    ranks = [batches(8, r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        assert abs(len(y0) - len(y1)) <= 1 and len(y0) and len(y1)
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def argparse_copy(args, **changes):
    return SimpleNamespace(**{**vars(args), **changes})
