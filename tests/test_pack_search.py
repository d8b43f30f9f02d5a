"""training.evaluate --pack-search: every pack of the candidates ranked by the tier's measure on the selection split only."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_checkpoint

from emoji_mirror.checkpoint import load_model
from emoji_mirror.default_rule import TIERS
from training.data import load_dataset
from training.data.synthetic import make_fer2013
from training.evaluate import pack_search
from training.evaluate.__main__ import main
from training.evaluate.entries import Datasets
from training.evaluate.scoring import Probabilities, score, split_probabilities


@pytest.fixture(scope="module")
def tiny_fer(tmp_path_factory):
    return make_fer2013(tmp_path_factory.mktemp("tiny") / "fer2013", seed=0, per_class=dict.fromkeys(("train", "public_test", "private_test"), 3))


@pytest.fixture
def candidates(tmp_path):
    return [make_checkpoint(tmp_path / f"m{seed}.pt", "baseline_cnn", seed) for seed in range(3)]


def test_every_pack_is_scored_as_the_mean_of_its_members_and_ranked_on_the_selection_split_only(tiny_fer, candidates, tmp_path):
    datasets = Datasets(str(tiny_fer), None, str(tmp_path / "cache"))
    named = [(str(p), p) for p in candidates]
    selection, packs = pack_search.search_packs(named, datasets, Probabilities("cpu"), TIERS["live"], max_members=3)
    assert selection == "fer2013/public_test" and len(packs) == 7  # 3 singles, 3 pairs, 1 triple
    faces = {s: load_dataset(tiny_fer, tmp_path / "cache").splits[s].labelled() for s in ("public_test", "private_test")}
    loaded = {p.stem: load_model(p) for p in candidates}
    for pack in packs:
        for split, data in faces.items():
            probs = np.mean([split_probabilities(loaded[n].model, data.images, loaded[n].preprocessing) for n in pack.members], axis=0)
            assert pack.scores[f"fer2013/{split}"] == score(probs, data.labels)
    ranks = [(-p.scores[selection]["mean_recall"], len(p.members)) for p in packs]
    assert ranks == sorted(ranks)  # the reported split never enters the order
    photo = pack_search.search_packs(named, datasets, Probabilities("cpu"), TIERS["photo"], max_members=2)[1]
    assert [p.scores[selection]["accuracy"] for p in photo] == sorted((p.scores[selection]["accuracy"] for p in photo), reverse=True)


def test_the_cli_prints_the_ranking_and_the_export_command_of_the_best_pack(tiny_fer, candidates, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["--pack-search", "--checkpoints", *map(str, candidates), "--data", str(tiny_fer), "--cache-dir", str(tmp_path / "cache"),
                 "--max-members", "2", "--rows", "3", "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0 and "6 packs of up to 2 of 3 checkpoints, ranked by mean per-class recall on fer2013/public_test" in printed
    table = [line for line in printed.splitlines() if " | " in line]
    assert len(table) == 4 and "fer2013/private_test acc" in table[0]  # header and three rows
    assert ("python -m training.export --ensemble" in printed) or ("alone: nothing to pack" in printed)
    assert not out.exists()  # a search writes nothing


def test_the_export_command_names_the_members_as_given(candidates):
    named = [(f"given/{p.name}", p) for p in candidates]
    best = pack_search.PackScore(("m2", "m0"), {})
    assert pack_search.pack_command(named, best, "fer.zip").startswith("python -m training.export --ensemble given/m2.pt,given/m0.pt --out PACK.pt --data fer.zip")
    assert "alone" in pack_search.pack_command(named, pack_search.PackScore(("m1",), {}), None)


def test_candidates_that_cannot_make_an_honest_pack_are_refused(tiny_fer, candidates, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "other.pt", meta={"dataset": "fer2013", "selection_split": "fer2013/train_holdout", "metrics": {}})
    args = ["--data", str(tiny_fer), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["--pack-search", "--checkpoints", str(candidates[0]), str(other), *args]) == 2
    assert "selected on different splits" in capsys.readouterr().err
    assert main(["--pack-search", "--checkpoints", str(candidates[0]), str(tmp_path / "missing.pt"), *args]) == 2
    assert main(["--pack-search", "--checkpoints", *map(str, candidates[:2]), "--tier", "ferplus", *args]) == 2
    assert "the ferplus tier ranks ferplus models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--pack-search", "--checkpoints", str(candidates[0]), *args])  # one checkpoint is no pack
