"""The sprint on the device: train a plan's jobs concurrently inside a wall-clock budget, score them there, return at most 8 files."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from emoji_mirror.fileio import atomic_write
from emoji_mirror.checkpoint import CheckpointError, atomic_torch_save, first_line, half_state_dict, load_model, read_checkpoint

from ..data import DataError, load_dataset
from ..data.pack import PACK_SUFFIX, describe
from ..distill import save_soft_targets, weights_sha256
from ..evaluate.entries import labelled_splits
from ..evaluate.model_card import render_card
from ..evaluate.scoring import Probabilities, score_splits
from ..runtime import pick_device
from .device import RESULT_FILES, RESULT_TOTAL_MIB
from .parts import file_sha256, join_parts, manifest_path
from .plan import EVAL_RESERVE_S, Job, planned_epochs, train_command

FORMAT = "emoji-mirror-sprint"
BUNDLE = "checkpoints.tar"
PART_BYTES = 15 * 2**20  # each returned file stays under the 16 MiB limit
WORKER_STARTUP_S = 15.0  # a worker's import, data load and CUDA start, before its own budget clock runs
KILL_GRACE_S = 10.0
REPORT_RESERVE_BYTES = 2**20  # kept for summary.json and sprint.log beside the bundle
TAR_OVERHEAD_BYTES = 2 * 1024  # a tar member's header and padding, at most


class Log:
    """The sprint's log: printed and kept in a file."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def __call__(self, line: str) -> None:
        stamped = f"[sprint {datetime.now().strftime('%H:%M:%S')}] {line}"
        print(stamped, flush=True)
        with self.path.open("a") as f:
            f.write(stamped + "\n")


# ---------------------------------------------------------------- training the jobs concurrently


def launch(jobs: list[Job], packs: dict[str, Path], epochs: dict[str, int], budget_min: float, work: Path, args, log: Log) -> dict:
    """Start one `training.train` process per job (each gets the card in turn, and a share of the CPU threads)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // len(jobs)))}
    (work / "logs").mkdir(parents=True, exist_ok=True)
    procs = {}
    for job in jobs:
        cmd = train_command(job, str(packs[job.dataset]), epochs[job.name], budget_min, str(work), args.cache_dir, args.device)
        log(f"{job.name}: {epochs[job.name]} epochs planned (est. {job.epoch_seconds:g} s each), budget {budget_min:.2f} min"
            f"{', compiled' if job.compile else ''}")
        with (work / "logs" / f"{job.name}.log").open("w") as out:
            procs[job.name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return procs


def wait_all(procs: dict[str, subprocess.Popen], deadline: float, log: Log) -> dict[str, int]:
    """Wait for every process; at the deadline, stop the rest (SIGTERM, then SIGKILL). Returns each one's exit code.

    Interrupted (Ctrl-C), it stops them all before passing the interrupt on: they run in their own sessions."""
    try:
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
    except BaseException:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        raise
    late = [name for name, p in procs.items() if p.poll() is None]
    for name in late:
        log(f"{name}: still running at the deadline; stopping it (its best epoch so far is kept)")
        os.killpg(procs[name].pid, signal.SIGTERM)
    for name in late:
        try:
            procs[name].wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(procs[name].pid, signal.SIGKILL)
            procs[name].wait()
    return {name: p.returncode for name, p in procs.items()}


def collect(job: Job, returncode: int, work: Path) -> tuple[Path | None, str]:
    """The job's fp16 checkpoint and how the run ended; a run stopped or crashed mid-way ships its best epoch so far."""
    export, best = work / "export" / f"{job.name}.pt", work / "runs" / job.name / "best.pt"
    if returncode == 0 and export.is_file():
        return export, "finished"
    if not best.is_file():
        return None, f"failed (exit {returncode}) before its first epoch ended"
    payload = read_checkpoint(best)
    payload["state_dict"] = half_state_dict(payload["state_dict"])
    atomic_torch_save(payload, export)
    return export, f"stopped (exit {returncode}); best epoch so far kept"


def epoch_times(work: Path, name: str) -> dict:
    """Epochs run, and the first epoch's seconds (compile included) against the median of the rest, from the run's log."""
    path = work / "runs" / name / "metrics.jsonl"
    history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    rest = [r["seconds"] for r in history[1:]]
    return {"epochs_run": len(history), "first_epoch_seconds": round(history[0]["seconds"], 2) if history else None,
            "median_epoch_seconds": round(statistics.median(rest), 2) if rest else None}


# ---------------------------------------------------------------- scoring on the device (selection split; TTA chosen there)


def score_entry(probabilities: Probabilities, members: list, scored: dict, selection: str) -> dict:
    """TTA chosen on the selection split, every mode's accuracy there, and the metrics of every scored split with it."""
    tta, metrics, _, _, tta_scores = score_splits(lambda images, mode: probabilities.mean(members, images, mode), scored, selection, "auto",
                                                  members[0].classes)
    return {"selection_split": selection, "tta": tta, "tta_accuracy_on_selection": tta_scores, "metrics": metrics}


def evaluate_all(done: dict[str, Path], plan: dict[str, Job], ensemble_name: str, datasets: dict, probabilities: Probabilities,
                 log: Log) -> tuple[list, list, dict]:
    """Score every returned checkpoint on the splits the device has (selection split at least), and the FER2013 ensemble;
    also returns the loaded models. A checkpoint that cannot be scored is left out of `done` (and so of what returns)."""
    entries, loaded = {}, {}
    for name, path in list(done.items()):
        try:
            loaded[name] = load_model(path, probabilities.device)
            scored = labelled_splits(datasets[plan[name].dataset], path)
            entries[name] = score_entry(probabilities, [loaded[name]], scored, loaded[name].meta["selection_split"])
        except (CheckpointError, DataError, RuntimeError, KeyError) as exc:
            log(f"{name}: cannot be scored ({first_line(exc)}); left out")
            del done[name]
            loaded.pop(name, None)
            continue
        log(f"{name}: {entries[name]['selection_split']} {entries[name]['metrics'][entries[name]['selection_split']]['accuracy']:.2f}% "
            f"(TTA {entries[name]['tta']}; by mode {entries[name]['tta_accuracy_on_selection']})")
    ensembles = []
    members = [n for n in done if plan[n].ensemble and plan[n].dataset == "fer2013"]
    if len(members) >= 2:
        scored = labelled_splits(datasets["fer2013"], ensemble_name)
        entry = {"name": ensemble_name, "members": members,
                 **score_entry(probabilities, [loaded[n] for n in members], scored, entries[members[0]]["selection_split"])}
        ensembles.append(entry)
        log(f"{ensemble_name} of {', '.join(members)}: {entry['selection_split']} "
            f"{entry['metrics'][entry['selection_split']]['accuracy']:.2f}% (TTA {entry['tta']})")
    return [{"name": n, **e} for n, e in entries.items()], ensembles, loaded


SOFT_LABEL_TTA = "flip"  # the teachers' soft labels: flip under bf16 autocast, seconds on a GPU (ten-crop in fp32 on the
# training split took the first teachers sprint 100 s, past its call's limit); the selection split's flip probabilities are
# reused from scoring (fp32)


def write_soft_labels(ensembles: list[dict], done: dict[str, Path], plan: dict[str, Job], datasets: dict, probabilities: Probabilities,
                      loaded: dict, out: Path, log: Log) -> list[dict]:
    """For each dataset with teachers, the mean of their class probabilities on every labelled split the device has, written
    fp16 to out/soft_labels_<dataset>.npz, named after the FER2013 ensemble or the single teacher."""
    written = []
    for dataset_name, dataset in datasets.items():
        members = [n for n in done if plan[n].teacher and plan[n].dataset == dataset_name and n in loaded]
        if not members:
            continue
        ensemble = next((e["name"] for e in ensembles if set(e["members"]) == set(members)), None)
        probs = {}
        for split_name, split in dataset.splits.items():
            images = split.labelled().images
            if len(images):
                with torch.autocast(probabilities.device.type, dtype=torch.bfloat16, enabled=probabilities.device.type == "cuda"):
                    probs[split_name] = probabilities.mean([loaded[n] for n in members], images, SOFT_LABEL_TTA)
        path = out / f"soft_labels_{dataset_name}.npz"
        save_soft_targets(path, probs.pop("train"), dataset, members, SOFT_LABEL_TTA, [weights_sha256(done[n]) for n in members], probs)
        written.append({"file": path.name, "dataset": dataset_name, "members": members, "tta": SOFT_LABEL_TTA,
                        "teacher_name": ensemble or members[0], "bytes": path.stat().st_size})
        log(f"{path.name}: soft labels of {', '.join(members)} (TTA {SOFT_LABEL_TTA}) on {', '.join(['train', *probs])}, "
            f"{path.stat().st_size / 2**10:.0f} KiB")
    return written


# ---------------------------------------------------------------- what comes back


def fit_returns(entries: list[dict], done: dict[str, Path], budget_bytes: int) -> tuple[list[str], list[str]]:
    """Which checkpoints come back: best selection-split accuracy first, each while it and its card fit the budget; the rest stay behind."""
    kept, left, used = [], [], 0
    for entry in sorted(entries, key=lambda e: -e["metrics"][e["selection_split"]]["accuracy"]):
        size = sum(p.stat().st_size + TAR_OVERHEAD_BYTES for p in (done[entry["name"]], done[entry["name"]].with_suffix(".md")))
        if used + size <= budget_bytes:
            kept.append(entry["name"])
            used += size
        else:
            left.append(entry["name"])
    return kept, left


def bundle(paths: list[Path], out: Path, room: int = RESULT_FILES - 2) -> list[str]:
    """Tar the checkpoints and cards, split into parts under the per-file limit: out/checkpoints.tar.000, .001, ... (old parts removed)."""
    for stale in out.glob(f"{BUNDLE}.*"):
        stale.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / BUNDLE
        with tarfile.open(tar_path, "w") as tar:
            for path in paths:
                tar.add(path, arcname=path.name)
        names = []
        with tar_path.open("rb") as f:
            while chunk := f.read(PART_BYTES):
                names.append(f"{BUNDLE}.{len(names):03d}")
                (out / names[-1]).write_bytes(chunk)
    if len(names) > room:
        raise DataError(f"the checkpoints need {len(names)} parts; only {room} fit beside summary.json, sprint.log and the soft labels")
    return names


def run(args, plan: tuple[Job, ...], ensemble_name: str) -> int:
    """The sprint: unpack the data, train every job concurrently inside the budget, score, and write at most 8 files to --out."""
    started, clock = datetime.now(timezone.utc), time.monotonic()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work, out = Path(tempfile.mkdtemp(prefix="sprint-", dir=args.workdir)), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(work / "sprint.log")
    device = pick_device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    log(f"torch {torch.__version__} on {device_name}; budget {args.budget_min:g} min; plan {args.plan}: {len(plan)} jobs{' (smoke)' if args.smoke else ''}")
    packs, datasets = {}, {}
    for name in sorted({job.dataset for job in plan}):
        pack = Path(args.packs) / f"{name}{PACK_SUFFIX}"
        if manifest_path(pack).is_file():
            pack = join_parts(manifest_path(pack))  # every part checked (sha256); a missing or damaged one is named
        if not pack.is_file():
            log(f"{pack} is missing: its jobs are skipped (make it with `python -m training.sprint --pack`)")
            continue
        packs[name], datasets[name] = pack, load_dataset(pack, args.cache_dir)  # decoded once; the workers read the cache
        log(f"{describe(pack)}; decoded at {time.monotonic() - clock:.0f} s")
    jobs = [job for job in plan if job.dataset in datasets]
    if not jobs:
        raise DataError(f"no data pack in {args.packs}: nothing to train")
    train_seconds = args.budget_min * 60 - (time.monotonic() - clock) - EVAL_RESERVE_S
    if train_seconds <= WORKER_STARTUP_S:
        raise DataError(f"--budget-min {args.budget_min:g} leaves no time to train after unpacking and the {EVAL_RESERVE_S:.0f} s reserve")
    epochs = {job.name: planned_epochs(job, train_seconds - WORKER_STARTUP_S, args.smoke) for job in jobs}
    procs = launch(jobs, packs, epochs, (train_seconds - WORKER_STARTUP_S) / 60, work, args, log)
    codes = wait_all(procs, clock + args.budget_min * 60 - EVAL_RESERVE_S / 2, log)
    plan_by_name, done, reports = {job.name: job for job in jobs}, {}, {}
    for job in jobs:
        path, status = collect(job, codes[job.name], work)
        reports[job.name] = {"status": status, "returncode": codes[job.name], "epochs_planned": epochs[job.name], **epoch_times(work, job.name)}
        if status == "finished" and reports[job.name]["epochs_run"] < epochs[job.name]:
            reports[job.name]["status"] = status = "finished early on its time budget; best epoch kept"
        log(f"{job.name}: {status}; {reports[job.name]['epochs_run']} of {epochs[job.name]} epochs "
            f"(first {reports[job.name]['first_epoch_seconds']} s, then median {reports[job.name]['median_epoch_seconds']} s)")
        if path is not None:
            done[job.name] = path
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # scores the CPU can reproduce (--import)
    probabilities = Probabilities(device)
    singles, ensembles, loaded = evaluate_all(done, plan_by_name, ensemble_name, datasets, probabilities, log)
    for stale in out.glob("soft_labels_*.npz"):
        stale.unlink()
    soft_labels = write_soft_labels(ensembles, done, plan_by_name, datasets, probabilities, loaded, out, log)
    for name, path in done.items():
        atomic_write(path.with_suffix(".md"), render_card(path))
    soft_bytes = sum(s["bytes"] for s in soft_labels)
    kept, left_behind = fit_returns(singles, done, int(RESULT_TOTAL_MIB * 2**20) - REPORT_RESERVE_BYTES - soft_bytes)
    for name in left_behind:
        reports[name]["status"] = f"trained, but left on the device: returned files are limited to {RESULT_TOTAL_MIB:g} MiB, better-scoring checkpoints came first"
        log(f"{name}: {reports[name]['status']}")
    if left_behind:
        files = " ".join(f"{name}.pt {name}.md" for name in left_behind)
        log(f'fetch them at once, while the machine is warm: device call `cd {(work / "export").resolve()} && sha256sum *.pt && tar cf - {files} '
            f'| split -b {PART_BYTES // 2**20}M -d -a 3 - "$OUT/left.tar."`, then here `cat left.tar.* | tar xf -` into checkpoints/')
    scored_on_device = ensembles  # every ensemble's device scores stay in the summary, with or without its members
    ensembles = [e for e in ensembles if set(e["members"]) <= set(kept)]
    parts = bundle([p for name in done if name in kept for p in (done[name], done[name].with_suffix(".md"))], out,
                   RESULT_FILES - 2 - len(soft_labels))
    models = [{**entry, "arch": plan_by_name[entry["name"]].model, "dataset": plan_by_name[entry["name"]].dataset,
               "job": asdict(plan_by_name[entry["name"]]), **reports[entry["name"]]} for entry in singles if entry["name"] in kept]
    failed = [{"name": name, "job": asdict(plan_by_name[name]), **reports[name]} for name in reports if name not in done]  # incl. unscorable
    left_on_device = [{"name": name, "job": asdict(plan_by_name[name]), **reports[name]} for name in left_behind]
    summary = {"format": FORMAT, "version": 1, "started": started.isoformat(timespec="seconds"), "device": device_name,
               "torch": torch.__version__, "plan": args.plan, "budget_min": args.budget_min, "train_seconds": round(train_seconds, 1), "smoke": args.smoke,
               "models": models, "failed": failed, "left_on_device": left_on_device, "ensembles": ensembles, "bundle": parts,
               "bundle_sha256": {part: file_sha256(out / part) for part in parts},
               "ensembles_scored_on_device": scored_on_device, "soft_labels": soft_labels,
               "wall_seconds": round(time.monotonic() - clock, 1)}
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    log(f"wrote {out}: summary.json, sprint.log, {', '.join([*(s['file'] for s in soft_labels), *parts])} in {summary['wall_seconds']:.0f} s of {args.budget_min * 60:.0f}")
    logs = [log.path.read_text()] + [f"\n===== {job.name} =====\n" + (work / "logs" / f"{job.name}.log").read_text() for job in jobs]
    atomic_write(out / "sprint.log", "".join(logs))
    return 1 if failed else 0
