"""The comparison page on a summary.json fixture (schema of training.evaluate), with none, and with broken ones."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from emoji_mirror import default_rule
from emoji_mirror.app import results
from emoji_mirror.labels import FER2013_CLASSES
from emoji_mirror.paths import CHECKPOINT_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPARE_PAGE = REPO_ROOT / "pages" / "compare.py"
# FER2013 PrivateTest class sizes (3589 faces; 'happy' is 879 of them, the 24.5% always-happy baseline).
PRIVATE_TEST_SUPPORT = dict(zip(FER2013_CLASSES, (491, 55, 528, 879, 594, 416, 626)))
# name, public_test %, private_test %, params, selection split, CPU ms/face at batch 1
FIXTURE_MODELS = (
    ("baseline_cnn", 63.12, 62.41, 2_012_103, "fer2013/public_test", 1.9),
    ("attention_cnn", 66.20, 65.73, 2_301_511, "fer2013/public_test", 3.4),
    ("vit_tiny", 58.04, 57.33, 5_483_527, "fer2013/train_holdout", 7.8),  # selected on a train holdout: neither test split
)
ACC, PRIV = "fer2013/public_test accuracy %", "fer2013/private_test accuracy %"


def confusion(accuracy: float, seed: int) -> list[list[int]]:
    """Counts with the PrivateTest row sums: about `accuracy` of each class on the diagonal, the rest spread at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, support in enumerate(PRIVATE_TEST_SUPPORT.values()):
        wrong = rng.multinomial(support - round(support * accuracy / 100), [1 / 6] * 6).tolist()
        rows.append(wrong[:index] + [round(support * accuracy / 100)] + wrong[index:])
    return rows


def model_entry(name, public, private, params, selection, latency, seed) -> dict:
    return {
        "name": name, "arch": name, "checkpoint": f"checkpoints/{name}.pt", "params": params, "dataset": "fer2013",
        "classes": list(FER2013_CLASSES), "selection_split": selection, "tta": "none",
        "metrics": {"fer2013/public_test": {"accuracy": public, "macro_f1": public - 7, "n": 3589},
                    "fer2013/private_test": {"accuracy": private, "macro_f1": private - 7, "n": 3589}},
        "per_class": {"fer2013/private_test": {c: {"precision": 60.0, "recall": 55.0, "f1": 57.4, "support": s} for c, s in PRIVATE_TEST_SUPPORT.items()}},
        "confusion_matrix": {"fer2013/private_test": confusion(private, seed)},
        "latency_ms_per_face": {"batch1": latency, "batch8": latency / 4},
        "train": {"epochs": 31, "best_epoch": 21, "device": "cpu", "seconds": 1402.5, "config": {"lr": 0.001, "batch_size": 64}},
        "data_fingerprint": "0123456789abcdef", "commit": "abc1234",
        "images": {"confusion": f"confusion_{name}.png", "attention": f"attention_{name}.png"},
    }


@pytest.fixture
def results_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setenv(results.RESULTS_ENV, str(folder))
    return folder


@pytest.fixture
def summary_file(results_folder) -> Path:
    """summary.json for three models; only baseline_cnn's PNGs exist (the others, and comparison.png, are missing)."""
    models = [model_entry(*spec, seed=i) for i, spec in enumerate(FIXTURE_MODELS)]
    summary = {"generated": "2025-06-01T12:00:00+00:00", "models": models, "images": {"comparison": "comparison.png"}}
    path = results_folder / results.SUMMARY_NAME
    path.write_text(json.dumps(summary))
    for kind in ("confusion", "attention"):
        Image.new("RGB", (80, 60), "navy").save(results_folder / f"{kind}_baseline_cnn.png")
    return path


def run_page() -> AppTest:
    at = AppTest.from_file(str(COMPARE_PAGE), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def display_values(at: AppTest, index: int = 0) -> pd.DataFrame:
    """The table as the page shows it (the Styler's formatted strings)."""
    return pa.ipc.open_stream(at.dataframe[index].proto.arrow_data.styler.display_values).read_all().to_pandas()


FULL_TABLE = 1 + len(default_rule.TIERS)  # after "What ships" and one candidates table per tier
PER_CLASS = FULL_TABLE + 1


def chart_data(at: AppTest, index: int) -> list[pd.DataFrame]:
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in at.get("vega_lite_chart")[index].proto.datasets]


@pytest.mark.slow
def test_table_shows_scores_per_split_and_marks_each_models_selection_split(summary_file):
    at = run_page()
    table = at.dataframe[FULL_TABLE].value
    assert list(table.columns) == [
        "model", "shipped", "dataset", PRIV, "fer2013/private_test macro-F1 %", ACC, "fer2013/public_test macro-F1 %",  # the reported split leads
        "CPU ms/face (batch1)", "CPU ms/face (batch8)", "params (M)", "selected on", "TTA", "arch",
    ]  # fmt: skip
    table = table.set_index("model")
    assert list(table.index) == list(table[PRIV].sort_values(ascending=False).index)  # sorted by the reported accuracy
    assert table.loc["baseline_cnn", "shipped"] == "yes" and table.loc["vit_tiny", "shipped"] == "no"  # vit_tiny.pt is retired
    assert table.loc["attention_cnn", ACC] == 66.20 and table.loc["attention_cnn", PRIV] == 65.73
    assert table.loc["baseline_cnn", "fer2013/private_test macro-F1 %"] == pytest.approx(55.41)
    assert table.loc["vit_tiny", "params (M)"] == pytest.approx(5.483527)
    assert table.loc["baseline_cnn", "CPU ms/face (batch1)"] == 1.9 and table.loc["vit_tiny", "TTA"] == "none"

    shown = display_values(at, FULL_TABLE).set_index("model")
    mark = results.SELECTED_MARK
    assert shown.loc["attention_cnn", ACC] == f"66.20 {mark}"
    assert shown.loc["attention_cnn", PRIV] == "65.73", "the reported split carries no mark"
    assert mark not in "".join(shown.loc["vit_tiny"].astype(str)), "vit_tiny was selected on neither test split"
    assert shown.loc["vit_tiny", "selected on"] == "fer2013/train_holdout"

    captions = " ".join(c.value for c in at.caption)
    assert "select on PublicTest, report on PrivateTest" in captions and "24.5%" in captions


@pytest.mark.slow
def test_charts_use_the_summary_numbers_and_chance_level(summary_file):
    at = run_page()
    bars, chance = chart_data(at, 0)
    assert set(zip(bars["model"], bars["split"], bars["accuracy"])) >= {("vit_tiny", "fer2013/private_test", 57.33), ("baseline_cnn", "fer2013/public_test", 63.12)}
    assert chance["chance"].round(2).tolist() == [24.49]  # 879 / 3589 always-happy faces
    (latency_points,) = chart_data(at, 1)
    assert dict(zip(latency_points["model"], latency_points["latency ms/face"])) == {"baseline_cnn": 1.9, "attention_cnn": 3.4, "vit_tiny": 7.8}
    assert set(latency_points["split"]) == {"fer2013/private_test"}
    speed = json.loads(at.get("vega_lite_chart")[1].proto.spec)
    assert speed["title"] == "Accuracy on fer2013/private_test" and speed["encoding"]["x"]["scale"]["type"] == "log"
    assert "text" not in speed["encoding"], "models are told apart by legend and tooltip, not by labels that overlap"


@pytest.mark.slow
def test_a_model_no_better_than_chance_does_not_squeeze_the_scatter(summary_file):
    summary = json.loads(summary_file.read_text())
    summary["models"].append(model_entry("untrained_vit", 20.1, 21.0, 5_483_527, "fer2013/public_test", 8.6, seed=9))
    summary_file.write_text(json.dumps(summary))
    at = run_page()
    speed = json.loads(at.get("vega_lite_chart")[1].proto.spec)
    assert speed["encoding"]["y"]["scale"] == {"domain": [55.33, 67.73], "clamp": True}  # the trained models' range, +-2 points
    assert any("no better than chance: untrained_vit" in c.value for c in at.caption)


@pytest.mark.slow
def test_model_details_show_confusion_matrix_and_available_images(summary_file):
    at = run_page()
    assert at.selectbox[0].value == "baseline_cnn"
    (cells,) = chart_data(at, 3)
    happy_row = cells[cells["true"] == "happy"]
    assert happy_row["count"].sum() == 879
    assert happy_row.loc[happy_row["predicted"] == "happy", "count"].item() == round(879 * 0.6241)
    per_class = at.dataframe[PER_CLASS].value.set_index("class")
    assert per_class.loc["disgust", "support"] == 55
    assert len(at.image) == 2, "baseline_cnn's confusion and attention PNGs"
    assert at.json[0].value and json.loads(at.json[0].value)["best_epoch"] == 21

    at.selectbox[0].select("attention_cnn").run()
    assert not at.exception and len(at.image) == 0, "missing PNGs are skipped"
    (cells,) = chart_data(at, 3)
    assert cells.loc[(cells["true"] == "fear") & (cells["predicted"] == "fear"), "count"].item() == round(528 * 0.6573)


def test_missing_summary_says_how_to_create_it(results_folder, monkeypatch):
    at = run_page()
    assert not at.error
    assert str(results_folder) in at.info[0].value
    from training.evaluate import __main__ as evaluate_cli  # the program `python -m training.evaluate` runs

    command = shlex.split(at.code[0].value)
    assert command[:3] == ["python", "-m", "training.evaluate"]
    args = evaluate_cli.parse_args(command[3:])  # the command shown parses with the CLI's own parser: its flags exist
    assert (REPO_ROOT / args.checkpoints[0]).resolve() == CHECKPOINT_DIR and args.data == "<path>"
    monkeypatch.delenv(results.RESULTS_ENV)
    assert (REPO_ROOT / args.out).resolve() == results.results_dir(), "run from the checkout, it writes where the page reads by default"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"models": [', "is not valid JSON"),
        ('{"generated": "today"}', "'models' is a required property"),
        ("[1, 2]", "not of type 'object'"),
    ],
)
def test_unreadable_summary_is_an_error_message_not_a_traceback(results_folder, content, message):
    (results_folder / results.SUMMARY_NAME).write_text(content)
    at = run_page()
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert not at.dataframe


def test_schema_errors_name_the_bad_field(summary_file):
    summary = json.loads(summary_file.read_text())
    summary["models"][1]["metrics"]["fer2013/private_test"]["accuracy"] = "high"
    summary_file.write_text(json.dumps(summary))
    at = run_page()
    assert "models/1/metrics/fer2013/private_test/accuracy" in at.error[0].value and "'high' is not of type 'number'" in at.error[0].value


def test_confusion_matrix_must_match_the_classes(summary_file):
    summary = json.loads(summary_file.read_text())
    summary["models"][0]["confusion_matrix"]["fer2013/private_test"].pop()
    summary_file.write_text(json.dumps(summary))
    with pytest.raises(results.ResultsError, match="baseline_cnn: confusion matrix for fer2013/private_test is not 7x7"):
        results.load_summary()


@pytest.mark.slow
def test_the_tier_rules_are_stated_and_applied(summary_file):
    summary = json.loads(summary_file.read_text())
    for model, recall in zip(summary["models"], (58.0, 64.0, 70.0)):
        model["metrics"]["fer2013/public_test"]["mean_recall"] = recall
    summary_file.write_text(json.dumps(summary))
    at = run_page()
    rules = {tier: next(m.value for m in at.markdown if m.value.startswith(f"**{tier}** — ")) for tier in default_rule.TIERS}
    assert default_rule.DEFAULT_RULE in rules["live"] and "By these results: **baseline_cnn**" in rules["live"]  # the only one <= 2 ms
    assert "By these results: **no model**" in rules["ferplus"]  # no FER+ model in this summary
    ships = at.dataframe[0].value  # "What ships" leads the page: one row per tier, from checkpoints/default.json
    assert list(ships["tier"]) == list(default_rule.TIERS) and ships["model"].notna().all()
    live = at.dataframe[1].value.set_index("model")
    assert live.loc["baseline_cnn", "eligible"] and not live.loc["attention_cnn", "eligible"]
    assert live.loc["vit_tiny", "mean per-class recall % (fer2013/public_test)"] == 70.0


def test_the_tier_rules_pick_the_right_models_from_a_crafted_summary():
    def entry(name, dataset, ms, mb, acc, recall, members=None):
        return {"name": name, "dataset": dataset, "latency_ms_per_face": {"batch1": ms}, "file_mb": mb, "members": members,
                "metrics": {f"{dataset}/public_test": {"accuracy": acc, "mean_recall": recall}}}

    models = [entry("fast_fair", "fer2013", 1.5, 1.8, 66.0, 64.0), entry("fast_accurate", "fer2013", 1.9, 1.8, 67.0, 60.0),
              entry("slow_live", "fer2013", 2.5, 2.0, 70.0, 68.0), entry("mid", "fer2013", 9.0, 11.5, 70.5, 66.0),
              entry("too_big", "fer2013", 20.0, 22.4, 71.5, 68.0), entry("ensemble", "fer2013", 30.0, None, 73.0, 70.0, ["a", "b"]),
              entry("plus_big", "ferplus", 20.0, 22.4, 89.0, 70.0), entry("plus_int8", "ferplus", 20.0, 11.3, 88.9, 70.0),
              entry("plus_fast", "ferplus", 1.2, 1.8, 86.0, 66.0)]
    picks = {name: default_rule.tier_choice(models, tier) for name, tier in default_rule.TIERS.items()}
    assert picks == {"live": "fast_fair", "photo": "mid", "ferplus": "plus_int8"}


@pytest.mark.slow
def test_an_empty_figure_is_an_error_message_and_the_rest_is_shown(summary_file):
    (summary_file.parent / "attention_baseline_cnn.png").write_bytes(b"")
    at = run_page()
    assert [e.value for e in at.error] == [f"Figure not shown: {summary_file.parent / 'attention_baseline_cnn.png'}: not an image, or not a JPEG, PNG, WebP, BMP, GIF or TIFF one"]
    assert len(at.image) == 1, "the confusion figure is still shown"


@pytest.mark.slow
def test_a_figure_outside_the_results_folder_is_not_shown(summary_file, tmp_path):
    Image.new("RGB", (80, 60), "red").save(tmp_path / "elsewhere.png")
    summary = json.loads(summary_file.read_text())
    summary["models"][0]["images"] = {"confusion": "../elsewhere.png", "attention": str(tmp_path / "elsewhere.png")}
    summary_file.write_text(json.dumps(summary))
    at = run_page()
    assert not at.error and len(at.image) == 0


def test_a_summary_nested_100000_levels_deep_is_an_error_message(results_folder):
    (results_folder / results.SUMMARY_NAME).write_text('{"models": ' + "[" * 100_000 + "]" * 100_000 + "}")
    at = run_page()
    assert len(at.error) == 1 and "is nested too deeply to be a summary" in at.error[0].value, [e.value for e in at.error]
    assert not at.dataframe


@pytest.mark.slow
def test_photo_scores_get_their_own_table(summary_file):
    summary = json.loads(summary_file.read_text())
    model = summary["models"][0]
    model["metrics"]["photos/jaffe"] = {"accuracy": 49.3, "mean_recall": 49.25, "macro_f1": 47.56, "n": 213, "detection_rate": 100.0}
    model["per_class"]["photos/jaffe"] = {c: {"precision": 50.0, "recall": 0.0 if c == "angry" else 60.0, "f1": 40.0, "support": 30} for c in FER2013_CLASSES}
    summary_file.write_text(json.dumps(summary))
    at = run_page()
    assert "On real photos" in [s.value for s in at.subheader]
    photos = display_values(at, FULL_TABLE + 1)
    assert photos.loc[0, "model"] == model["name"] and photos.loc[0, "accuracy %"] == "49.3" and photos.loc[0, "angry recall %"] == "0.0"
    assert photos.loc[0, "faces found %"] == "100.0" and photos.loc[0, "photos"] == "photos/jaffe"


@pytest.mark.slow
def test_an_unshipped_model_shows_the_command_that_rebuilds_it(summary_file):
    summary = json.loads(summary_file.read_text())
    summary["models"][0]["rebuild"] = "python -m training.train --model baseline_cnn --data fer2013.zip --name baseline_cnn --export-dir checkpoints"
    summary_file.write_text(json.dumps(summary))
    at = run_page()
    assert summary["models"][0]["rebuild"] in [c.value for c in at.code]
