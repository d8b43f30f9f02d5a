"""results/summary.json is written as the Compare page reads it: validated by the one schema, merged under a lock."""

from __future__ import annotations

import json
import threading

import pytest

from training.data import DataError
from training.evaluate.summary import SUMMARY_FILE, read_summary, update_summary, write_summary


def entry(name: str, accuracy: float = 60.0) -> dict:
    return {"name": name, "params": 1000, "selection_split": "fer2013/public_test", "tta": "none",
            "metrics": {"fer2013/public_test": {"accuracy": accuracy, "macro_f1": accuracy - 5, "n": 10}}, "latency_ms_per_face": None}


@pytest.mark.slow
def test_two_evaluations_into_one_folder_both_land(tmp_path, monkeypatch):
    """Each run reads, merges and replaces under the lock: neither loses the other's model (today's race lost one)."""
    import training.evaluate.summary as summary

    real_read = summary.read_summary
    both_read = threading.Barrier(2, timeout=2)

    def slow_read(path):  # without the lock both would read the empty folder, then each write only its own model
        models = real_read(path)
        try:
            both_read.wait()
        except threading.BrokenBarrierError:
            pass  # the lock keeps the second reader out until the first has written: the barrier times out
        return models

    monkeypatch.setattr(summary, "read_summary", slow_read)
    threads = [threading.Thread(target=update_summary, args=(tmp_path, [entry(name)])) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(m["name"] for m in read_summary(tmp_path / SUMMARY_FILE)) == ["a", "b"]


def test_the_writer_refuses_what_the_reader_would_refuse(tmp_path):
    bad = entry("x")
    bad["metrics"]["fer2013/public_test"]["accuracy"] = float("nan")
    with pytest.raises(DataError, match="summary schema"):
        write_summary([bad], tmp_path)
    assert not (tmp_path / SUMMARY_FILE).exists()
    with pytest.raises(DataError, match="summary schema"):
        write_summary([entry("x"), entry("x")], tmp_path)  # a name twice


def test_a_hostile_summary_is_refused_on_read(tmp_path):
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"models": [{**entry("x"), "confusion_matrix": {"s": [[1, 2]]}, "classes": ["angry", "happy"]}]}))
    with pytest.raises(DataError, match="confusion matrix"):
        read_summary(tmp_path / SUMMARY_FILE)
    (tmp_path / SUMMARY_FILE).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(DataError, match="not a readable summary"):
        read_summary(tmp_path / SUMMARY_FILE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data_fingerprint": 5}, "data_fingerprint: 5 is not of type 'string', 'null'"),
        ({"params": 10**400}, "params: 1000"),
        ({"metrics": {"fer2013/public_test": {"accuracy": 60.0, "macro_f1": 55.0, "mean_recall": "high"}}}, "mean_recall: 'high' is not of type 'number'"),
        ({"classes": ["angry", "happy"], "confusion_matrix": {"s": [[10**30, 0], [0, 1]]}}, "is greater than the maximum of 1000000000"),
    ],
)
def test_hostile_fields_are_refused_by_the_schema(tmp_path, change, message):
    """Each broke the Compare page (a traceback, or 'high' ranked by the default rule) before the schema named it."""
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"models": [{**entry("x"), **change}]}))
    with pytest.raises(DataError, match="summary schema") as refused:
        read_summary(tmp_path / SUMMARY_FILE)
    assert message in str(refused.value)


def test_a_number_of_5000_digits_is_an_error_message_on_the_compare_page(tmp_path, monkeypatch):
    from emoji_mirror.app import results

    (tmp_path / SUMMARY_FILE).write_text('{"models": [{"name": "x", "params": 1' + "0" * 5000 + "}]}")
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    with pytest.raises(results.ResultsError, match="is not valid JSON .*5001 digits"):
        results.load_summary()
