"""training.evaluate (CLI, scoring, report figures) and benchmarks.models on tiny synthetic FER2013 and FER+ and fresh checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import make_checkpoint
from PIL import Image
from sklearn.metrics import confusion_matrix

from emoji_mirror.checkpoint import LoadedModel, atomic_torch_save, checkpoint_payload, load_model
from emoji_mirror.labels import FER2013_CLASSES, FERPLUS_CLASSES
from emoji_mirror.models import create_model
from emoji_mirror.paths import REPO_ROOT
from emoji_mirror.preprocessing import Preprocessing, normalize
from training.data import load_dataset
from training.data.synthetic import ferplus_votes, make_fer2013, make_ferplus
from training.evaluate import report
from training.evaluate.__main__ import main
from training.evaluate.scoring import latency_ms_per_face, score, split_probabilities
from training.evaluate.summary import LOCK_FILE

FACES_PER_CLASS = 3  # per split: 21 faces in each FER2013 split
FERPLUS_PER_CLASS = 2  # faces of each of the 8 FER+ emotions per folder ...
FERPLUS_UNCLEAR = 3  # ... and faces without a majority, which the FER+ protocol drops
ENTRY_KEYS = {"name", "arch", "checkpoint", "params", "file_mb", "dataset", "classes", "selection_split", "tta", "metrics", "per_class",
              "confusion_matrix", "latency_ms_per_face", "train", "data_fingerprint", "commit", "images"}
FER_SPLITS = ["fer2013/public_test", "fer2013/private_test"]


@pytest.fixture(scope="module")
def tiny_fer(tmp_path_factory) -> Path:
    """A synthetic Kaggle-layout FER2013 folder with FACES_PER_CLASS faces of every class in every split."""
    return make_fer2013(tmp_path_factory.mktemp("tiny") / "fer2013", seed=0, per_class=dict.fromkeys(("train", "public_test", "private_test"), FACES_PER_CLASS))


@pytest.fixture(scope="module")
def tiny_ferplus(tmp_path_factory) -> Path:
    """A synthetic FER+ folder: FERPLUS_PER_CLASS faces of each emotion per folder, and FERPLUS_UNCLEAR faces without a majority."""
    votes = ferplus_votes(dict.fromkeys(("FER2013Train", "FER2013Valid", "FER2013Test"), FERPLUS_PER_CLASS), unclear=FERPLUS_UNCLEAR)
    return make_ferplus(tmp_path_factory.mktemp("tiny") / "ferplus", votes=votes)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run(checkpoints, out: Path, data: Path, cache: Path, *extra: str) -> int:
    return main(["--checkpoints", *map(str, checkpoints), "--data", str(data), "--out", str(out), "--cache-dir", str(cache),
                 "--no-latency", "--device", "cpu", *extra])


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def assert_figure(path: Path) -> None:
    """A whole figure, in the format its name says (WebP: the charts losslessly, the attention maps lossy)."""
    with Image.open(path) as image:
        assert image.format == ("WEBP" if path.suffix == ".webp" else "PNG") and min(image.size) > 200
        image.load()  # decodes every pixel: a truncated file fails here


def expected(loaded: LoadedModel, data: Path, cache: Path, split: str, tta: str = "none") -> tuple[dict, list]:
    """Metrics and confusion matrix computed directly with the model, independent of training.evaluate."""
    faces = load_dataset(data, cache).splits[split].labelled()
    probs = split_probabilities(loaded.model, faces.images, loaded.preprocessing, tta=tta)
    return score(probs, faces.labels), confusion_matrix(faces.labels, probs.argmax(1), labels=range(len(loaded.classes))).tolist()


def ferplus_checkpoint(path: Path) -> Path:
    model = create_model("baseline_cnn", num_classes=len(FERPLUS_CLASSES))
    meta = {"dataset": "ferplus", "selection_split": "ferplus/public_test", "metrics": {}, "epoch": 3}
    atomic_torch_save(checkpoint_payload(model, "baseline_cnn", {}, FERPLUS_CLASSES, Preprocessing(), meta), path)
    return path


@pytest.mark.slow
def test_summary_csvs_and_pngs_for_three_architectures(tiny_fer, cache_dir, tmp_path, capsys):
    checkpoints = [make_checkpoint(tmp_path / f"{arch}.pt", arch) for arch in ("baseline_cnn", "attention_cnn", "vit_tiny")]
    out = tmp_path / "results"
    assert run(checkpoints, out, tiny_fer, cache_dir) == 0

    result = summary(out)
    assert set(result) == {"generated", "models", "images"} and result["images"] == {"comparison": "comparison.webp"}
    assert [e["name"] for e in result["models"]] == ["baseline_cnn", "attention_cnn", "vit_tiny"]
    for entry, checkpoint in zip(result["models"], checkpoints):
        loaded = load_model(checkpoint)
        assert set(entry) == ENTRY_KEYS
        assert entry["checkpoint"] == str(checkpoint) and entry["dataset"] == "fer2013" and entry["classes"] == list(FER2013_CLASSES)
        assert entry["params"] == sum(p.numel() for p in loaded.model.parameters())
        assert entry["selection_split"] == "fer2013/public_test" and entry["tta"] == "none" and entry["latency_ms_per_face"] is None
        assert list(entry["metrics"]) == FER_SPLITS
        for split in FER_SPLITS:
            metrics, matrix = expected(loaded, tiny_fer, cache_dir, split.split("/")[1])
            assert entry["metrics"][split] == metrics and metrics["n"] == 7 * FACES_PER_CLASS
            assert entry["confusion_matrix"][split] == matrix
            assert [entry["per_class"][split][c]["support"] for c in FER2013_CLASSES] == [FACES_PER_CLASS] * 7
            recalls = [entry["per_class"][split][c]["recall"] for c in FER2013_CLASSES]
            assert recalls == pytest.approx([100 * matrix[i][i] / FACES_PER_CLASS for i in range(7)], abs=0.01)
        with open(out / f"per_class_{entry['name']}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2 * 7 and {r["split"] for r in rows} == set(FER_SPLITS)
        assert float(rows[3]["f1"]) == entry["per_class"][rows[3]["split"]][rows[3]["class"]]["f1"]
        assert entry["images"] == {"confusion": f"confusion_{entry['name']}.webp", "attention": f"attention_{entry['name']}.webp"}
        for image in entry["images"].values():
            assert_figure(out / image)
    assert_figure(out / "comparison.webp")
    leftovers = [p.name for p in out.glob(".*") if p.name != LOCK_FILE]  # the summary's lock file stays (git ignores it)
    assert not list(out.glob("*.tmp")) and leftovers == [], "an atomic write left its temporary file"

    printed = capsys.readouterr().out
    for column in ("fer2013/public_test acc%", "fer2013/private_test acc%", "fer2013/public_test F1%", "selection split", "TTA"):
        assert column in printed
    assert "selected" in printed  # the footnote explaining the '*' on selection-split figures


@pytest.mark.slow
def test_merging_keeps_other_entries_and_fresh_replaces(tiny_fer, cache_dir, tmp_path):
    out = tmp_path / "results"
    first = make_checkpoint(tmp_path / "first.pt", "baseline_cnn", seed=1)
    run_dir = tmp_path / "runs" / "my_run"
    run_dir.mkdir(parents=True)
    make_checkpoint(run_dir / "best.pt", "baseline_cnn", seed=2,
                    meta={"dataset": "fer2013", "selection_split": "fer2013/public_test", "metrics": {}, "epoch": 2,
                          "config": {"device": "cpu", "epochs": 5}})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "seconds": 1.5}) + "\n" for e in (1, 2, 3)))

    assert run([first], out, tiny_fer, cache_dir) == 0
    assert run([tmp_path / "runs"], out, tiny_fer, cache_dir) == 0
    entries = {e["name"]: e for e in summary(out)["models"]}
    assert list(entries) == ["first", "my_run"]
    assert entries["my_run"]["train"] == {"epochs": 3, "best_epoch": 2, "device": "cpu", "seconds": 4.5, "config": {"device": "cpu", "epochs": 5}}
    assert entries["first"]["train"]["epochs"] is None  # no runs folder: only what the checkpoint's metadata holds

    assert run([first], out, tiny_fer, cache_dir, "--tta", "flip") == 0
    entries = {e["name"]: e for e in summary(out)["models"]}
    assert list(entries) == ["first", "my_run"] and entries["first"]["tta"] == "flip" and entries["my_run"]["tta"] == "none"

    assert run([first], out, tiny_fer, cache_dir, "--fresh") == 0
    assert [e["name"] for e in summary(out)["models"]] == ["first"]


@pytest.mark.slow
def test_bad_checkpoints_are_reported_and_the_others_still_evaluated(tiny_fer, cache_dir, tmp_path, capsys):
    good = make_checkpoint(tmp_path / "good.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:5000])
    same_name = make_checkpoint(tmp_path / "elsewhere" / "good.pt")
    out = tmp_path / "results"
    assert run([corrupt, good, tmp_path / "missing.pt", same_name, good], out, tiny_fer, cache_dir) == 1
    errors = capsys.readouterr().err
    assert f"{corrupt} is not a readable PyTorch checkpoint" in errors
    assert "missing.pt" in errors and "not found" in errors
    assert f"{same_name}: its summary name 'good' is already taken" in errors
    assert "Traceback" not in errors
    assert [e["name"] for e in summary(out)["models"]] == ["good"]

    (out / "summary.json").write_text('{"models": [')  # a damaged summary is never silently replaced
    assert run([good], out, tiny_fer, cache_dir) == 2
    assert "pass --fresh" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("tta", ["none", "flip", "tencrop"])
def test_tta_modes(tta, tiny_fer, cache_dir, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "cnn.pt", "baseline_cnn", seed=5)  # a seed whose predictions vary with the views
    assert run([checkpoint], tmp_path / "results", tiny_fer, cache_dir, "--tta", tta) == 0
    (entry,) = summary(tmp_path / "results")["models"]
    loaded = load_model(checkpoint)
    metrics, matrix = expected(loaded, tiny_fer, cache_dir, "private_test", tta)
    assert entry["tta"] == tta
    assert entry["metrics"]["fer2013/private_test"] == metrics and entry["confusion_matrix"]["fer2013/private_test"] == matrix
    if tta != "none":  # the views really change the predictions, so the equality above pins the mode used
        assert matrix != expected(loaded, tiny_fer, cache_dir, "private_test")[1]


@pytest.mark.slow
def test_ferplus_checkpoints_are_scored_on_majority_labelled_ferplus(tiny_fer, tiny_ferplus, cache_dir, tmp_path, capsys):
    ferplus = ferplus_checkpoint(tmp_path / "ferplus_cnn.pt")
    fer = make_checkpoint(tmp_path / "fer_cnn.pt")
    out = tmp_path / "results"

    assert run([ferplus, fer], out, tiny_fer, cache_dir) == 1
    assert "--ferplus" in capsys.readouterr().err
    assert [e["name"] for e in summary(out)["models"]] == ["fer_cnn"]

    assert run([ferplus], out, tiny_fer, cache_dir, "--ferplus", str(tiny_ferplus)) == 0
    entry = summary(out)["models"][1]
    assert entry["name"] == "ferplus_cnn" and entry["dataset"] == "ferplus" and entry["classes"] == list(FERPLUS_CLASSES)
    splits = load_dataset(tiny_ferplus, cache_dir).splits
    assert list(entry["metrics"]) == ["ferplus/public_test", "ferplus/private_test"]
    for name in ("public_test", "private_test"):
        labelled = int((splits[name].labels >= 0).sum())
        assert entry["metrics"][f"ferplus/{name}"]["n"] == labelled
        assert np.asarray(entry["confusion_matrix"][f"ferplus/{name}"]).shape == (8, 8)
        assert labelled == 8 * FERPLUS_PER_CLASS < len(splits[name])  # the faces without a majority are dropped
    assert entry["train"]["best_epoch"] == 3


@pytest.fixture(scope="module")
def faces(tiny_fer, cache_dir) -> torch.Tensor:
    """Normalised PrivateTest faces, two per class."""
    split = load_dataset(tiny_fer, cache_dir).splits["private_test"]
    chosen = report.attention_faces(split.labels, 7)
    assert len(chosen) == 14 and list(split.labels[chosen]) == [c for c in range(7) for _ in range(2)]
    return normalize(torch.from_numpy(split.images[chosen]), Preprocessing())


@pytest.mark.parametrize(("arch", "method"), [("baseline_cnn", "Grad-CAM"), ("resnet_fer_small", "Grad-CAM"),
                                              ("attention_cnn", "CBAM"), ("vit_tiny", "rollout")])
def test_saliency_maps_per_architecture(arch, method, faces):
    torch.manual_seed(0)
    model = create_model(arch).eval()
    maps, predicted, name = report.saliency_maps(model, faces)
    assert method in name
    assert maps.shape == (14, 48, 48) and torch.isfinite(maps).all()
    assert torch.equal(predicted, model(faces).argmax(1))
    assert maps.amin((1, 2)).eq(0).all() and maps.amax((1, 2)).sub(1).abs().lt(1e-5).all()  # every map spans [0, 1]
    assert (maps[0] - maps[1]).abs().max() > 0.05  # two different faces, two different maps


def test_grad_cam_points_at_the_evidence_for_the_target_class():
    # score(class 0) = mean brightness, so class 0's evidence is exactly where the image is bright.
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[3].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.zeros(1, 1, 48, 48)
    x[..., 4:16, 30:44] = 1.0
    cam = report.grad_cam(model, x, torch.tensor([0]))[0]
    assert cam[4:16, 30:44].min() > 0.9 and cam[30:, :20].max() < 0.1
    assert report.grad_cam(model, x, torch.tensor([1])).abs().max() == 0  # no positive evidence for class 1


def test_vit_attention_matches_timms_own_attention(faces):
    torch.manual_seed(0)
    model = create_model("vit_tiny").eval()
    ours = report.vit_attentions(model, faces)
    timm_attention = []
    for block in model.blocks:
        block.attn.fused_attn = False  # timm then materialises softmax(q k^T) and passes it through attn_drop
        block.attn.attn_drop.register_forward_hook(lambda module, inputs, output: timm_attention.append(output.mean(1)))
    with torch.no_grad():
        model(faces)
    assert len(ours) == len(model.blocks)
    for mine, theirs in zip(ours, timm_attention):
        torch.testing.assert_close(mine, theirs)


def test_latency_is_measured_per_face_at_batch_1_and_8():
    cfg = Preprocessing()
    latency = latency_ms_per_face(create_model("baseline_cnn").eval(), cfg, min_run_time=0.01)
    assert set(latency) == {"batch1", "batch8"} and all(v > 0 for v in latency.values())


@pytest.mark.slow
def test_model_benchmark_prints_and_writes_figures(tmp_path, capsys):
    from benchmarks.models import main as benchmark_main

    assert benchmark_main(["--models", "baseline_cnn", "--warmup", "1", "--steps", "1", "--min-run-time", "0.01", "--json", str(tmp_path / "b.json")]) == 0
    (row,) = json.loads((tmp_path / "b.json").read_text())["models"]
    assert row["model"] == "baseline_cnn" and row["train_images_per_s"] > 0 and row["ms_per_face_batch1"] > 0 and row["ms_per_face_batch8"] > 0
    assert "train_images_per_s" in capsys.readouterr().out


# ---------------------------------------------------------------- ensembles, TTA chosen on the selection split, the default rule


@pytest.mark.slow
def test_ensemble_scores_the_mean_of_its_members_with_tta_chosen_on_the_selection_split(tiny_fer, cache_dir, tmp_path):
    members = [make_checkpoint(tmp_path / f"m{seed}.pt", arch, seed) for seed, arch in enumerate(("baseline_cnn", "attention_cnn"))]
    out = tmp_path / "results"
    code = main(["--ensemble", f"duo={members[0]},{members[1]}", "--tta", "auto", "--data", str(tiny_fer), "--out", str(out),
                 "--cache-dir", str(cache_dir), "--no-latency", "--device", "cpu"])
    assert code == 0
    [entry] = summary(out)["models"]  # --ensemble alone scores only the ensemble
    assert entry["name"] == "duo" and entry["members"] == ["m0", "m1"] and entry["arch"] == "ensemble(baseline_cnn + attention_cnn)"
    loaded = [load_model(m) for m in members]
    assert entry["params"] == sum(sum(p.numel() for p in m.model.parameters()) for m in loaded)
    faces = {split: load_dataset(tiny_fer, cache_dir).splits[split].labelled() for split in ("public_test", "private_test")}

    def mean_probs(split, tta):
        return np.mean([split_probabilities(m.model, faces[split].images, m.preprocessing, tta=tta) for m in loaded], axis=0)

    on_selection = {tta: score(mean_probs("public_test", tta), faces["public_test"].labels)["accuracy"] for tta in ("none", "flip", "tencrop")}
    assert entry["tta_accuracy_on_selection"] == on_selection
    assert entry["tta"] == max(on_selection, key=on_selection.get)
    for split in ("public_test", "private_test"):
        assert entry["metrics"][f"fer2013/{split}"] == score(mean_probs(split, entry["tta"]), faces[split].labels)
    assert_figure(out / entry["images"]["confusion"])


@pytest.mark.slow
def test_a_model_scored_alone_and_in_an_ensemble_runs_each_split_and_tta_once(tiny_fer, cache_dir, tmp_path, monkeypatch):
    from training.evaluate import scoring

    members = [make_checkpoint(tmp_path / f"m{seed}.pt", "baseline_cnn", seed) for seed in range(2)]
    passes = []
    real = scoring.split_probabilities
    monkeypatch.setattr(scoring, "split_probabilities", lambda model, images, *a, **k: passes.append(len(images)) or real(model, images, *a, **k))
    code = main(["--checkpoints", *map(str, members), "--ensemble", f"duo={members[0]},{members[1]}", "--tta", "auto", "--data", str(tiny_fer),
                 "--out", str(tmp_path / "results"), "--cache-dir", str(cache_dir), "--no-latency", "--device", "cpu"])
    tta = {m["name"]: m["tta"] for m in summary(tmp_path / "results")["models"]}
    assert code == 0 and set(tta) == {"m0", "m1", "duo"}
    # each member: the three TTA modes on PublicTest, then PrivateTest with its own mode and the ensemble's; nothing twice
    assert len(passes) == sum(3 + len({tta[m], tta["duo"]}) for m in ("m0", "m1")), (passes, tta)


def test_ensemble_members_must_share_a_selection_split(tiny_fer, cache_dir, tmp_path, capsys):
    a = make_checkpoint(tmp_path / "a.pt")
    b = make_checkpoint(tmp_path / "b.pt", meta={"dataset": "fer2013", "selection_split": "fer2013/train_holdout", "metrics": {}})
    code = main(["--ensemble", f"{a},{b}", "--data", str(tiny_fer), "--out", str(tmp_path / "r"), "--cache-dir", str(cache_dir), "--no-latency"])
    assert code == 1
    assert "selected on different splits" in capsys.readouterr().err
    assert main(["--ensemble", str(a), "--data", str(tiny_fer), "--out", str(tmp_path / "r")]) == 1


def rule_entry(name: str, ms: float | None, recall: float, **extra) -> dict:
    per_class = {c: {"precision": 50.0, "recall": recall, "f1": 50.0, "support": 10} for c in FER2013_CLASSES}
    return {"name": name, "params": 1, "dataset": "fer2013", "selection_split": "fer2013/public_test", "classes": list(FER2013_CLASSES),
            "metrics": {"fer2013/public_test": {"accuracy": 90.0, "macro_f1": 90.0}}, "per_class": {"fer2013/public_test": per_class},
            "latency_ms_per_face": None if ms is None else {"batch1": ms, "batch8": ms / 2}, **extra}


def not_json(constant: str):
    raise AssertionError(f"{constant} is not JSON: strict readers (browsers, jq) refuse the file")


def test_the_shipped_default_file_is_strict_json():
    json.loads((REPO_ROOT / "checkpoints" / "default.json").read_text(), parse_constant=not_json)


def test_default_rule_picks_the_best_mean_recall_among_fast_single_models(tmp_path, monkeypatch):
    from emoji_mirror import paths
    from emoji_mirror.default_rule import rule_choice
    from training.evaluate.summary import write_default

    models = [
        rule_entry("slow_but_best", 3.9, 70.0),
        rule_entry("ensemble", 1.0, 80.0, members=["a", "b"]),
        rule_entry("fast_good", 1.9, 60.0),
        rule_entry("fast_worse", 0.9, 55.0),
        rule_entry("unmeasured", None, 99.0),
        {**rule_entry("ferplus_model", 0.5, 95.0), "dataset": "ferplus"},
    ]
    assert rule_choice(models) == "fast_good"
    assert rule_choice([rule_entry("slow", 2.5, 70.0)]) is None

    monkeypatch.setattr(paths, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(paths, "DEFAULT_FILE", tmp_path / "default.json")
    monkeypatch.delenv(paths.CHECKPOINT_ENV, raising=False)
    for name in ("a_first_by_name", "fast_good"):
        make_checkpoint(tmp_path / f"{name}.pt")
    assert paths.resolve_checkpoint() == tmp_path / "a_first_by_name.pt"  # no default.json: the first shipped
    assert write_default(models, tmp_path / "default.json") == "fast_good"
    record = json.loads((tmp_path / "default.json").read_text(), parse_constant=not_json)  # models with no file: MB null, not NaN
    assert record["checkpoint"] == "fast_good" and "mean per-class recall" in record["rule"]
    assert paths.resolve_checkpoint() == tmp_path / "fast_good.pt"
    (tmp_path / "fast_good.pt").unlink()  # the rule's choice is not shipped here: its next eligible candidate, not the first by name
    make_checkpoint(tmp_path / "fast_worse.pt")
    assert paths.resolve_checkpoint() == tmp_path / "fast_worse.pt"
    (tmp_path / "default.json").write_text('{"checkpoint": "../../etc/passwd"}')
    assert paths.resolve_checkpoint() == tmp_path / "a_first_by_name.pt"  # a name, never a path


@pytest.mark.slow
def test_charts_are_saved_as_lossless_webp_and_attention_maps_as_lossy(tmp_path):
    confusion = np.diag([5, 1, 2, 9, 4, 3, 6])
    fig = report.confusion_figure({"fer2013/private_test": confusion}, list(FER2013_CLASSES), {"fer2013/private_test": 60.0}, "chart")
    report.save_figure(fig, tmp_path / "chart.png")
    report.save_figure(fig, tmp_path / "chart.webp", lossless=True)
    report.save_figure(fig, tmp_path / "lossy.webp", lossless=False)
    # the RIFF container names its bitstream: VP8L is WebP's lossless coding, "VP8 " the lossy one
    assert (tmp_path / "chart.webp").read_bytes()[12:16] == b"VP8L" and (tmp_path / "lossy.webp").read_bytes()[12:16] == b"VP8 "
    with Image.open(tmp_path / "chart.png") as png, Image.open(tmp_path / "chart.webp") as webp:
        assert png.size == webp.size and (tmp_path / "chart.webp").stat().st_size < (tmp_path / "chart.png").stat().st_size
