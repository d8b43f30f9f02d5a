"""The GPU sprint, proven on this CPU: the smoke end to end without the app's packages, the budget stop, the packs, the import check."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_checkpoint

from emoji_mirror.checkpoint import CheckpointError, load_model, read_checkpoint
from emoji_mirror.schemas import PREPROCESSING, _validator, schema_problem
from emoji_mirror.models import create_model
from emoji_mirror.paths import run_name_problem
from emoji_mirror.preprocessing import Preprocessing
from training import train
from training.data import load_dataset
from training.sprint.run import REPORT_RESERVE_BYTES, Log, collect, fit_returns, wait_all
from training.data import DataError
from training.sprint.device import (CARRY_PATHS, RESULT_FILE_MIB, RESULT_FILES, RESULT_TOTAL_MIB, TRAVEL_LIMIT_MIB, TREE_ROOM_MIB, device_calls,
                                    part_mib, tree_bytes)
from training.sprint.parts import join_parts, part_paths, split_file
from training.sprint.home import mismatches
from training.data.pack import write_pack
from training.sprint.plan import ACCURACY_SET, PLANS, SEED_SET, STUDENT_SET, TEACHER_SET, fp16_mib, planned_epochs, smoke_plan
from training.data.synthetic import make_tiny_data

ENSEMBLE_NAME = PLANS["accuracy"][1]

# Not on the GPU machine's image: the sprint (and every worker it starts) must run without them.
BLOCKED = ("mediapipe", "streamlit", "jsonschema", "cv2")


def run_smoke(root: Path, plan: str = "accuracy") -> tuple[Path, str]:
    """`python -m training.sprint --smoke --plan PLAN` in a subprocess where importing any BLOCKED package fails (workers included)."""
    stubs = root / "stubs"
    for name in BLOCKED:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked: the GPU machine does not have it')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), str(REPO_ROOT)])}
    done = subprocess.run([sys.executable, "-m", "training.sprint", "--smoke", "--plan", plan, "--workdir", str(root / "smoke")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "smoke", done.stdout


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_smoke(tmp_path_factory.mktemp("sprint"))


@pytest.mark.slow
def test_smoke_trains_every_job_concurrently_and_returns_what_a_device_call_can(smoke):
    root, stdout = smoke
    returned = sorted(p.name for p in (root / "out").iterdir())
    assert len(returned) <= RESULT_FILES and returned[:2] == ["checkpoints.tar.000", "sprint.log"] and "summary.json" in returned
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) and (root / "out" / n).stat().st_size <= RESULT_FILE_MIB * 2**20 for n in returned)
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == [job.name for job in smoke_plan()] and not summary["failed"]
    assert all(m["status"] == "finished" and m["epochs_run"] == 2 for m in summary["models"])
    assert summary["ensembles"][0]["members"] == [job.name for job in smoke_plan() if job.ensemble]
    for model in summary["models"]:  # selected and scored on PublicTest only: the device never has the test splits
        assert set(model["metrics"]) == {model["selection_split"]} and model["selection_split"].endswith("/public_test")
        assert set(model["tta_accuracy_on_selection"]) == {"none", "flip", "tencrop"}
    log = (root / "out" / "sprint.log").read_text()
    assert all(f"===== {job.name} =====" in log for job in smoke_plan())
    assert "checked ensemble_gpu" in stdout


@pytest.mark.slow
def test_import_installs_the_smoke_output_with_the_test_splits_scored_here(smoke):
    root, _ = smoke
    for job in smoke_plan():
        payload = read_checkpoint(root / "checkpoints" / f"{job.name}.pt")
        assert payload["state_dict"][next(iter(payload["state_dict"]))].dtype == torch.float16
        assert f"{job.dataset}/private_test" in payload["meta"]["metrics"]  # scored back home
        assert f"{job.dataset}/private_test | " in (root / "checkpoints" / f"{job.name}.md").read_text()
    models = {m["name"]: m for m in json.loads((root / "results" / "summary.json").read_text())["models"]}
    assert set(models) == {job.name for job in smoke_plan()} | {ENSEMBLE_NAME}
    assert "fer2013/private_test" in models[ENSEMBLE_NAME]["metrics"] and "ferplus/private_test" in models["resnet18_fer_ferplus"]["metrics"]
    assert models["vit_tiny_ours"]["checkpoint"] == str((root / "checkpoints" / "vit_tiny_ours.pt").resolve())
    assert (root / "results" / f"confusion_{ENSEMBLE_NAME}.webp").is_file() and (root / "results" / "results.md").is_file()


def test_import_refuses_scores_that_disagree_by_more_than_a_tenth():
    here = {"tta": "flip", "tta_accuracy_on_selection": {"none": 70.0, "flip": 70.5}, "metrics": {"s": {"accuracy": 70.5}}}
    assert mismatches({**here, "tta_accuracy_on_selection": {"none": 70.1, "flip": 70.45}}, here) == []
    found = mismatches({**here, "tta_accuracy_on_selection": {"none": 70.0, "flip": 70.7}, "metrics": {"s": {"accuracy": 70.7}}}, here)
    assert len(found) == 2 and "flip TTA" in found[0]
    assert mismatches(here, None) == ["not evaluated here"]
    # scored here with one mode only (--import --tta none): that mode is checked, the others cannot be
    one_mode = {"tta": "none", "selection_split": "s", "metrics": {"s": {"accuracy": 70.0}, "t": {"accuracy": 71.0}}}
    device = {"tta": "flip", "tta_accuracy_on_selection": {"none": 70.05, "flip": 72.0}, "metrics": {"s": {"accuracy": 72.0}}}
    assert mismatches(device, one_mode) == []
    assert mismatches({**device, "tta_accuracy_on_selection": {"none": 70.3, "flip": 72.0}}, one_mode) == [
        "none TTA on the selection split: 70.30 there, 70.00 here"]
    assert mismatches({**device, "tta_accuracy_on_selection": {"flip": 72.0}}, one_mode) == ["the device did not score none TTA on the selection split"]


@pytest.mark.slow
def test_time_budget_stops_training_after_an_epoch_with_the_best_checkpoint_exported(tmp_path):
    fer2013, _ = make_tiny_data(tmp_path / "data")
    argv = ["--model", "resnet_fer_fast", "--model-kwargs", '{"widths": [4, 4, 8, 8]}', "--recipe", "ours", "--data", str(fer2013),
            "--cache-dir", str(tmp_path / "cache"), "--epochs", "5", "--time-budget-min", "0.0001", "--output-dir", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "export"), "--export-half", "--no-progress", "--device", "cpu", "--amp", "on"]
    assert train.main(argv) == 0
    last = read_checkpoint(tmp_path / "runs" / "resnet_fer_fast" / "last.pt")
    assert last["train_state"]["epoch"] == 1 and last["train_state"]["done"]  # 5 planned; the budget ended it after the first
    exported = read_checkpoint(tmp_path / "export" / "resnet_fer_fast.pt")
    assert exported["meta"]["epoch"] == 1 and exported["meta"]["config"]["time_budget_min"] == 0.0001
    assert "fer2013/private_test" in exported["meta"]["metrics"]


def test_a_run_without_the_budget_flag_records_none_so_older_runs_still_resume():
    assert train.parse_args([]).time_budget_min is None and "time_budget_min" in train.RESUMABLE_CHANGES


def test_the_deadline_stops_a_late_worker_and_its_best_epoch_so_far_ships_in_fp16(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    codes = wait_all({"late": sleeper}, deadline=0.0, log=Log(tmp_path / "log"))
    assert codes == {"late": -signal.SIGTERM} and "still running at the deadline" in (tmp_path / "log").read_text()
    job = ACCURACY_SET[0]
    make_checkpoint(tmp_path / "runs" / job.name / "best.pt")
    path, status = collect(job, codes["late"], tmp_path)
    assert path == tmp_path / "export" / f"{job.name}.pt" and status.startswith("stopped")
    assert all(v.dtype == torch.float16 for v in read_checkpoint(path)["state_dict"].values() if v.is_floating_point())
    assert collect(ACCURACY_SET[1], 1, tmp_path) == (None, "failed (exit 1) before its first epoch ended")


@pytest.mark.slow
def test_packs_hold_train_and_public_test_exactly_with_the_source_fingerprint(tmp_path):
    for source, codec in zip(make_tiny_data(tmp_path / "data"), ("jpeg", "raw")):
        original = load_dataset(source, tmp_path / "cache")
        pack = write_pack(source, original, tmp_path / f"{original.name}.sprintpack")
        packed = load_dataset(pack, tmp_path / "cache")
        assert (packed.name, packed.classes, packed.fingerprint) == (original.name, original.classes, original.fingerprint)
        assert set(packed.splits) == {"train", "public_test"}
        for split, data in packed.splits.items():
            want = original.splits[split].labelled()
            assert np.array_equal(data.images, want.images) and np.array_equal(data.labels, want.labels)
            assert (data.votes is None) == (want.votes is None) and (data.votes is None or np.array_equal(data.votes, want.votes))
        assert f'"codec": "{codec}"' in str(np.load(pack)["meta"])


def make_manifests(tmp_path: Path, sizes_mib: dict[str, float], part: float) -> dict[str, Path]:
    """Stand-in packs of the given sizes in tmp_path/data/sprint, split as `--pack` splits them."""
    folder = tmp_path / "data" / "sprint"
    folder.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for name, mib in sizes_mib.items():
        pack = folder / f"{name}.sprintpack"
        pack.write_bytes(b"p" * int(mib * 2**20))
        manifests[name] = split_file(pack, int(part * 2**20))
    return manifests


@pytest.mark.slow
def test_the_plan_fits_the_lending_rules(tmp_path):
    assert len({job.name for job in ACCURACY_SET}) == len(ACCURACY_SET) and not any(run_name_problem(j.name) for j in ACCURACY_SET)
    assert sum(fp16_mib(job) for job in ACCURACY_SET) < (RESULT_FILES - 2) * 15  # checkpoints.tar parts beside summary.json and the log
    # 64 MiB come back in all: every checkpoint but the ViT (the one that trains worst in minutes) fits, the ViT when room is left
    assert sum(fp16_mib(job) for job in ACCURACY_SET if job.model != "vit_tiny") < RESULT_TOTAL_MIB - REPORT_RESERVE_BYTES / 2**20
    assert all(planned_epochs(job, 6 * 60, smoke=False) >= 36 for job in ACCURACY_SET)  # at the measured epoch times
    tree = 17.0
    calls = device_calls(8, make_manifests(tmp_path, {"fer2013": 44.3, "ferplus": 46.5}, part_mib(tree)), "accuracy", tree)
    assert [c["carry"] for c in calls] == [["data/sprint/ferplus.sprintpack.000"],
                                            ["data/sprint/fer2013.sprintpack.000", "data/sprint/ferplus.sprintpack.parts.json",
                                             "data/sprint/fer2013.sprintpack.parts.json"]]
    assert all(len(c["command"]) <= 2000 and c["timeout_s"] <= 600 for c in calls) and "--budget-min 8 " in calls[1]["command"]


@pytest.mark.slow
@pytest.mark.parametrize("tree", [17.0, 40.0, TREE_ROOM_MIB])
def test_a_larger_tree_stages_the_packs_in_more_calls_each_within_the_limit(tmp_path, tree):
    manifests = make_manifests(tmp_path, {"fer2013": 44.3, "ferplus": 46.5}, part_mib(tree))
    calls = device_calls(9, manifests, "teachers", tree)
    carried = [sum((tmp_path / p).stat().st_size for p in c["carry"]) / 2**20 for c in calls]
    assert all(tree + mib <= TRAVEL_LIMIT_MIB and len(c["carry"]) <= CARRY_PATHS for c, mib in zip(calls, carried))
    every_part = [p.name for m in manifests.values() for p in part_paths(m)]
    assert sorted(Path(p).name for c in calls for p in c["carry"] if not p.endswith(".json")) == sorted(every_part)
    assert calls[-1]["command"].startswith("python -m training.sprint --plan teachers") and len(calls) == (2 if tree < 20 else 4 if tree <= 40 else 12)


def test_packs_travel_in_parts_that_are_checked_when_joined(tmp_path):
    pack = tmp_path / "fer2013.sprintpack"
    pack.write_bytes(os.urandom(100_000))
    original = pack.read_bytes()
    manifest = split_file(pack, 30_000)
    assert [p.name for p in part_paths(manifest)] == [f"fer2013.sprintpack.{i:03d}" for i in range(4)]
    pack.unlink()
    assert join_parts(manifest).read_bytes() == original
    pack.unlink()
    damaged = part_paths(manifest)[1]
    damaged.write_bytes(b"x" + damaged.read_bytes()[1:])
    part_paths(manifest)[3].unlink()
    with pytest.raises(DataError, match=r"fer2013.sprintpack.001 damaged .*fer2013.sprintpack.003 missing"):
        join_parts(manifest)
    assert not pack.exists() and not list(tmp_path.glob("*.tmp"))


def test_the_tracked_tree_leaves_room_beside_each_data_pack_in_a_device_call():
    tracked_mib = tree_bytes(untracked=False) / 2**20
    assert tracked_mib <= TREE_ROOM_MIB, f"tracked files weigh {tracked_mib:.1f} MiB: a sprint call would exceed 64 MiB"
    listed = subprocess.run(["git", "ls-files", "checkpoints"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    shipped_mb = sum((REPO_ROOT / name).stat().st_size for name in listed if (REPO_ROOT / name).is_file()) / 1e6
    assert shipped_mb <= 40, f"checkpoints/ ships {shipped_mb:.1f} MB; the project keeps it to 40 MB"


@pytest.mark.slow
def test_the_seeds_plan_adds_new_resnet18_seeds_in_one_call_without_the_ferplus_pack(tmp_path):
    names = [job.name for job in SEED_SET]
    assert len(set(names)) == len(names) and not set(names) & {job.name for job in ACCURACY_SET} and "resnet18_fer_gpu_s1" not in names
    assert all(job.model == "resnet18_fer" and job.dataset == "fer2013" and job.ensemble for job in SEED_SET)
    assert len({job.seed for job in SEED_SET} | {0, 1}) == len(SEED_SET) + 2  # seeds 0 and 1 were trained by the first sprint
    assert all(planned_epochs(job, 6 * 60, smoke=False) >= 60 for job in SEED_SET)
    calls = device_calls(9, make_manifests(tmp_path, {"fer2013": 44.3, "ferplus": 46.5}, part_mib(17.0)), "seeds", 17.0)
    assert len(calls) == 1 and calls[0]["carry"] == ["data/sprint/fer2013.sprintpack.000", "data/sprint/fer2013.sprintpack.parts.json"]
    assert calls[0]["command"].startswith("python -m training.sprint --plan seeds --budget-min 9 ")


@pytest.mark.slow
def test_the_teachers_smoke_returns_soft_labels_of_every_split_it_has_and_import_installs_them(tmp_path):
    from training.distill import load_soft_targets, soft_targets_info, weights_sha256

    root, stdout = run_smoke(tmp_path, "teachers")
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert {s["file"] for s in summary["soft_labels"]} == {"soft_labels_fer2013.npz", "soft_labels_ferplus.npz"}
    assert len(list((root / "out").iterdir())) <= RESULT_FILES
    fer2013, ferplus = make_tiny_data(tmp_path / "again")  # the same seeded bytes: the same fingerprints
    teachers = [job.name for job in smoke_plan("teachers") if job.dataset == "fer2013"]
    installed = root / "results" / "soft_labels" / f"{PLANS['teachers'][1]}.npz"
    info = soft_targets_info(installed)
    assert info["members"] == teachers and info["splits"] == ["train", "public_test"] and info["tta"] == "flip"
    assert info["member_sha256"] == [weights_sha256(root / "checkpoints" / f"{name}.pt") for name in teachers]  # the installed members
    probs = load_soft_targets(installed, load_dataset(fer2013, tmp_path / "cache"))
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1)
    with np.load(installed) as archive:
        assert archive["probs"].dtype == np.float16 and archive["split_public_test"].shape[1] == 7
    assert soft_targets_info(root / "results" / "soft_labels" / "resnet18_fer_ferplus_t0.npz")["dataset"] == "ferplus"
    assert f"checked and installed as {installed}" in stdout


@pytest.mark.slow
def test_the_students_smoke_distils_every_tier_from_soft_labels(tmp_path):
    root, _ = run_smoke(tmp_path, "students")
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == [job.name for job in STUDENT_SET] and not summary["failed"]
    for job in STUDENT_SET:
        payload = read_checkpoint(root / "checkpoints" / f"{job.name}.pt")
        config = payload["meta"]["config"]
        assert payload["arch_kwargs"].items() >= job.model_kwargs.items()  # the job's own settings (a stem) survive the smoke's widths
        assert config["teacher"].endswith(f"soft_labels_{job.dataset}.npz") and config["distill_alpha"] == job.distill_alpha
        assert (config["ferplus_votes"] or "").endswith("soft_labels_fer2013.npz") == bool(job.ferplus_votes)
        assert (config["photometry"] or "none") == job.photometry


@pytest.mark.slow
def test_the_teacher_and_student_plans_fit_a_call_and_students_read_tracked_soft_labels(tmp_path):
    assert {job.model for job in TEACHER_SET} == {"resnet18_fer"} and {job.dataset for job in TEACHER_SET} == {"fer2013", "ferplus"}
    assert all(job.teacher for job in TEACHER_SET) and all(planned_epochs(job, 7 * 60, smoke=False) >= 55 for job in TEACHER_SET)
    assert all(job.soft_labels and (REPO_ROOT / job.soft_labels).is_file() for job in STUDENT_SET)
    assert all((REPO_ROOT / job.ferplus_votes).is_file() for job in STUDENT_SET if job.ferplus_votes)
    assert {job.photometry for job in STUDENT_SET} == {"none", "standardize"}  # issue 19's levers, each on its own
    assert {job.model for job in STUDENT_SET} >= {"resnet_fer_fast", "vit_tiny"} and not {j.name for j in STUDENT_SET} & {j.name for j in TEACHER_SET}
    calls = device_calls(9, make_manifests(tmp_path, {"fer2013": 44.3, "ferplus": 46.5}, part_mib(17.0)), "students", 17.0)
    assert len(calls) == 2 and calls[-1]["command"].startswith("python -m training.sprint --plan students")


def test_what_comes_back_is_the_best_scoring_checkpoints_that_fit_the_returned_bytes(tmp_path):
    sizes = {"big_good": 600, "big_weak": 600, "small_weak": 100, "best": 300}
    accuracy = {"big_good": 70.0, "big_weak": 35.0, "small_weak": 50.0, "best": 89.0}
    done = {}
    for name, size in sizes.items():
        done[name] = tmp_path / f"{name}.pt"
        done[name].write_bytes(b"w" * size)
        done[name].with_suffix(".md").write_text("card")
    entries = [{"name": n, "selection_split": "x/public_test", "metrics": {"x/public_test": {"accuracy": a}}} for n, a in accuracy.items()]
    kept, left = fit_returns(entries, done, budget_bytes=1000 + 3 * (4 + 2 * 2048) + 500)  # three members with their cards and tar headers, not four
    assert kept == ["best", "big_good", "small_weak"] and left == ["big_weak"]  # a weaker small one still fills the room left
    assert fit_returns(entries, done, budget_bytes=10**9) == (["best", "big_good", "small_weak", "big_weak"], [])


@pytest.mark.slow
@pytest.mark.parametrize("job", [job for job in smoke_plan() if any(j.compile and j.model == job.model for j in ACCURACY_SET)], ids=lambda j: j.name)
def test_compiled_jobs_trace_and_train_channels_last_in_bf16_on_cpu(job):
    """As far as a CPU goes: dynamo traces the model (eager backend: no C++ compiler), forward and backward in bf16, channels_last."""
    torch._dynamo.reset()
    model = create_model(job.model, num_classes=7, **job.model_kwargs).to(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="eager")
    x = torch.randn(4, 1, 40, 40).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        compiled(x).float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.fixture(params=["jsonschema", "plain checks"])
def schema_checker(request, monkeypatch):
    """Checkpoints checked with jsonschema, and as on the GPU machine, where importing jsonschema fails (the plain checks alone)."""
    if request.param == "plain checks":
        monkeypatch.setitem(sys.modules, "jsonschema", None)  # `import jsonschema` now raises ImportError
    _validator.cache_clear()
    yield request.param
    _validator.cache_clear()  # before monkeypatch puts jsonschema back: the next caller builds the validator again


NAN, INF = float("nan"), float("inf")
HOSTILE = {  # what a hostile or damaged checkpoint may hold instead of a field's valid value
    "classes: one": ("classes", ["happy"]),
    "classes: repeated": ("classes", ["happy", "happy"]),
    "classes: unknown": ("classes", ["happy", "bored"]),
    "classes: not text": ("classes", [1, 2]),
    "classes: a string": ("classes", "happy,sad"),
    "classes: missing": ("classes", None),
    "mean: NaN": ("preprocessing", {"mean": NAN}),
    "std: infinite": ("preprocessing", {"std": INF}),
    "std: zero": ("preprocessing", {"std": 0.0}),
    "input_size: too small": ("preprocessing", {"input_size": 4}),
    "input_size: too large": ("preprocessing", {"input_size": 100_000}),
    "input_size: a bool": ("preprocessing", {"input_size": True}),
    "input_size: a float": ("preprocessing", {"input_size": 48.0}),
    "face_margin: out of range": ("preprocessing", {"face_margin": 3.0}),
    "face_offset_y: NaN": ("preprocessing", {"face_offset_y": NAN}),
    "preprocessing: a list": ("preprocessing", [48]),
    "arch: a number": ("arch", 7),
    "arch: a list": ("arch", ["baseline_cnn"]),
    "arch_kwargs: a list": ("arch_kwargs", [1]),
    "state_dict: a list": ("state_dict", [torch.zeros(1)]),
    "state_dict: empty": ("state_dict", {}),
    "state_dict: numbered": ("state_dict", {0: torch.zeros(1)}),
    "state_dict: not tensors": ("state_dict", {"w": 1.0}),
}


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("valid") / "valid.pt")


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_checkpoints_are_refused_with_or_without_jsonschema(schema_checker, case, valid_checkpoint, tmp_path):
    """Where jsonschema is missing (the GPU machine) the plain checks still refuse what loading cannot use, in one sentence."""
    assert (_validator() is None) == (schema_checker == "plain checks")
    field, value = HOSTILE[case]
    payload = torch.load(valid_checkpoint, weights_only=True)
    if value is None:
        del payload[field]
    else:
        payload[field] = value
    torch.save(payload, tmp_path / "hostile.pt")
    with pytest.raises(CheckpointError, match=rf"hostile\.pt .*{field}"):
        read_checkpoint(tmp_path / "hostile.pt")


@pytest.mark.parametrize("arch_kwargs", [{"depth": 2}, {"num_classes": 3}, {"widths": [8, 8]}])
def test_settings_the_architecture_does_not_take_are_refused_at_load_with_or_without_jsonschema(schema_checker, arch_kwargs, valid_checkpoint, tmp_path):
    payload = torch.load(valid_checkpoint, weights_only=True)
    torch.save({**payload, "arch_kwargs": arch_kwargs}, tmp_path / "hostile.pt")
    with pytest.raises(CheckpointError, match=r"hostile\.pt"):
        load_model(tmp_path / "hostile.pt")


def test_a_valid_checkpoint_loads_without_jsonschema(schema_checker, tmp_path):
    assert (_validator() is None) == (schema_checker == "plain checks")
    path = make_checkpoint(tmp_path / "valid.pt", meta={"dataset": "fer2013", "selection_split": None, "metrics": {}})
    loaded = load_model(path)
    assert loaded.arch == "baseline_cnn" and loaded.preprocessing == Preprocessing() and loaded.meta["dataset"] == "fer2013"
    problem = schema_problem({"input_size": 4}, PREPROCESSING)  # jsonschema's verdict; none without it, where the plain checks decide
    assert (problem is None) == (schema_checker == "plain checks") and (problem is None or problem.startswith("input_size:"))


def test_the_tracked_soft_labels_belong_to_the_real_fer2013_and_name_their_teachers(fer2013):
    from training.distill import load_soft_targets, soft_targets_info

    path = REPO_ROOT / PLANS["students"][0][0].soft_labels
    info = soft_targets_info(path)
    assert info["dataset"] == "fer2013" and info["fingerprint"] == fer2013.fingerprint and info["tta"] == "flip"
    assert len(info["members"]) == len(info["member_sha256"]) == 4 and all(len(h) == 64 for h in info["member_sha256"])
    assert info["splits"] == ["train", "public_test", "private_test"]
    probs = load_soft_targets(path, fer2013)
    labels = fer2013.splits["train"].labelled().labels
    assert 0.85 < (probs.argmax(1) == labels).mean() < 0.99  # a teacher that learnt the training set, not a copy of the labels
    with np.load(path) as archive:
        assert archive["split_private_test"].shape == (len(fer2013.splits["private_test"].labelled()), 7)
    assert path.stat().st_size < 2 * 2**20
