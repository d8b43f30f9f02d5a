"""Live mirror page (the default): your webcam video with every face's expression drawn as an emoji, live."""

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from emoji_mirror.overlay import STYLES
from emoji_mirror.pipeline import MirrorPipeline
from emoji_mirror.app.rtc import rtc_configuration
from emoji_mirror.app.stream import use_newest_frame_track, video_frame, viewers
from emoji_mirror.app.loaders import load_overlay, models_or_stop

st.title("🪞 Emoji Mirror")
st.caption("Press **Start** and allow the camera: each face gets the emoji of its expression. Frames are processed in memory by this server and never stored.")

classifier, detector = models_or_stop()

settings = dict(
    min_confidence=st.sidebar.slider("Face detection confidence", 0.2, 0.95, 0.5, 0.05, help="Lower finds more (and more doubtful) faces."),
    smoothing=st.sidebar.slider("Smoothing", 0.0, 0.95, 0.6, 0.05, help="Weight of past frames in each face's emotion: 0 = off, higher = steadier against noise. A clear change of expression still switches the emoji at once."),
    classify_interval_s=st.sidebar.select_slider(
        "Classify each face", options=(0.0, 0.05, 0.1, 0.2), format_func=lambda s: f"every {s * 1000:.0f} ms" if s else "every frame",
        help="On a slow machine, classify each followed face at most this often and reuse its result in between.",
    ),
    unsure_below=st.sidebar.slider("Unsure below", 0.0, 1.0, 0.4, 0.05, help="A face whose top emotion is less likely than this is drawn grey with a faded emoji."),
    style=st.sidebar.radio("Overlay", STYLES),
)

# One pipeline per browser session (its settings, face tracks and counters are this viewer's own); models are shared.
pipeline: MirrorPipeline | None = st.session_state.get("mirror_pipeline")
if pipeline is None or pipeline.detector is not detector:
    pipeline = st.session_state["mirror_pipeline"] = MirrorPipeline(classifier, detector, overlay=load_overlay())
pipeline.set_classifier(classifier)
pipeline.update_settings(**settings)


def video_frame_callback(frame: av.VideoFrame) -> av.VideoFrame:
    """Runs on the WebRTC worker thread for every frame: no Streamlit calls here, results go out via pipeline.stats."""
    image, _ = pipeline.process(frame.to_ndarray(format="bgr24"), viewers())
    return video_frame(image)


try:
    ice = rtc_configuration()
except ValueError as exc:  # a malformed $EMOJI_MIRROR_ICE_SERVERS
    st.error(f"**WebRTC settings are invalid.** {exc}")
    st.stop()

use_newest_frame_track()
context = webrtc_streamer(
    key="emoji-mirror",
    mode=WebRtcMode.SENDRECV,
    video_frame_callback=video_frame_callback,
    media_stream_constraints={"video": True, "audio": False},
    rtc_configuration=ice,
    async_processing=True,
)


@st.fragment(run_every=1.0 if context.state.playing else None)
def show_stats() -> None:
    """Live figures from the pipeline, refreshed every second while the video plays."""
    stats = pipeline.stats.snapshot()
    ms = stats["stage_ms"]
    watching = viewers()
    if watching > 1:
        st.info(
            f"busy: {watching} viewers share this server, so each face is classified less often and faces are looked for on "
            f"one frame in {watching}: everyone keeps moving.",
            icon="⏳",
        )
    fps, speed, faces = st.columns(3)
    fps.metric("Frames per second", f"{stats['fps']:.1f}")
    speed.metric("Processing", f"{ms['total']:.1f} ms/frame", help=f"up to {stats['max_fps']:.0f} fps on this machine")
    faces.metric("Faces seen", stats["faces"])
    st.caption(
        f"frames processed: {stats['frames']} · frames with faces: {stats['frames_with_faces']} · emoji drawn: {stats['emoji_drawn']} · "
        f"emoji changes: {stats['label_changes']} · "
        f"ms per stage: detect {ms['detect']:.1f}, crop {ms['crop']:.1f}, classify {ms['classify']:.1f}, draw {ms['draw']:.1f}"
    )


show_stats()
