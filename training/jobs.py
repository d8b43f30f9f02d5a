"""Background training jobs (train, then evaluate) that outlive a page reload; `python -m training.jobs run JOB_FILE` drives one."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import reprlib
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from emoji_mirror.app.results import results_dir
from emoji_mirror.fileio import atomic_write
from emoji_mirror.paths import CHECKPOINT_DIR, REPO_ROOT, run_name_problem

RUNS_ENV = "EMOJI_MIRROR_RUNS"
ACTIVE = ("training", "evaluating")
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
TIER_TEACHER = "results/soft_labels/ensemble_resnet18_t4.npz"  # the tracked soft labels of the best ensemble (73.03% PrivateTest)


@dataclass(frozen=True)
class Preset:
    """One tier's training recipe as the Train page offers it, with the time and result it was measured to take."""

    title: str
    models: tuple[str, ...]
    recipe: str
    epochs: int
    batch_size: int
    teacher: str = ""
    measured: str = ""


# Measured: the training times and PrivateTest scores in results/summary.json (train.seconds, train.device).
PRESETS = {
    "live": Preset("Live tier: resnet_fer_fast, camera recipe, distilled from the best ensemble's soft labels", ("resnet_fer_fast",), "camera",
                   120, 128, TIER_TEACHER, "68 min on a 2-core CPU for 68.38% FER2013 PrivateTest (resnet_fer_fast_kd_t4, chosen on "
                   "PublicTest); about 6 min on an H200. The most accuracy per CPU hour of any recipe here, so it is the default."),
    "photo": Preset("Photo tier: resnet18_fer, our recipe", ("resnet18_fer",), "ours", 60, 128, "",
                    "7 min on an H200 for 71.83% FER2013 PrivateTest (resnet18_fer_t0); on a 2-core CPU many hours (not measured): "
                    "for a GPU."),
    "seed": Preset("The seed project's three: baseline CNN, attention CNN, ViT-Tiny, seed recipe", ("baseline_cnn", "attention_cnn", "vit_tiny"),
                   "seed", 100, 64, "", "On a 2-core CPU: baseline 53 min for 55.48%, attention CNN 103 min for 63.97% (FER2013 "
                   "PrivateTest), ViT-Tiny about 270 s an epoch (from scratch it reaches 31.99% with our recipe)."),
}
DEFAULT_PRESET = "live"
# Popen objects of the jobs this process started, polled so finished drivers do not linger as zombies.
_launched: dict[str, subprocess.Popen] = {}


class JobError(RuntimeError):
    """A job cannot be started (a bad request, another job still running) or its file cannot be read."""


def runs_dir() -> Path:
    """$EMOJI_MIRROR_RUNS (relative paths are taken from the repository root), else <repo>/runs; JobError when it names
    something that is not a folder and cannot become one."""
    path = REPO_ROOT / Path(os.environ.get(RUNS_ENV, "runs")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        usable = path.is_dir() and os.access(path, os.W_OK)
    except OSError:
        usable = False
    if not usable:
        raise JobError(f"${RUNS_ENV} ({reprlib.repr(str(path))}) is not a writable folder: point it at one")
    return path


def repo_path(text: str) -> Path:
    """A path typed by the user: ~ expanded, relative ones taken from the repository root (where jobs run)."""
    return REPO_ROOT / Path(text.strip()).expanduser()


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class TrainingRequest:
    """What to train: the choices on the training page, turned into trainer and evaluator command lines."""

    models: list[str]
    data: str
    epochs: int = 100
    batch_size: int = 64
    device: str = "auto"
    run_name: str = ""
    resume: bool = False
    max_train_images: int = 0  # 0 = all
    export_dir: str = str(CHECKPOINT_DIR)
    recipe: str = "seed"
    teacher: str = ""  # soft labels to distil from (.npz), "" = none

    def problems(self) -> list[str]:
        """Everything wrong with the request, as messages for the user (empty when it can start)."""
        # Imported here, not at module level, so the driver process does not pay for importing torch.
        from emoji_mirror.models import list_models

        from .recipes import RECIPES

        found = []
        if not self.models:
            found.append("choose at least one model")
        unknown = [m for m in self.models if m not in list_models()]
        if unknown:
            found.append(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}")
        if not self.export_dir.strip():
            found.append("enter the folder to export finished checkpoints to")
        if not self.data.strip():
            found.append("enter the path of the FER2013 data (zip, folder or fer2013.csv)")
        elif not repo_path(self.data).exists():
            found.append(f"data path {repo_path(self.data)} does not exist")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            found.append(f"epochs must be between 1 and {MAX_EPOCHS} (got {self.epochs})")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            found.append(f"batch size must be between 1 and {MAX_BATCH_SIZE} (got {self.batch_size})")
        if self.recipe not in RECIPES:
            found.append(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.teacher.strip() and not repo_path(self.teacher).is_file():
            found.append(f"teacher soft labels {repo_path(self.teacher)} do not exist")
        if self.max_train_images < 0:
            found.append(f"the number of training images must be 0 (all) or more (got {self.max_train_images})")
        if self.run_name and len(self.models) > 1:
            found.append("a run name needs a single model (with several, each run is named after its model)")
        if self.run_name and run_name_problem(self.run_name):
            found.append(run_name_problem(self.run_name))
        return found

    def run_names(self) -> list[str]:
        return [self.run_name] if self.run_name else list(self.models)

    def train_command(self, runs: Path) -> list[str]:
        from .train import command_line  # here, not at module level: the driver process need not import torch

        return command_line(model=",".join(self.models), data=repo_path(self.data), epochs=self.epochs, batch_size=self.batch_size,
                            device=self.device, output_dir=runs, export_dir=repo_path(self.export_dir), no_progress=True,
                            name=self.run_name or None, max_train_images=self.max_train_images or None, resume=self.resume,
                            recipe=self.recipe, teacher=repo_path(self.teacher) if self.teacher.strip() else None)

    def exported_checkpoints(self) -> list[Path]:
        """Where the trainer exports each run's best checkpoint."""
        return [repo_path(self.export_dir) / f"{run}.pt" for run in self.run_names()]

    def evaluate_command(self, results: Path) -> list[str]:
        """Evaluate this request's exported checkpoints; the evaluator merges them into the existing summary by name."""
        return [sys.executable, "-m", "training.evaluate", "--checkpoints", *map(str, self.exported_checkpoints()),
                "--data", str(repo_path(self.data)), "--device", self.device, "--out", str(results)]


@dataclass
class RunProgress:
    """How far one run of a job has come."""

    run: str
    epochs_done: int
    epochs_max: int
    finished: bool


@dataclass
class Job:
    """One launched request: its commands, files, pid and status (training, evaluating, finished, failed, stopped).

    A job is runs/jobs/<id>.json plus <id>.log and <id>.lock. The driver and every process it starts hold an
    inherited flock on the lock file, so whether the job is alive is answered by the kernel: the lock is free
    exactly when all of its processes have exited (finished, crashed or killed), whatever became of their pids.
    """

    id: str
    request: dict
    train_command: list[str]
    evaluate_command: list[str]
    runs_dir: str
    log: str
    started: str
    status: str = "training"
    pid: int | None = None
    ended: str | None = None
    message: str = ""
    file: Path = field(default=Path(), compare=False)

    @classmethod
    def load(cls, path: Path) -> Job:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")), file=path)
        except (ValueError, TypeError) as exc:
            raise JobError(f"job file {path} is damaged ({exc}); delete it") from None

    def save(self) -> None:
        record = {k: v for k, v in asdict(self).items() if k != "file"}
        atomic_write(self.file, json.dumps(record, indent=2))

    def update(self, **changes) -> Job:
        """Apply changes to the job file as it is on disk now (another process may have written it meanwhile)."""
        job = Job.load(self.file)
        for name, value in changes.items():
            setattr(job, name, value)
        job.save()
        return job

    @property
    def lock_file(self) -> Path:
        return self.file.with_suffix(".lock")

    @property
    def training_request(self) -> TrainingRequest:
        return TrainingRequest(**self.request)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def alive(self) -> bool:
        """Whether any process of the job still runs (they all hold the lock file's flock)."""
        try:
            with open(self.lock_file, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True
        return False

    def log_tail(self, lines: int = 30) -> str:
        path = Path(self.log)
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) if path.is_file() else ""

    def metrics(self) -> pd.DataFrame:
        """Every epoch logged so far by this job's runs (metrics.jsonl rows plus a `run` column)."""
        request, started = self.training_request, datetime.fromisoformat(self.started).timestamp()
        rows = []
        for run in request.run_names():
            path = Path(self.runs_dir) / run / "metrics.jsonl"
            # A fresh (not resumed) run still shows the previous run's log until its first epoch rewrites it.
            if path.is_file() and (request.resume or path.stat().st_mtime >= started):
                rows += [{"run": run, **json.loads(line)} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return pd.DataFrame(rows)

    def progress(self) -> list[RunProgress]:
        """Per run: epochs logged, the epoch limit, and whether its checkpoint was exported (early stopping may end it sooner)."""
        request, started = self.training_request, datetime.fromisoformat(self.started).timestamp()
        metrics = self.metrics()
        result = []
        for run, export in zip(request.run_names(), request.exported_checkpoints()):
            epochs = metrics.loc[metrics["run"] == run, "epoch"] if len(metrics) else []
            finished = export.is_file() and export.stat().st_mtime >= started
            result.append(RunProgress(run, int(max(epochs, default=0)), request.epochs, finished))
        return result


def jobs_dir(runs: Path | None = None) -> Path:
    return (runs or runs_dir()) / "jobs"


def refresh(job: Job) -> Job:
    """The job as on disk; an active job whose processes are all gone without reporting is marked failed."""
    job = Job.load(job.file)
    if job.active and not job.alive():
        job = Job.load(job.file)  # the driver writes its final status just before exiting
        if job.active:
            job = job.update(status="failed", ended=now(), message="the job's processes ended without reporting a result (killed, or the machine restarted); see the log")
    return job


def _reap_launched() -> None:
    """Collect the exit status of drivers this process started that have ended."""
    for job_id, process in list(_launched.items()):
        if process.poll() is not None:
            del _launched[job_id]


def list_jobs(runs: Path | None = None) -> list[Job]:
    """All jobs, oldest first, with up-to-date status."""
    _reap_launched()
    return [refresh(Job.load(path)) for path in sorted(jobs_dir(runs).glob("*.json"))]


def latest_job(runs: Path | None = None) -> Job | None:
    jobs = list_jobs(runs)
    return jobs[-1] if jobs else None


def active_job(runs: Path | None = None) -> Job | None:
    return next((job for job in list_jobs(runs) if job.active), None)


def start_job(request: TrainingRequest, runs: Path | None = None, results: Path | None = None) -> Job:
    """Validate the request and launch its driver in a new session (process group); JobError when it cannot start.

    Starting is atomic across sessions and processes: the check for a running job and the job's creation happen under
    an exclusive lock on runs/jobs/start.lock, so two clicks at the same instant start one job.
    """
    runs, results = runs or runs_dir(), results or results_dir()
    problems = request.problems()
    if problems:
        raise JobError("; ".join(problems))
    folder = jobs_dir(runs)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "start.lock", "wb") as start_lock:
        fcntl.flock(start_lock, fcntl.LOCK_EX)
        return _start_locked(request, runs, results, folder)


def _start_locked(request: TrainingRequest, runs: Path, results: Path, folder: Path) -> Job:
    """start_job's part under the start lock: refuse while a job runs, else create the job and launch its driver."""
    running = active_job(runs)
    if running:
        raise JobError(f"job {running.id} is still {running.status} (started {running.started}); stop it or wait for it to finish")
    started = datetime.now().astimezone()
    job_id = f"{started:%Y%m%d-%H%M%S-%f}-{'+'.join(request.run_names())}"
    job = Job(
        id=job_id, request=asdict(request), train_command=request.train_command(runs), evaluate_command=request.evaluate_command(results),
        runs_dir=str(runs), log=str(folder / f"{job_id}.log"), started=started.isoformat(timespec="seconds"), file=folder / f"{job_id}.json",
    )
    with open(job.lock_file, "wb") as lock, open(job.log, "wb") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held before the job file exists (so no page takes it for dead), then handed to the driver
        job.save()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "training.jobs", "run", str(job.file), "--lock-fd", str(lock.fileno())],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(lock.fileno(),),
            )
        except OSError as exc:
            job.update(status="failed", ended=now(), message=f"could not start the job: {exc}")
            raise JobError(f"could not start the job: {exc}") from None
    _launched[job.id] = process
    return job.update(pid=process.pid)


def stop_job(job: Job, grace_s: float = 10.0) -> Job:
    """Terminate the job's process group (SIGTERM, then SIGKILL after grace_s); the run can be resumed later."""
    job = refresh(job)
    if not job.alive():
        return job
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(job.pid, sig)  # the driver leads its own session, so its pid is the group id
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while job.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not job.alive():
            break
    if job.id in _launched:
        _launched.pop(job.id).wait(timeout=5)  # its lock is free, so it has exited; collect it
    return job.update(status="stopped", ended=now(), message="stopped from the training page; start it again with 'resume' to continue from the last finished epoch")


# ---------------------------------------------------------------- the driver process


def run_job(job_file: Path, lock_fd: int) -> int:
    """Train, then evaluate, recording each stage in the job file; both children inherit the job's lock."""
    job = Job.load(job_file)
    code = _run_logged(job.train_command, lock_fd)
    if code != 0:
        job.update(status="failed", ended=now(), message=f"training exited with code {code}; see the log")
        return code
    job.update(status="evaluating")
    code = _run_logged(job.evaluate_command, lock_fd)
    if code != 0:
        job.update(status="failed", ended=now(), message=f"training finished and exported its checkpoints, but evaluation exited with code {code}; see the log")
        return code
    job.update(status="finished", ended=now(), message="trained, exported and evaluated: see the Compare page")
    return 0


def _run_logged(command: list[str], lock_fd: int) -> int:
    print(f"$ {shlex.join(command)}", flush=True)
    return subprocess.run(command, check=False, cwd=REPO_ROOT, pass_fds=(lock_fd,)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.jobs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="drive one job: train, then evaluate (started by the training page)")
    run.add_argument("job_file", type=Path)
    run.add_argument("--lock-fd", type=int, required=True, help="inherited descriptor holding the job's flock")
    args = parser.parse_args(argv)
    return run_job(args.job_file, args.lock_fd)


if __name__ == "__main__":
    raise SystemExit(main())
