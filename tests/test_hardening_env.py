"""Bad environment values give one clear error the pages can show, never an exception or a hang (issue 18, item 13)."""

from __future__ import annotations

import os

import pytest

from emoji_mirror.app import loaders, results, rtc
from training import jobs


@pytest.mark.parametrize("value", ["/etc/passwd", "r" * 5000])
def test_a_results_setting_that_is_no_folder_is_a_results_error(monkeypatch, value):
    monkeypatch.setenv(results.RESULTS_ENV, value)
    with pytest.raises(results.ResultsError) as raised:
        results.load_summary()
    assert len(str(raised.value)) < 400 and "EMOJI_MIRROR_RESULTS" in str(raised.value)


def test_a_fifo_summary_is_refused_without_reading_it(tmp_path):
    os.mkfifo(tmp_path / results.SUMMARY_NAME)  # reading it would block forever
    with pytest.raises(results.ResultsError, match="not a regular file"):
        results.load_summary(tmp_path)


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_a_runs_setting_that_is_no_writable_folder_is_a_job_error(monkeypatch, tmp_path, kind):
    target = tmp_path / "a_file" if kind == "file" else "/proc/x"
    if kind == "file":
        target.write_text("")
    monkeypatch.setenv(jobs.RUNS_ENV, str(target))
    with pytest.raises(jobs.JobError, match="EMOJI_MIRROR_RUNS"):
        jobs.runs_dir()


@pytest.mark.parametrize("value, expected", [
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('[{"urls": 5}]', "must be a JSON list"),
    ('[{"urls": []}]', "must be a JSON list"),
    ('[{"urls": "turn:t.example.org", "credential": 7}]', "must be a JSON list"),
])
def test_malformed_ice_servers_are_a_value_error(monkeypatch, value, expected):
    monkeypatch.setenv(rtc.ICE_SERVERS_ENV, value)
    with pytest.raises(ValueError, match=expected):
        rtc.rtc_configuration()


def test_well_formed_ice_servers_pass(monkeypatch):
    servers = '[{"urls": ["stun:s.example.org:3478"]}, {"urls": "turn:t.example.org", "username": "u", "credential": "p"}]'
    monkeypatch.setenv(rtc.ICE_SERVERS_ENV, servers)
    assert len(rtc.rtc_configuration()["iceServers"]) == 2


def test_torch_threads_are_capped_at_the_core_count_with_a_warning(monkeypatch):
    monkeypatch.setenv(loaders.TORCH_THREADS_ENV, "2000")
    with pytest.warns(UserWarning, match="cores"):
        assert loaders.torch_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv(loaders.TORCH_THREADS_ENV, "1")
    assert loaders.torch_threads() == 1
