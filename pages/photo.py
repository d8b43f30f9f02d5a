"""Photo page: upload photos (or take one with the camera); every face gets its emoji and a chart of the model's probabilities."""

import cv2
import pandas as pd
import streamlit as st

from emoji_mirror.images import EXTENSIONS, MAX_PIXELS, MIN_FACE_SIDE, ImageReadError, read_image
from emoji_mirror.pipeline import MirrorPipeline, MirrorSettings
from emoji_mirror.app.loaders import load_overlay, models_or_stop

MAX_SIDE = 1280  # larger photos are shrunk while decoding: faster, less memory, and boxes and labels stay legible

st.title("📷 Photo")
st.caption(
    "Upload photos with faces in them: each face is boxed with its emoji, with the model's probability for every emotion. "
    f"Up to {MAX_PIXELS / 1e6:.0f} megapixels; photos are processed in memory and never stored."
)

classifier, detector = models_or_stop(tier="photo")

min_confidence = st.sidebar.slider("Face detection confidence", 0.2, 0.95, 0.5, 0.05, help="Lower finds more (and more doubtful) faces.")
pipeline = MirrorPipeline(classifier, detector, MirrorSettings(min_confidence=min_confidence), overlay=load_overlay())

photos = [(f.name, f.getvalue()) for f in st.file_uploader("Photos", type=EXTENSIONS, accept_multiple_files=True)]
if st.toggle("Take a photo with the camera"):
    snapshot = st.camera_input("Camera")
    if snapshot is not None:
        photos.append(("camera photo", snapshot.getvalue()))

for name, data in photos:
    st.subheader(name)
    try:
        image, scale = read_image(data, name, MAX_SIDE)
    except ImageReadError as exc:
        st.error(f"Skipped: {exc}")
        continue
    if min(image.shape[:2]) < MIN_FACE_SIDE:  # nor could it be shown: scaled to fit the page, it would be 0 pixels high
        height, width = (round(side / scale) for side in image.shape[:2])
        st.warning(f"{name}: no face found: at {width:,} x {height:,} pixels the image is too thin to hold a face.")
        continue
    annotated, faces = pipeline.annotate_image(image, numbered=True)  # numbers match the "Face N" charts below
    st.image(cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB), width=min(annotated.shape[1], 720))
    if not faces:
        st.warning(f"{name}: no face found. Faces should be frontal, well lit and not tiny; lowering the detection confidence may help.")
        continue
    columns = st.columns(min(len(faces), 3))
    for number, face in enumerate(faces, 1):
        with columns[(number - 1) % len(columns)]:
            st.markdown(f"**Face {number}: {face.emoji} {face.label}** ({face.confidence:.0%})")
            chart = pd.DataFrame({"emotion": [f"{e} {c}" for e, c in zip(classifier.emojis, classifier.classes)], "probability": face.probs})
            st.bar_chart(chart, x="emotion", y="probability", horizontal=True, height=220)
