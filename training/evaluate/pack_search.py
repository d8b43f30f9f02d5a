"""Which checkpoints to pack: every mean of up to N candidates, ranked by a tier's measure on the selection split only."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoji_mirror.default_rule import Tier

from .entries import Datasets, entry_name, labelled_splits, load_members, selection_key
from .scoring import Probabilities, score


@dataclass(frozen=True)
class PackScore:
    """One candidate pack: its members' names and its scores (score()) on every labelled split."""

    members: tuple[str, ...]
    scores: dict[str, dict]


def search_packs(named: list[tuple[str, Path]], datasets: Datasets, probabilities: Probabilities, tier: Tier,
                 max_members: int) -> tuple[str, list[PackScore]]:
    """(selection split, every pack of 1..max_members candidates sorted best first by the tier's measure there, then by
    fewer members). The candidates must make an honest ensemble (one dataset, classes and selection split); each is scored
    as served (int8 when calibrated), once per split."""
    members = load_members(named, datasets, probabilities.device)
    dataset = members[0].dataset
    if dataset.name != tier.dataset:
        raise ValueError(f"the {tier.name} tier ranks {tier.dataset} models; these are {dataset.name} models")
    splits = labelled_splits(dataset, named[0][1])
    selection = selection_key(members[0].loaded.meta.get("selection_split"), dataset, splits)
    probs = {entry_name(m.path): {split: probabilities.of(m.loaded, images) for split, (images, _) in splits.items()} for m in members}
    packs = []
    for size in range(1, min(max_members, len(members)) + 1):
        for combo in itertools.combinations(probs, size):
            packs.append(PackScore(combo, {split: score(np.mean([probs[n][split] for n in combo], axis=0), labels)
                                           for split, (_, labels) in splits.items()}))
    packs.sort(key=lambda p: (-p.scores[selection][tier.metric], len(p.members)))
    return selection, packs


def pack_table(selection: str, packs: list[PackScore], tier: Tier, rows: int) -> str:
    """The best `rows` packs as a text table: the ranking measure on the selection split, then accuracy and macro-F1 on
    every other split (reported, never used to rank)."""
    reported = [s for s in packs[0].scores if s != selection]
    head = [f"{selection} {tier.metric_title} (ranks)", f"{selection} acc"] + [f"{s} {m}" for s in reported for m in ("acc", "F1")]
    lines = [" | ".join(head + ["members"])]
    for pack in packs[:rows]:
        cells = [f"{pack.scores[selection][tier.metric]:.2f}", f"{pack.scores[selection]['accuracy']:.2f}"]
        cells += [f"{pack.scores[s][m]:.2f}" for s in reported for m in ("accuracy", "macro_f1")]
        lines.append(" | ".join(cells + [" + ".join(pack.members)]))
    return "\n".join(lines)


def pack_command(named: list[tuple[str, Path]], best: PackScore, data: str | None) -> str:
    """The export that builds the best pack (its ms per face is then measured by evaluating the packed file), or a note
    when the best is one checkpoint alone."""
    if len(best.members) == 1:
        return f"the best is {best.members[0]} alone: nothing to pack"
    paths = {entry_name(path): given for given, path in named}
    data_flag = f" --data {data}" if data else ""
    return (f"python -m training.export --ensemble {','.join(paths[n] for n in best.members)} --out PACK.pt{data_flag}"
            f"  (then --int8 PACK.pt --out checkpoints/NAME.pt{data_flag} --calibrate 512 for int8 activations)")


def main(named: list[tuple[str, Path]], datasets: Datasets, probabilities: Probabilities, tier: Tier, max_members: int,
         rows: int, data: str | None) -> int:
    """--pack-search: print the ranking and the export command of the best pack."""
    try:
        selection, packs = search_packs(named, datasets, probabilities, tier, max_members)
    except ValueError as exc:  # CheckpointError and DataError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(packs)} packs of up to {max_members} of {len(named)} checkpoints, ranked by {tier.metric_title} on {selection} "
          f"(the {tier.name} tier's measure; other splits reported, never used to rank):")
    print(pack_table(selection, packs, tier, rows))
    print(pack_command(named, packs[0], data))
    return 0
