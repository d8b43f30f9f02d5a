"""The one command that trains a summary row again from what is tracked: its recorded settings as training.train flags."""

from __future__ import annotations

import shlex
import subprocess

from emoji_mirror.onnx_int8 import faces_count
from emoji_mirror.paths import REPO_ROOT

from ..recipes import recipe_for
from ..train import command_line

# Recorded in a run's config but not settings: what the data and the machine were, and the first runs' scheduler name.
NOT_SETTINGS = {"model", "dataset", "data_fingerprint", "amp", "device", "world_size", "scheduler"}
DATA = {"fer2013": "fer2013.zip", "ferplus": "ferplus.zip"}


def tracked(path: str) -> bool:
    """Whether git tracks this file of the repository (a teacher's soft labels must be, for a run to be rebuilt)."""
    found = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=REPO_ROOT, capture_output=True)
    return found.returncode == 0


def rebuild_argv(entry: dict) -> list[str] | None:
    """`python -m training.train ...` with the row's recorded settings (its model's name, exported to checkpoints/), or
    None when it cannot be rebuilt: an ensemble, no recorded config (or one without its model), a teacher, FER+ votes
    or initial checkpoint file that is not tracked, or settings today's trainer no longer has."""
    config = (entry.get("train") or {}).get("config")
    if entry.get("members") or not isinstance(config, dict) or not isinstance(config.get("model"), str):
        return None
    if any(config.get(key) and not tracked(str(config[key])) for key in ("teacher", "ferplus_votes", "init_from")):
        return None
    try:
        recipe = recipe_for(config["model"], config.get("recipe") or "seed")
    except ValueError:  # a recipe today's trainer no longer has
        return None
    settings = {key: value for key, value in config.items() if key not in NOT_SETTINGS and value not in (None, {})}
    if isinstance(settings.get("optimizer"), str):
        settings["optimizer"] = settings["optimizer"].lower()  # the first runs recorded torch's class name
    settings = {key: value for key, value in settings.items() if key not in recipe or recipe[key] != value}  # the recipe says the rest
    negated = [f"--no-{key.replace('_', '-')}" for key, value in settings.items() if value is False and isinstance(recipe.get(key), bool)]
    try:
        argv = command_line(model=config["model"], data=DATA.get(config.get("dataset"), "fer2013.zip"), name=entry["name"],
                            export_dir="checkpoints", **settings)
    except ValueError:  # a setting today's trainer no longer has
        return None
    return argv + sorted(negated)


def members_back(names: list[str], models: list[dict], shipped: set[str]) -> bool:
    """Whether every member is shipped or has a row that can be trained again."""
    known = {m["name"]: m for m in models}
    return all(name in shipped or (name in known and rebuild_argv(known[name])) for name in names)


def pack_command(entry: dict, data: str) -> str | None:
    """The export commands that pack a packed checkpoint's members again and store it as it was (fp16 or int8, with its
    activation calibration); None when its calibration's face count is not recorded."""
    pack = ["python", "-m", "training.export", "--ensemble", ",".join(entry["packed"]), "--data", data]
    out, storage = f"checkpoints/{entry['name']}.pt", entry.get("storage", "fp32")
    if storage == "fp32":
        return shlex.join([*pack, "--out", out])
    full = f"runs/export/{entry['name']}_fp32.pt"
    store = ["python", "-m", "training.export", f"--{storage}", full, "--out", out, "--data", data]
    if entry.get("int8_activations"):
        faces = faces_count(entry["int8_activations"])
        if faces is None:
            return None
        store += ["--calibrate", str(faces)]
    return f"{shlex.join([*pack, '--out', full])} && {shlex.join(store)}"


def rebuild_command(entry: dict, models: list[dict], shipped: set[str]) -> str | None:
    """One shell line that trains the row again (`python` for the interpreter); for an ensemble, the evaluation of its
    members once they are back (each shipped or rebuildable), for a packed one the export that packs them again. None when
    what is tracked cannot rebuild it."""
    data = DATA.get(entry.get("dataset"), "fer2013.zip")
    if entry.get("members"):
        if not members_back(entry["members"], models, shipped):
            return None
        return shlex.join(["python", "-m", "training.evaluate", "--ensemble", f"{entry['name']}={','.join(entry['members'])}",
                           "--tta", entry.get("tta", "none"), "--data", data])
    if entry.get("packed"):
        return pack_command(entry, data) if members_back(entry["packed"], models, shipped) else None
    argv = rebuild_argv(entry)
    return None if argv is None else shlex.join(["python", *argv[1:]])
