"""CPU speed of every registered model: training images/s and inference ms per face (PyTorch, or ONNX Runtime in float or
static int8). `python -m benchmarks.models`."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from emoji_mirror.classifier import BACKENDS
from emoji_mirror.labels import FER2013_CLASSES
from emoji_mirror.models import count_params, create_model, list_models
from emoji_mirror.onnx_backend import INPUT_NAME, OnnxNetwork, onnx_bytes
from emoji_mirror.onnx_int8 import calibrate, quantize
from emoji_mirror.preprocessing import Preprocessing, normalize
from training.evaluate.scoring import latency_ms_per_face
from training.runtime import setup_runtime

BATCH_SIZE = 64
CALIBRATION_FACES = 64


def training_images_per_second(model: torch.nn.Module, cfg: Preprocessing, amp_dtype: torch.dtype | None, warmup: int, steps: int) -> float:
    """Mean CPU throughput of full AdamW training steps (forward, loss, backward, update) on one batch, after warm-up."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH_SIZE, 1, cfg.input_size, cfg.input_size, generator=generator)
    if amp_dtype is not None:  # as training.train does under autocast
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(FER2013_CLASSES), (BATCH_SIZE,), generator=generator)

    def step() -> None:
        with torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    timer.timeit(warmup)
    return BATCH_SIZE / timer.timeit(steps).mean


def inference_network(model: torch.nn.Module, cfg: Preprocessing, backend: str, int8: bool = False) -> torch.nn.Module:
    """The network as the classifier runs it: PyTorch in channels_last (as load_model leaves it), or ONNX Runtime with
    as many intra-op threads as torch has, `int8`: the static int8 graph a calibrated checkpoint runs (activation ranges
    from random faces: the speed does not depend on them)."""
    if backend == "onnxruntime":
        graph = onnx_bytes(model.eval(), cfg.input_size)
        if int8:
            faces = normalize(torch.randint(0, 256, (CALIBRATION_FACES, 1, cfg.input_size, cfg.input_size), dtype=torch.uint8), cfg)
            graph = quantize(graph, calibrate(graph, faces.numpy(), INPUT_NAME))
        return OnnxNetwork(graph, torch.get_num_threads(), int8=int8)
    return copy.deepcopy(model).eval().to(memory_format=torch.channels_last)


def benchmark(name: str, amp_dtype: torch.dtype | None, warmup: int, steps: int, min_run_time: float, backend: str, batch_sizes: tuple[int, ...],
              int8: bool = False) -> dict:
    """One row of figures for a registered model (untrained weights: speed does not depend on them); training images/s
    only for the torch backend."""
    cfg = Preprocessing()
    model = create_model(name, num_classes=len(FER2013_CLASSES))
    row = {"model": name, "params": count_params(model), "backend": f"{backend} (int8)" if int8 else backend}
    latency = latency_ms_per_face(inference_network(model, cfg, backend, int8), cfg, batch_sizes=batch_sizes, min_run_time=min_run_time)
    if backend == "torch":
        row["train_images_per_s"] = round(training_images_per_second(model, cfg, amp_dtype, warmup, steps), 1)
    row.update({f"ms_per_face_{k}": v for k, v in latency.items()})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.models", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=",".join(list_models()), help="comma-separated registered model names")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast for training steps (auto: when the CPU supports bf16)")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (batch 64)")
    p.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timed inference per batch size")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (onnxruntime: inference only)")
    p.add_argument("--int8", action="store_true", help="with --backend onnxruntime: time the static int8 graph a checkpoint calibrated "
                                                       "by `training.export --int8 --calibrate` runs")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated inference batch sizes")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: PyTorch's)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(list_models())}")
    if args.int8 and args.backend != "onnxruntime":
        p.error("--int8 needs --backend onnxruntime (PyTorch runs int8-stored weights in float)")
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    amp_dtype = setup_runtime("cpu", args.amp).amp_dtype
    print(f"CPU, {torch.get_num_threads()} threads, training batch {BATCH_SIZE} with AdamW, autocast {amp_dtype or 'off'}; "
          f"inference ({args.backend}{' int8' if args.int8 else ''}): uint8 face -> probabilities, median ms per face", flush=True)
    rows = []
    for name in names:
        rows.append(benchmark(name, amp_dtype, args.warmup, args.steps, args.min_run_time, args.backend, batch_sizes, args.int8))
        print(f"  {name} done", flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    if args.json:
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "backend": args.backend, "int8": args.int8, "autocast": str(amp_dtype), "batch_size": BATCH_SIZE, "models": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
