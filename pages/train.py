"""Train models in the background from the browser: launch, watch progress live, stop and resume (jobs survive a reload)."""

import dataclasses
import os

import altair as alt
import streamlit as st
import torch

from training import jobs
from emoji_mirror.models import list_models
from emoji_mirror.paths import CHECKPOINT_DIR, REPO_ROOT
from training.data import DATA_ENV
from training.recipes import RECIPES

# Measured seconds per epoch on the full FER2013 training split (28,709 faces) on a 2-core CPU.
CPU_SECONDS_PER_EPOCH = {"baseline_cnn": 45, "attention_cnn": 100, "vit_tiny": 270, "resnet_fer_fast": 31}
FER2013_TRAIN_IMAGES = 28709
STATUS_ICONS = {"training": "⏳", "evaluating": "🧮", "finished": "✅", "failed": "❌", "stopped": "⏹️"}
REFRESH_SECONDS = 2


def default_data_path() -> str:
    shared = REPO_ROOT.parent / "shared" / "datasets" / "fer2013.zip"
    return os.environ.get(DATA_ENV) or (str(shared) if shared.is_file() else "")


def epoch_estimate(model: str, max_train_images: int) -> str:
    """An honest CPU time per epoch from the measured figures, scaled by the share of the training set used."""
    if model not in CPU_SECONDS_PER_EPOCH:
        return f"**{model}**: no measured figure; the progress chart shows its real time per epoch"
    share = min(1.0, max_train_images / FER2013_TRAIN_IMAGES) if max_train_images else 1.0
    return f"**{model}**: ≈ {CPU_SECONDS_PER_EPOCH[model] * share:.0f} s per epoch on a 2-core CPU"


def show_job(job: jobs.Job) -> None:
    """Status, per-run progress bars, accuracy/loss curves and the log tail of one job."""
    st.markdown(f"{STATUS_ICONS.get(job.status, '')} **{job.status}** · job `{job.id}` · started {job.started}" + (f" · ended {job.ended}" if job.ended else ""))
    if job.message:
        (st.error if job.status == "failed" else st.info)(job.message)
    for run in job.progress():
        done = "finished" if run.finished else f"epoch {run.epochs_done}/{run.epochs_max}"
        st.progress(1.0 if run.finished else min(1.0, run.epochs_done / run.epochs_max), text=f"{run.run}: {done}")
    metrics = job.metrics()
    if len(metrics):
        accuracy_columns = ["train_accuracy"] + [c for c in metrics.columns if c.endswith("/accuracy")]
        curves = metrics.melt(id_vars=["run", "epoch"], value_vars=accuracy_columns, var_name="measured on", value_name="accuracy %")
        accuracy = alt.Chart(curves).mark_line(point=True).encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)), y=alt.Y("accuracy %:Q"), color="measured on:N", strokeDash="run:N",
            tooltip=["run", "epoch", "measured on", alt.Tooltip("accuracy %:Q", format=".2f")],
        )
        loss = alt.Chart(metrics).mark_line(point=True).encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)), y="train_loss:Q", color="run:N", tooltip=["run", "epoch", "train_loss", "lr", "seconds"],
        )
        left, right = st.columns([3, 2])
        left.altair_chart(accuracy.interactive(), width="stretch")
        right.altair_chart(loss.interactive(), width="stretch")
        latest = metrics.iloc[-1]
        st.caption(f"Last epoch ({latest['run']} {int(latest['epoch'])}) took {latest['seconds']:.0f} s at learning rate {latest['lr']:.2e}.")
    with st.expander("Log", expanded=job.status == "failed"):
        st.code(job.log_tail() or "(empty so far)", language="text")
        st.caption(f"Full log: `{job.log}`")


def job_panel(watching: bool) -> None:
    """The latest job, refreshed every few seconds while it runs; a full rerun once it ends so the form unlocks."""
    job = jobs.latest_job()
    if job is None:
        return
    if watching and not job.active:
        st.rerun()
    st.subheader("Latest job")
    show_job(job)
    if job.active and st.button("⏹️ Stop", key="stop", help="SIGTERM to the job's process group, SIGKILL if it does not end in 10 s"):
        with st.spinner("Stopping…"):
            jobs.stop_job(job)
        st.rerun()
    if job.status in ("stopped", "failed") and st.button("▶️ Resume this run", key="resume_job", help="start the same request again with --resume"):
        try:
            jobs.start_job(dataclasses.replace(job.training_request, resume=True))
        except jobs.JobError as exc:
            st.error(str(exc))
        else:
            st.rerun()


st.title("🏋️ Train")
try:
    runs = jobs.runs_dir()
except jobs.JobError as exc:  # a bad $EMOJI_MIRROR_RUNS: one clear line, not a traceback
    st.error(str(exc))
    st.stop()
st.caption(f"Jobs run in the background (`python -m training.jobs`) and keep running if you close or reload this page. Runs go to `{runs}`.")

try:
    running = jobs.active_job() is not None
    st.fragment(job_panel, run_every=REFRESH_SECONDS if running else None)(running)
    history = [{"job": j.id, "status": j.status, "started": j.started, "ended": j.ended, "message": j.message} for j in reversed(jobs.list_jobs())]
except jobs.JobError as exc:
    st.error(str(exc))
    history = []

def apply_preset() -> None:
    """Fill the form with the chosen preset's models, recipe, epochs, batch size and teacher."""
    preset = jobs.PRESETS[st.session_state.preset]
    st.session_state.update(models=[m for m in preset.models if m in list_models()], recipe=preset.recipe, epochs=preset.epochs,
                            batch_size=preset.batch_size, teacher=preset.teacher)


st.subheader("New training run")
if "preset" not in st.session_state:
    st.session_state.preset = jobs.DEFAULT_PRESET
    apply_preset()
preset = st.selectbox("Preset", list(jobs.PRESETS), format_func=lambda name: jobs.PRESETS[name].title, key="preset", on_change=apply_preset,
                      help="Each shipped tier's recipe; change any field below after choosing one.")
st.caption(f"Measured: {jobs.PRESETS[preset].measured}")
models = st.multiselect("Models", list_models(), key="models")
left, right = st.columns(2)
# No min/max on these boxes: the browser would leave a value it refuses in the box while the last accepted one is used.
# The request checks the ranges and says what is wrong.
epochs = left.number_input("Epochs (maximum; early stopping usually ends sooner)", step=1, key="epochs")
batch_size = right.number_input("Batch size", step=1, key="batch_size")
recipe = left.selectbox("Recipe", RECIPES, key="recipe", help="seed: the original project's; ours: SGD, cosine, EMA; camera: ours plus live-camera augmentation")
teacher = right.text_input("Distil from (soft labels, .npz; empty = none)", key="teacher", help="the tracked soft labels of the best ensemble are in results/soft_labels/")
data = st.text_input("Data (FER2013 zip, folder or fer2013.csv)", value=default_data_path(), key="data", help=f"default: ${DATA_ENV}, else ../shared/datasets/fer2013.zip")
devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
device = left.selectbox("Device", devices, key="device", help="auto = CUDA when available, else CPU")
run_name = right.text_input("Run name (optional, one model only)", key="run_name", help="default: the model's name; the checkpoint is exported as <run name>.pt")
resume = st.checkbox("Resume (continue the run from its last finished epoch, with the same settings)", key="resume")
with st.expander("Advanced"):
    max_train_images = st.number_input("Use only the first N training images (0 = all; for quick trials)", value=0, step=1, key="max_train_images")
    export_dir = st.text_input("Export finished checkpoints to", value=str(CHECKPOINT_DIR), key="export_dir")

request = jobs.TrainingRequest(
    models=models, data=data, epochs=int(epochs), batch_size=int(batch_size), device=device, run_name=run_name.strip(),
    resume=resume, max_train_images=int(max_train_images), export_dir=export_dir, recipe=recipe, teacher=teacher.strip(),
)
estimates = "  \n".join(epoch_estimate(m, request.max_train_images) for m in models)
if models:
    gpu = " With CUDA it is far faster." if device != "cpu" and torch.cuda.is_available() else ""
    st.info(f"{estimates}  \nEach model trains in turn, for at most {request.epochs} epochs.{gpu}")
missing = [run for run in request.run_names() if not (runs / run / "last.pt").is_file()]
if resume and missing:
    st.warning(f"Nothing to resume for {', '.join(missing)} (no last.pt in `{runs}`): those start from epoch 1.")

if st.button("🚀 Start training", type="primary", key="start"):
    try:
        jobs.start_job(request)
    except jobs.JobError as exc:
        st.error(f"Cannot start: {exc}")
    else:
        st.rerun()

if history:
    with st.expander(f"All jobs ({len(history)})"):
        st.dataframe(history, hide_index=True)
