"""Write a short model card (Markdown) for each checkpoint from its own metadata: `python -m training.evaluate.model_card checkpoints/*.pt`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoji_mirror.fileio import atomic_write
from emoji_mirror.checkpoint import CheckpointError, read_checkpoint

LIMITS = """\
- FER2013 is 48x48 grayscale web-image crops, mostly frontal and often posed; profile faces, poor light, occlusion and
  children are under-represented, and its labels are noisy (humans agree with them about 65% of the time).
- `disgust` has 436 training images of 28,709: expect low recall for it (see the per-class table on the Compare page).
- The demographic make-up of FER2013 is undocumented; accuracy across groups has not been measured.
- An expression classifier reads faces, not feelings: do not use it to judge people."""


def describe_recipe(config: dict) -> str:
    """One line naming the run's recipe and its main settings."""
    recipe = config.get("recipe", "seed")
    parts = ["SGD-Nesterov" if config.get("optimizer") == "sgd" else "AdamW", f"lr {config.get('lr')}",
             "warm-up + cosine" if config.get("schedule") == "onecycle" else "ReduceLROnPlateau"]
    if config.get("class_weights", True):
        parts.append("class-weighted cross-entropy")
    if config.get("label_smoothing"):
        parts.append(f"label smoothing {config['label_smoothing']}")
    if config.get("logit_adjust"):
        parts.append(f"logit-adjusted loss (tau {config['logit_adjust']}: balanced predictions)")
    if config.get("targets") == "votes":
        parts.append("trained on the annotators' vote distribution")
    if config.get("ferplus_votes"):
        parts.append(f"FER+ votes for the same faces mixed into the labels (weight {config.get('ferplus_weight')})")
    if config.get("teacher"):
        parts.append(f"distilled from `{Path(config['teacher']).name}` (weight {config.get('distill_alpha')} on its soft labels)")
    if config.get("ema_decay"):
        warmup = " with decay warm-up" if config.get("ema_warmup") else ""
        parts.append(f"EMA {config['ema_decay']}{warmup} (the EMA weights are shipped)")
    if config.get("augment") == "batch":
        parts.append(f"batched augmentation, {config.get('train_size')} px crops")
        camera = {k: config.get(f"aug_{k}") for k in ("box_scale", "box_shift", "blur", "brightness", "contrast", "gamma")}
        if any(camera.values()):
            parts.append("camera augmentation (" + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in camera.items() if v) + ")")
    parts.append("early stopping on the selection split" if config.get("patience") else "best epoch chosen on the selection split")
    return f"`{recipe}` recipe: " + ", ".join(parts)


def describe_kwargs(payload: dict) -> str:
    """The architecture's settings as the card shows them: a packed ensemble's as its members' architectures."""
    kwargs = payload.get("arch_kwargs") or {}
    if "members" in kwargs:
        return "of " + " + ".join(f"`{m['arch']}`" + (f" {m['arch_kwargs']}" if m.get("arch_kwargs") else "")
                                  + (" (input standardized)" if m.get("photometry") == "standardize" else "") for m in kwargs["members"])
    return str(kwargs) if kwargs else ""


def describe_members(meta: dict) -> str:
    """The Members lines of a packed ensemble's card: each member's scores, recipe and weight hash, and how it was packed."""
    names = [m["name"] for m in meta["members"]]
    lines = [f"- **Members** (the mean of their probabilities; packed by `python -m training.export --ensemble {','.join(names)}`, "
             f"commit `{meta.get('commit', '?')}`):"]
    for member in meta["members"]:
        scores = ", ".join(f"{split} {m['accuracy']:.2f}" for split, m in member.get("metrics", {}).items())
        lines.append(f"  - `{member['name']}` (`{member['arch']}`, weights sha256 `{member['weights_sha256'][:12]}`): {scores or 'no scores'}; "
                     f"{describe_recipe(member.get('config', {}))}, best epoch {member.get('epoch', '?')}.")
    return "\n".join(lines)


def time_to_accuracy(history: list[dict]) -> str:
    """A line with the training time to reach 55/60/65/68/70% on a tracked split, when the run tracked one."""
    keys = sorted({k for r in history for k in r if k.endswith("(tracked)")})
    lines = []
    for key in keys:
        reached = []
        for target in (55, 60, 65, 68, 70):
            hit = next((r for r in history if r.get(key, 0) >= target), None)
            reached.append(f"{target}% after {hit['elapsed_seconds'] / 60:.0f} min (epoch {hit['epoch']})" if hit else f"{target}% not reached")
        lines.append(f"- **Time to accuracy** on `{key.replace('/accuracy (tracked)', '')}` (tracked each epoch, never used for selection): {'; '.join(reached)}.")
    return "\n".join(lines) + ("\n" if lines else "")


def percent(value: float | None) -> str:
    """A percentage with two decimals, or a dash when the metric was not recorded (older checkpoints)."""
    return "–" if value is None else f"{value:.2f}"


def render_card(path: Path) -> str:
    """The Markdown card for one checkpoint."""
    payload = read_checkpoint(path)
    meta, config = payload["meta"], payload["meta"].get("config", {})
    storage = {"int8": "; weights stored int8 (per-channel scales, `python -m training.export`)", "fp16": "; weights stored fp16"}.get(meta.get("storage"), "")
    if meta.get("onnx_int8"):
        storage += f"; runs int8 on ONNX Runtime (activation ranges measured on {meta['onnx_int8'].get('faces', 'training faces')}; scores measured so)"
    history = meta.get("history", [])
    minutes = sum(r.get("seconds", 0) for r in history) / 60
    selection = meta.get("selection_split", "?")
    rows = "\n".join(
        f"| {split} | {m['accuracy']:.2f} | {m['macro_f1']:.2f} | {percent(m.get('mean_recall'))} | {m['n']} | {'selection split (not an unbiased estimate)' if split == selection else 'held out'} |"
        for split, m in meta.get("metrics", {}).items()
    )
    shown = ("recipe", "epochs", "batch_size", "lr", "patience", "warmup_epochs", "select_on", "seed", "logit_adjust", "targets", "teacher", "distill_alpha", "photometry",
             "ferplus_votes", "ferplus_weight")
    unshown_defaults = {"seed": 0, "targets": "labels"}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.items() if k in shown and v is not None and unshown_defaults.get(k) != v)
    offset = payload['preprocessing'].get('face_offset_y', 0.0)
    training = describe_members(meta) if meta.get("members") else (
        f"- **Recipe:** {describe_recipe(config)}\n  (`python -m training.train --model {payload['arch']} {flags}`); best epoch "
        f"{meta.get('epoch', '?')} of {len(history)} trained,\n  {minutes:.0f} min on {config.get('device', '?')} (amp {config.get('amp', '?')}). "
        f"Commit `{meta.get('commit', '?')}`.")
    return f"""# {path.stem}

- **Architecture:** `{payload['arch']}` {describe_kwargs(payload)} — {meta.get('params', 0) / 1e6:.2f}M parameters, built by `create_model("{payload['arch']}")`{storage}.
- **Input:** {payload['preprocessing']['input_size']}x{payload['preprocessing']['input_size']} grayscale face crop, scaled to [0, 1], {"standardized to FER2013's typical brightness and contrast, " if payload['preprocessing'].get('photometry', 'none') != 'none' else ''}normalised with mean {payload['preprocessing']['mean']} / std {payload['preprocessing']['std']};
  live crop: the detector's box plus {payload['preprocessing'].get('face_margin', 0.1)} of its side on each side, {f"centre moved {'up' if offset < 0 else 'down'} by {abs(offset)} of it" if offset else 'same centre'} (`python -m training.data.framing`).
- **Classes:** {', '.join(payload['classes'])}.
- **Data:** {meta.get('dataset', '?')} training split (data fingerprint `{meta.get('data_fingerprint', '?')[:16]}`); model selected on `{selection}`.
{training}
{time_to_accuracy(history)}
| split | accuracy % | macro-F1 % | mean recall % | images | role |
|---|---|---|---|---|---|
{rows}

## Limits
{LIMITS}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate.model_card", description=__doc__)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for path in args.checkpoints:
        try:
            card = render_card(path)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        atomic_write(path.with_suffix(".md"), card)
        print(f"wrote {path.with_suffix('.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
