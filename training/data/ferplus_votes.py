"""FER+ vote distributions as soft labels for FER2013's training faces: `python -m training.data.ferplus_votes --data FER2013 --ferplus FERPLUS --out FILE.npz`.

FER+ relabelled the same 35,887 faces with ten annotators each, so a subtle face carries its share of votes for every
emotion it shows instead of one hard label. The two downloads store the faces differently (FER2013's Kaggle tree as
JPEGs with their own contrast, FER+ as PNGs from the original CSV), so each FER2013 training face is matched to its FER+
twin by the correlation of their pixels. The file is a soft-label file in `training.distill`'s format (fp16 rows over
FER2013's seven classes, fingerprinted with both datasets), read by `training.train --ferplus-votes FILE`: a matched
face's row is its FER+ votes over the seven FER2013 emotions (contempt, unknown and not-a-face dropped), an unmatched
face's row is its FER2013 label.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..distill import save_soft_targets
from .cache import load_dataset
from .dataset import DataError, FaceDataset

MATCH_MIN_CORRELATION = 0.8  # the same face in the two downloads: 0.97 median correlation; labels agree as often down to 0.8
SHORTLIST_SIZE = 12  # coarse 12 x 12 thumbnails pick this many candidates; full-size pixels decide among them
CHUNK = 1024


def _normalized(images: np.ndarray, side: int) -> np.ndarray:
    """Each face as a zero-mean, unit-norm vector of its side x side thumbnail (block means)."""
    n, size = len(images), images.shape[1]
    x = images.astype(np.float32)
    if side != size:
        x = x.reshape(n, side, size // side, side, size // side).mean((2, 4))
    x = x.reshape(n, -1)
    x -= x.mean(1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)


def match_faces(faces: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, correlation): for each face, the candidate with the highest pixel correlation (-1 where it is below
    MATCH_MIN_CORRELATION, as for blank faces), found on thumbnails first, then checked at full size."""
    coarse_f, coarse_c = _normalized(faces, 12), _normalized(candidates, 12)
    full_f, full_c = _normalized(faces, faces.shape[1]), _normalized(candidates, candidates.shape[1])
    index, corr = np.full(len(faces), -1, dtype=np.int64), np.zeros(len(faces), dtype=np.float32)
    k = min(SHORTLIST_SIZE, len(candidates))
    for start in range(0, len(faces), CHUNK):
        stop = min(start + CHUNK, len(faces))
        shortlist = np.argpartition(-(coarse_f[start:stop] @ coarse_c.T), k - 1, axis=1)[:, :k]
        full = np.einsum("nd,nkd->nk", full_f[start:stop], full_c[shortlist])
        best = full.argmax(1)
        index[start:stop], corr[start:stop] = shortlist[np.arange(stop - start), best], full[np.arange(stop - start), best]
    index[corr < MATCH_MIN_CORRELATION] = -1
    return index, corr


def vote_targets(fer2013: FaceDataset, ferplus: FaceDataset) -> tuple[np.ndarray, np.ndarray]:
    """((N, 7) soft labels, (N,) matched) for FER2013's labelled training faces: FER+ votes over FER2013's classes where
    the face is found in FER+'s training split with at least one emotion vote among them, else the FER2013 label."""
    if fer2013.name != "fer2013" or ferplus.name != "ferplus":
        raise DataError(f"need FER2013 and FER+ (got {fer2013.name} and {ferplus.name})")
    train, plus = fer2013.splits["train"].labelled(), ferplus.splits["train"]
    if plus.votes is None:
        raise DataError("the FER+ data has no vote counts")
    columns = [ferplus.classes.index(c) for c in fer2013.classes]
    votes = plus.votes[:, columns]
    index, _ = match_faces(train.images, plus.images)
    targets = np.eye(len(fer2013.classes), dtype=np.float32)[train.labels]
    matched = index >= 0
    matched[matched] = votes[index[matched]].sum(1) > 0
    rows = votes[index[matched]]
    targets[matched] = rows / rows.sum(1, keepdims=True)
    return targets, matched


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.data.ferplus_votes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="FER2013 (default: $EMOJI_MIRROR_DATA)")
    p.add_argument("--ferplus", required=True, help="FER+ (ferplus.zip or its folder)")
    p.add_argument("--cache-dir", help="decoded-data cache (default: $EMOJI_MIRROR_CACHE or ~/.cache/emoji_mirror)")
    p.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    args = p.parse_args(argv)
    try:
        fer2013, ferplus = load_dataset(args.data, args.cache_dir), load_dataset(args.ferplus, args.cache_dir)
        targets, matched = vote_targets(fer2013, ferplus)
        save_soft_targets(args.out, targets, fer2013, [f"ferplus votes ({ferplus.fingerprint[:12]})"], "none", [ferplus.fingerprint])
    except (DataError, OSError) as exc:  # OSError: an --out that cannot be written (written atomically: nothing half-done is left)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels = fer2013.splits["train"].labelled().labels
    agree = float((targets[matched].argmax(1) == labels[matched]).mean() * 100) if matched.any() else 0.0
    print(f"{args.out}: {int(matched.sum())} of {len(targets)} FER2013 training faces matched to FER+ votes "
          f"(most votes = the FER2013 label for {agree:.1f}% of them); the rest keep their label")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
