"""`python -m training.data download|info`: fetch FER2013 from Kaggle, or decode a dataset and print its splits."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .cache import DATA_ENV, load_dataset
from .dataset import DataError

KAGGLE_DATASET = "msambare/fer2013"


def kaggle_download(dest: Path) -> Path:
    """Download the Kaggle FER2013 zip with the kaggle CLI (needs network and ~/.kaggle/kaggle.json)."""
    if shutil.which("kaggle") is None:
        raise DataError("the kaggle CLI is not installed: pip install kaggle, and put your API token in ~/.kaggle/kaggle.json")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["kaggle", "datasets", "download", "-d", KAGGLE_DATASET, "-p", str(dest)], check=True)
    return dest / "fer2013.zip"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help=f"download {KAGGLE_DATASET} from Kaggle")
    dl.add_argument("--dest", type=Path, default=Path("data"))
    info = sub.add_parser("info", help="decode (and cache) a dataset, print its splits and class counts")
    info.add_argument("--data", help=f"zip, folder or fer2013.csv (default: ${DATA_ENV})")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"saved {kaggle_download(args.dest)}")
            return 0
        dataset = load_dataset(args.data)
    except (DataError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{dataset.name}: fingerprint {dataset.fingerprint[:16]}")
    for split, data in dataset.splits.items():
        print(f"  {split:13s} {len(data):6d} images, {int((data.labels >= 0).sum()):6d} labelled  {dataset.class_counts(split)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
