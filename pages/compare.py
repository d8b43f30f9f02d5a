"""Compare the evaluated models (accuracy per split, speed, size, confusion matrices) from results/summary.json."""

import altair as alt
import streamlit as st

from emoji_mirror import default_rule
from emoji_mirror.app import results
from emoji_mirror.images import ImageReadError, read_image
from emoji_mirror.paths import default_checkpoint


def show_figure(path) -> None:
    """An image file the evaluator wrote, or a warning saying why it cannot be shown (empty, corrupt, not an image)."""
    try:
        image, _ = read_image(path, str(path))
    except ImageReadError as exc:
        st.error(f"Figure not shown: {exc}")
        return
    st.image(image, channels="BGR")


st.title("📊 Compare models")

try:
    summary = results.load_summary()
except FileNotFoundError:
    st.info(
        f"No evaluation results in `{results.results_dir()}` yet. Train models (🏋️ Train page, or `python -m training.train`), "
        "then score them with:"
    )
    st.code(results.EVALUATE_COMMAND, language="bash")
    st.stop()
except results.ResultsError as exc:
    st.error(f"Cannot show the results: {exc}")
    st.stop()

if not summary.models:
    st.info(f"`{summary.directory / results.SUMMARY_NAME}` lists no models; evaluate some with `{results.EVALUATE_COMMAND}`.")
    st.stop()

st.subheader("What ships")
st.dataframe(results.shipped_table(summary), hide_index=True)
st.caption("Each tier's model is picked by its rule (below) from these results and recorded in `checkpoints/default.json`; "
           "accuracy and macro-F1 are on the split the model is reported on, never the one it was selected on.")
with st.expander("The tier rules and their candidates"):
    for name, tier in default_rule.TIERS.items():
        st.markdown(f"**{name}** — {tier.rule}. By these results: **{default_rule.tier_choice(summary.models, tier) or 'no model'}**.")
        st.dataframe(default_rule.tier_candidates(summary.models, tier), hide_index=True)

st.subheader("Every evaluated model")
st.caption(f"{len(summary.models)} model(s) from `{summary.directory / results.SUMMARY_NAME}`, generated {summary.generated or 'at an unknown time'}; "
           "FER2013 first, then FER+, each sorted by the accuracy on the split it is reported on.")
st.dataframe(results.comparison_table(summary), hide_index=True)
st.caption(
    f"{results.SELECTED_MARK} marks the split each model was **selected on** (early stopping, best epoch): its score there is optimistic. "
    "FER2013 convention: select on PublicTest, report on PrivateTest. Chance level: always answering 'happy' scores 24.5% on PrivateTest. "
    "Latency: CPU milliseconds per face (preprocessed crop to probabilities) at batch 1 and 8."
)

photos = results.photo_table(summary)
if not photos.empty:
    st.subheader("On real photos")
    st.dataframe(photos.style.format(precision=1, na_rep="–"), hide_index=True)
    st.caption("End to end, as the app and the CLI run: detect, align, crop, classify; a photo with no face found counts as wrong. "
               "Scored with `python -m training.evaluate --photos DIR|ZIP`. Nothing is chosen or trained on these photos.")

default_name = getattr(default_checkpoint(), "stem", None)
st.markdown(f"**The app's default** (live tier) is now **{default_name or 'not set: the first checkpoint by name'}** (`checkpoints/default.json`).")

# ---------------------------------------------------------------- charts

st.subheader("Accuracy per model and split")
accuracy = results.accuracy_long(summary)
split_order = results.splits_of(summary)  # the reported split first
split_pick = alt.selection_point(fields=["split"], bind="legend")
bars = (
    alt.Chart(accuracy)
    .mark_bar()
    .encode(
        y=alt.Y("model:N", title=None, sort=None, axis=alt.Axis(labelLimit=300)),
        yOffset=alt.YOffset("split:N", sort=split_order),
        x=alt.X("accuracy:Q", title="accuracy %", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("split:N", sort=split_order, title="split (click to highlight)", legend=alt.Legend(orient="bottom")),
        opacity=alt.condition(split_pick, alt.value(1.0), alt.value(0.25)),
        tooltip=["model", "split", alt.Tooltip("accuracy:Q", format=".2f"), alt.Tooltip("macro_f1:Q", title="macro-F1", format=".2f"), "selected"],
    )
    .add_params(split_pick)
)
chance = results.chance_levels(summary)
layers = [bars]
if len(chance):
    rule_tooltip = ["split", alt.Tooltip("chance:Q", title="majority-class accuracy %", format=".1f")]
    layers.append(alt.Chart(chance).mark_rule(strokeDash=[4, 4], color="gray").encode(x="chance:Q", tooltip=rule_tooltip))
st.altair_chart(alt.layer(*layers), width="stretch")
if len(chance):
    st.caption("Dashed line: accuracy of always answering the split's most frequent class (from the per-class supports).")

points = results.model_points(summary)
reported_on = " or ".join(points["split"].unique())
# Models no better than chance (an untrained ViT) would squeeze the others into a band: they are drawn on the bottom edge.
useless = results.below_chance(points, chance)
y_domain = [points.loc[~useless, "accuracy"].min() - 2, points["accuracy"].max() + 2] if (~useless).any() else [0, 100]
speed, size = st.columns(2)
for column, field, title in ((speed, "latency ms/face", "CPU ms per face (batch 1)"), (size, "params (M)", "parameters (millions)")):
    known = points.dropna(subset=[field])
    with column:
        if known.empty:
            st.caption(f"No model has a {title} figure.")
            continue
        # A legend and tooltips name the points: text beside them would overlap where models are close.
        chart = alt.Chart(known, title=f"Accuracy on {reported_on}").mark_point(size=140, filled=True, opacity=0.9).encode(
            x=alt.X(f"{field}:Q", title=f"{title}, log scale", scale=alt.Scale(type="log", padding=20)),
            y=alt.Y("accuracy:Q", title="accuracy %", scale=alt.Scale(domain=y_domain, clamp=True)),
            color=alt.Color("model:N", legend=alt.Legend(orient="bottom", columns=2)),
            shape="model:N",
            tooltip=["model", "split", alt.Tooltip("accuracy:Q", format=".2f"), alt.Tooltip(f"{field}:Q", format=".3f")],
        )
        st.altair_chart(chart.interactive(), width="stretch")
if useless.any():
    st.caption(f"On the bottom edge, no better than chance: {', '.join(points.loc[useless, 'model'])} (their numbers are in the table).")

comparison_chart = summary.image(summary.images.get("comparison"))
if comparison_chart:
    with st.expander("Comparison figure written by the evaluator"):
        show_figure(comparison_chart)

# ---------------------------------------------------------------- one model in detail

st.subheader("Model details")
model = summary.model(st.selectbox("Model", [m["name"] for m in summary.models]))
st.caption(
    f"arch `{model.get('arch', '?')}` · checkpoint `{model.get('checkpoint', '?')}` · {model['params'] / 1e6:.2f}M parameters · "
    f"selected on {model['selection_split'] or 'unknown'} · TTA {model.get('tta', '?')} · data fingerprint `{(model.get('data_fingerprint') or '?')[:12]}` · "
    f"commit `{model.get('commit') or '?'}`"
)
if model.get("rebuild"):
    st.markdown("Its checkpoint does not ship; this trains it again from what the repository tracks (data: your copy):")
    st.code(model["rebuild"], language="bash")
detail_splits = list(model.get("confusion_matrix", {})) or list(model.get("per_class", {}))
if detail_splits:
    default = detail_splits.index(results.reported_split(model)) if results.reported_split(model) in detail_splits else 0
    split = st.radio("Split", detail_splits, index=default, horizontal=True)
    matrix_column, table_column = st.columns([3, 2])
    if split in model.get("confusion_matrix", {}):
        cells = results.confusion_long(model, split)
        order = list(model["classes"])
        heat = alt.Chart(cells).encode(x=alt.X("predicted:N", sort=order), y=alt.Y("true:N", sort=order))
        heatmap = heat.mark_rect().encode(
            color=alt.Color("row %:Q", title="% of true class", scale=alt.Scale(scheme="blues")),
            tooltip=["true", "predicted", "count", alt.Tooltip("row %:Q", format=".1f")],
        ) + heat.mark_text().encode(text="count:Q", color=alt.condition("datum['row %'] > 50", alt.value("white"), alt.value("black")))
        matrix_column.altair_chart(heatmap.properties(title=f"Confusion matrix, {split} (rows: true class)"), width="stretch")
    if split in model.get("per_class", {}):
        table_column.dataframe(results.per_class_table(model, split), hide_index=True)
else:
    st.caption("This entry has no confusion matrix or per-class metrics.")

images = model.get("images", {})
for title, key in (("Confusion matrices (evaluator's figure)", "confusion"), ("Attention maps", "attention")):
    path = summary.image(images.get(key))
    if path:
        with st.expander(title, expanded=key == "attention"):
            show_figure(path)
if model.get("train"):
    with st.expander("Training run and configuration"):
        st.json(model["train"])
