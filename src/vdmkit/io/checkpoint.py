"""Checkpoints: a directory of safetensors files + JSON files + ``manifest.json`` (sha256, sizes).

The directory is written under a temporary name, every file fsynced, and renamed when complete, so a
checkpoint either exists whole or not at all. Never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vdmkit.errors import CorruptCheckpointError, UnsafeFormatError
from vdmkit.io.atomic import current_umask, fsync_dir, fsync_file

FORMAT = "vdmkit-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(directory: str | os.PathLike, tensors: dict[str, dict[str, torch.Tensor]],
                    documents: dict[str, object]) -> Path:
    """Write ``{name}.safetensors`` for each tensor dict and ``{name}.json`` for each document."""
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"checkpoint {str(directory)!r} already exists; refusing to overwrite it")
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = {}
        for name, tdict in tensors.items():
            path = tmp / f"{name}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in tdict.items()}, str(path))
            os.chmod(path, 0o666 & ~current_umask())  # safetensors creates 0600 files; others' tools need to read them
            files[path.name] = path
        for name, doc in documents.items():
            path = tmp / f"{name}.json"
            path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
            files[path.name] = path
        for path in files.values():
            fsync_file(path)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "files": {n: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for n, p in files.items()}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        fsync_file(tmp / MANIFEST)
        fsync_dir(tmp)
        os.replace(tmp, directory)
        fsync_dir(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_manifest(directory: str | os.PathLike, *, check_hashes: bool = True) -> dict:
    """Verify a checkpoint directory against its manifest; raise CorruptCheckpointError saying what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CorruptCheckpointError(f"checkpoint {str(directory)!r} is not a directory")
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise CorruptCheckpointError(f"checkpoint {str(directory)!r} has no {MANIFEST}: incomplete or not a vdmkit checkpoint")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{str(mpath)!r} is not valid JSON ({e})") from e
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptCheckpointError(
            f"{str(mpath)!r}: format {manifest.get('format')!r} v{manifest.get('format_version')!r}, "
            f"expected {FORMAT!r} v{FORMAT_VERSION}")
    for name, info in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise CorruptCheckpointError(f"checkpoint {str(directory)!r} is missing {name}")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise CorruptCheckpointError(
                f"{str(path)!r} is {size} bytes, the manifest says {info['bytes']}: truncated or replaced")
        if check_hashes and sha256_file(path) != info["sha256"]:
            raise CorruptCheckpointError(f"{str(path)!r}: sha256 differs from the manifest ({info['sha256'][:12]}...)")
    return manifest


def check_safetensors_file(path: Path) -> None:
    """Refuse pickles and recognise the usual wrong files (empty, HTML, Git LFS pointer, truncated)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeFormatError(f"{str(path)!r}: pickle-based weights are refused; convert them to .safetensors")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if size == 0:
        raise CorruptCheckpointError(f"{str(path)!r} is empty (0 bytes)")
    # a safetensors file starts with its JSON header's length (u64, little-endian) then "{": recognise it
    # first, since that length's low byte can be 0x80, the pickle protocol opcode
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else size
    if len(head) > 8 and head[8:9] == b"{" and header < (1 << 32):
        if header + 8 > size:
            raise CorruptCheckpointError(f"{str(path)!r}: {size} bytes but its header alone needs {header + 8}: truncated")
        return
    if head.startswith((b"\x80", b"PK\x03\x04")):
        raise UnsafeFormatError(f"{str(path)!r} is a pickle/torch.save file; weights must be safetensors")
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        raise CorruptCheckpointError(f"{str(path)!r} is an HTML page ({size} bytes), not weights: the download failed")
    if head.startswith(b"version https://git-lfs"):
        raise CorruptCheckpointError(f"{str(path)!r} is a Git LFS pointer ({size} bytes); run `git lfs pull`")
    if header + 8 > size:
        raise CorruptCheckpointError(f"{str(path)!r}: {size} bytes but its header alone needs {header + 8}: truncated")


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpointError(f"weights file {str(path)!r} not found")
    check_safetensors_file(path)
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError for malformed headers
        raise CorruptCheckpointError(f"{str(path)!r} is not a valid safetensors file ({e})") from e


def load_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpointError(f"{str(path)!r} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{str(path)!r} is not valid JSON ({e})") from e


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first (complete or not)."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The newest complete checkpoint of a run; incomplete or corrupt ones are skipped with the reason."""
    run_dir = Path(run_dir)
    reasons = []
    for path in reversed(checkpoint_dirs(run_dir)):
        try:
            read_manifest(path)
            return path
        except CorruptCheckpointError as e:
            reasons.append(str(e))
    detail = ("; skipped: " + " | ".join(reasons)) if reasons else ""
    raise CorruptCheckpointError(f"no complete checkpoint under {str(run_dir / 'checkpoints')!r}{detail}")
