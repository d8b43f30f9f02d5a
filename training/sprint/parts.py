"""Files too large for one device call, split into sha256-checked parts that travel over several calls and are joined on arrival."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from emoji_mirror.fileio import atomic_open, atomic_write

from ..data import DataError

MANIFEST_SUFFIX = ".parts.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def split_file(path: Path, part_bytes: int) -> Path:
    """Split `path` into `path.NNN` parts of at most part_bytes (old parts removed) and write their manifest; returns the manifest."""
    if part_bytes < 1:
        raise DataError(f"cannot split {path} into parts of {part_bytes} bytes")
    for stale in path.parent.glob(f"{path.name}.[0-9][0-9][0-9]"):
        stale.unlink()
    parts = []
    with path.open("rb") as f:
        while chunk := f.read(part_bytes):
            part = path.with_name(f"{path.name}.{len(parts):03d}")
            part.write_bytes(chunk)
            parts.append({"name": part.name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path), "parts": parts}
    atomic_write(manifest_path(path), json.dumps(manifest, indent=1))
    return manifest_path(path)


def read_manifest(manifest: Path) -> dict:
    try:
        record = json.loads(manifest.read_text())
        if not isinstance(record, dict) or not all(isinstance(p.get("name"), str) and Path(p["name"]).name == p["name"] for p in record["parts"]):
            raise ValueError("not a parts manifest")
        return record
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{manifest} is not a readable parts manifest: {exc}") from exc


def part_paths(manifest: Path) -> list[Path]:
    """The parts a manifest lists, in order."""
    return [manifest.parent / p["name"] for p in read_manifest(manifest)["parts"]]


def join_parts(manifest: Path) -> Path:
    """Check every part the manifest lists (present, size, sha256), join them into the file beside it (atomically) and check
    the whole; returns the joined file. A file already there with the right sha256 is kept. Names every part that is wrong."""
    record = read_manifest(manifest)
    target = manifest.parent / record["file"]
    if target.is_file() and target.stat().st_size == record["bytes"] and file_sha256(target) == record["sha256"]:
        return target
    problems = []
    for part in record["parts"]:
        path = manifest.parent / part["name"]
        if not path.is_file():
            problems.append(f"{part['name']} missing")
        elif path.stat().st_size != part["bytes"] or file_sha256(path) != part["sha256"]:
            problems.append(f"{part['name']} damaged (size or sha256 differs)")
    if problems:
        raise DataError(f"cannot join {record['file']} from its parts: {'; '.join(problems)} (stage them again: the device calls "
                        f"from `scripts/gpu_sprint.sh`)")
    digest = hashlib.sha256()
    with atomic_open(target) as out:
        for part in record["parts"]:
            chunk = (manifest.parent / part["name"]).read_bytes()
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != record["sha256"]:  # raised inside: the joined file is never left behind
            raise DataError(f"{record['file']}: its joined parts do not give the file the manifest describes")
    return target
