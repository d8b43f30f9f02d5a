"""The training page: bad input is refused with a message; a real background job on tiny data is started, watched, stopped, resumed and evaluated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from training import jobs as training_jobs
from training.data.synthetic import make_fer2013

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_PAGE = REPO_ROOT / "pages" / "train.py"
COMPARE_PAGE = REPO_ROOT / "pages" / "compare.py"
JOB_TIMEOUT_S = 300  # bounds a slow, loaded CI machine; an idle 2-core CPU needs well under a minute


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Runs, results, cache and checkpoints in tmp; any job a test leaves running is stopped afterwards."""
    for name, folder in (("EMOJI_MIRROR_RUNS", "runs"), ("EMOJI_MIRROR_RESULTS", "results"), ("EMOJI_MIRROR_CACHE", "cache")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    monkeypatch.delenv("EMOJI_MIRROR_DATA", raising=False)
    try:
        yield tmp_path
    finally:
        for job in training_jobs.list_jobs(tmp_path / "runs"):
            if job.alive():
                training_jobs.stop_job(job, grace_s=2)


@pytest.fixture
def tiny_fer2013(tmp_path) -> Path:
    """A synthetic Kaggle-layout FER2013 folder of 48x48 JPEGs: 70 train, 28 PublicTest, 28 PrivateTest."""
    return make_fer2013(tmp_path / "fer2013", per_class={"train": 10, "public_test": 4, "private_test": 4})


def open_page(path: Path = TRAIN_PAGE) -> AppTest:
    at = AppTest.from_file(str(path), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def fill_form(at: AppTest, **values) -> AppTest:
    for key, value in values.items():
        widget = at.get_by_key(key)  # one page, one widget per key
        widget.set_value(value)
    return at


def wait_for(condition, what: str, job: training_jobs.Job, timeout_s: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; log:\n{job.log_tail(60)}")
        time.sleep(0.5)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes in a process group (read from /proc, Linux)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:  # the process ended while we looked
            continue
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


@pytest.mark.slow
def test_start_refuses_bad_input_with_messages(workspace, tiny_fer2013):
    at = open_page()
    fill_form(at, models=["baseline_cnn"], data=str(workspace / "missing.zip"))
    at.get_by_key("start").click().run()
    assert any("does not exist" in e and "missing.zip" in e for e in errors(at)), errors(at)

    fill_form(at, models=[], data=str(tiny_fer2013))
    at.get_by_key("start").click().run()
    assert any("choose at least one model" in e for e in errors(at)), errors(at)

    fill_form(at, models=["baseline_cnn", "attention_cnn"], run_name="mine")
    at.get_by_key("start").click().run()
    assert any("a run name needs a single model" in e for e in errors(at)), errors(at)

    fill_form(at, models=["baseline_cnn"], run_name="../escape")
    at.get_by_key("start").click().run()
    assert any("run name '../escape'" in e for e in errors(at)), errors(at)

    assert not at.exception
    assert not (workspace / "runs" / "jobs").exists(), "a refused request must not create a job"


def test_long_names_and_zero_epochs_are_refused_with_messages(workspace, tiny_fer2013):
    at = open_page()
    fill_form(at, models=["baseline_cnn"], data=str(tiny_fer2013), run_name="a" * 250)
    at.get_by_key("start").click().run()
    assert not at.exception and any("run name of 250 characters: use at most 64" in e for e in errors(at)), errors(at)

    fill_form(at, run_name="", epochs=0)
    at.run()
    assert at.get_by_key("epochs").value == 0, "the box holds what the request will use"
    at.get_by_key("start").click().run()
    assert not at.exception and any("epochs must be between 1 and 1000 (got 0)" in e for e in errors(at)), errors(at)
    assert not list((workspace / "runs" / "jobs").glob("*.json")), "a refused request must not create a job"


@pytest.mark.slow
def test_two_sessions_starting_at_the_same_instant_get_one_job(workspace, tiny_fer2013, monkeypatch):
    """The check for a running job is made slow here (as on a busy disk) so that both sessions would pass it together."""
    real_active_job, real_popen = training_jobs.active_job, subprocess.Popen

    def slow_active_job(runs=None):
        found = real_active_job(runs)
        time.sleep(0.3)
        return found

    def holder(command, **kwargs):  # stands in for the driver: a process that only holds the job's inherited lock
        return real_popen([sys.executable, "-c", "import time; time.sleep(120)"], **kwargs)

    monkeypatch.setattr(training_jobs, "active_job", slow_active_job)
    monkeypatch.setattr(subprocess, "Popen", holder)
    request = training_jobs.TrainingRequest(models=["baseline_cnn"], data=str(tiny_fer2013), epochs=1, device="cpu", export_dir=str(workspace / "checkpoints"))
    barrier, started, refused = threading.Barrier(2), [], []

    def click():
        barrier.wait()
        try:
            started.append(training_jobs.start_job(request))
        except training_jobs.JobError as exc:
            refused.append(str(exc))

    sessions = [threading.Thread(target=click) for _ in range(2)]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join()
    assert len(started) == 1 and len(refused) == 1 and "still training" in refused[0], (started, refused)
    assert [job.id for job in training_jobs.list_jobs(workspace / "runs")] == [started[0].id]


@pytest.mark.slow
def test_real_job_is_watched_stopped_resumed_and_evaluated(workspace, tiny_fer2013):
    runs, checkpoints = workspace / "runs", workspace / "checkpoints"
    at = open_page()
    fill_form(at, models=["baseline_cnn"], epochs=3, batch_size=32, data=str(tiny_fer2013), max_train_images=64, export_dir=str(checkpoints), device="cpu",
              recipe="seed", teacher="")
    at.get_by_key("start").click().run()
    assert not errors(at) and not at.exception

    job = training_jobs.latest_job(runs)
    record = json.loads(job.file.read_text())
    assert record["status"] == "training" and isinstance(record["pid"], int) and Path(record["log"]).is_file()
    assert record["train_command"][1:4] == ["-m", "training.train", "--model"]
    assert {"--max-train-images", "64", "--no-progress", "--export-dir", str(checkpoints)} <= set(record["train_command"])
    assert job.alive()

    # A second start while it runs is refused.
    at.get_by_key("start").click().run()
    assert any("still training" in e for e in errors(at)), errors(at)

    # The trainer's metrics.jsonl turns into progress on a freshly loaded page (the job survives a reload).
    wait_for(lambda: len(job.metrics()) >= 1, "the first epoch in metrics.jsonl", job)
    at = open_page()
    progress = [p.proto.text for p in at.get("progress")]
    assert any(re.fullmatch(r"baseline_cnn: epoch [123]/3", text) for text in progress), progress
    assert any("[baseline_cnn] epoch 1:" in c.value for c in at.code), "the log tail is shown"

    # Stop: the whole process group ends and the job is marked stopped.
    assert len(live_group_members(job.pid)) >= 2, "the driver and the trainer run in the job's process group"
    at.get_by_key("stop").click().run()
    stopped = training_jobs.refresh(job)
    assert stopped.status == "stopped" and not stopped.alive()
    assert live_group_members(stopped.pid) == [], "every process of the job (driver, trainer, loader workers) has ended"

    # Resume continues the stopped run, then the driver evaluates the exported checkpoint.
    at = open_page()
    at.get_by_key("resume_job").click().run()
    assert not errors(at)
    resumed = training_jobs.latest_job(runs)
    assert resumed.id != job.id and "--resume" in resumed.train_command
    wait_for(lambda: not training_jobs.refresh(resumed).active, "the resumed job to finish", resumed)
    resumed = training_jobs.refresh(resumed)
    assert resumed.status == "finished", resumed.log_tail(60)
    log = resumed.log_tail(200)
    assert "resumed from" in log and "-m training.evaluate" in log
    assert list(resumed.metrics()["epoch"]) == [1, 2, 3]
    assert (checkpoints / "baseline_cnn.pt").is_file()
    summary = json.loads((workspace / "results" / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["baseline_cnn"]

    at = open_page()
    assert [p.proto.text for p in at.get("progress")] == ["baseline_cnn: finished"]
    compare = open_page(COMPARE_PAGE)
    full_table = next(d.value for d in compare.dataframe if "shipped" in d.value.columns)  # after "What ships" and the tier rules
    assert list(full_table["model"]) == ["baseline_cnn"]


@pytest.mark.slow
def test_the_page_opens_on_the_live_tier_preset_and_each_preset_fills_the_form(workspace, tiny_fer2013):
    at = open_page()
    assert at.get_by_key("preset").value == "live"
    assert at.get_by_key("models").value == ["resnet_fer_fast"] and at.get_by_key("recipe").value == "camera"
    assert at.get_by_key("epochs").value == 120 and at.get_by_key("teacher").value == training_jobs.TIER_TEACHER
    assert any("Measured: 68 min on a 2-core CPU" in c.value for c in at.caption)
    at.get_by_key("preset").set_value("seed").run()
    assert at.get_by_key("models").value == ["baseline_cnn", "attention_cnn", "vit_tiny"] and at.get_by_key("recipe").value == "seed"
    assert at.get_by_key("teacher").value == "" and at.get_by_key("batch_size").value == 64 and not at.exception


def test_a_preset_request_trains_with_its_recipe_and_teacher(tiny_fer2013, tmp_path):
    live = training_jobs.PRESETS["live"]
    request = training_jobs.TrainingRequest(models=list(live.models), data=str(tiny_fer2013), epochs=live.epochs, batch_size=live.batch_size,
                                            recipe=live.recipe, teacher=live.teacher)
    assert request.problems() == []
    command = request.train_command(tmp_path)
    assert command[command.index("--recipe") + 1] == "camera"
    assert command[command.index("--teacher") + 1] == str(training_jobs.REPO_ROOT / training_jobs.TIER_TEACHER)
    wrong = training_jobs.TrainingRequest(models=["baseline_cnn"], data=str(tiny_fer2013), recipe="fast", teacher="nowhere.npz")
    assert "unknown recipe 'fast'; choose one of seed, ours, camera" in wrong.problems()
    assert any("teacher soft labels" in p and "nowhere.npz do not exist" in p for p in wrong.problems())
