"""The sprint's whole path on this CPU in seconds: tiny synthetic data, packed and split; the plan's jobs at tiny widths; then the import."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import DataError, FaceDataset, load_dataset
from ..data.pack import PACK_SUFFIX, write_pack
from ..data.synthetic import make_tiny_data
from ..distill import save_soft_targets
from .device import RESULT_FILE_MIB, RESULT_FILES
from .home import import_sprint
from .parts import split_file
from .plan import PLANS, smoke_plan
from .run import run


def make_soft_labels(dataset: FaceDataset, path: Path) -> Path:
    """Soft labels for the tiny data's training faces (the label smoothed over the classes), so the students plan's smoke
    distils as the real plan does from the tracked files."""
    labels = dataset.splits["train"].labelled().labels
    classes = len(dataset.classes)
    probs = np.full((len(labels), classes), 0.2 / (classes - 1), dtype=np.float32)
    probs[np.arange(len(labels)), labels] = 0.8
    save_soft_targets(path, probs, dataset, ["smoke-teacher"], "none")
    return path


def smoke(args) -> int:
    """The whole path on this CPU in seconds: tiny data, packed; the sprint's jobs at tiny widths, 2 epochs; then --import."""
    root = Path(args.workdir)
    fer2013, ferplus = make_tiny_data(root / "data")
    args.packs, args.cache_dir, args.out, args.workdir = str(root / "packs"), str(root / "cache"), str(root / "out"), str(root / "work")
    soft_labels = {}
    for name, source in (("fer2013", fer2013), ("ferplus", ferplus)):
        pack = write_pack(Path(source), load_dataset(source, args.cache_dir), Path(args.packs) / f"{name}{PACK_SUFFIX}")
        split_file(pack, pack.stat().st_size // 3 + 1)  # travels in parts, as the real packs do: the sprint joins and checks them
        pack.unlink()
        soft_labels[name] = str(make_soft_labels(load_dataset(source, args.cache_dir), root / "data" / f"soft_labels_{name}.npz"))
    code = run(args, smoke_plan(args.plan, soft_labels), PLANS[args.plan][1])
    returned = sorted(Path(args.out).iterdir())
    too_big = [p.name for p in returned if p.stat().st_size > RESULT_FILE_MIB * 2**20]
    if len(returned) > RESULT_FILES or too_big:
        raise DataError(f"{args.out} holds {len(returned)} files ({', '.join(too_big) or 'none'} too big): more than a device call returns")
    return code or import_sprint(Path(args.out), fer2013, ferplus, args.cache_dir, root / "checkpoints", root / "results", root / "import", latency=False)
