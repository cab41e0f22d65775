"""Checkpoints: a directory of safetensors files + JSON files + ``manifest.json`` (sha256, sizes).

The directory is written under a temporary name, every file fsynced, and renamed when complete, so a
checkpoint either exists whole or not at all. Never pickle.

Reading: :func:`open_checkpoint` resolves a checkpoint or run directory and checks the manifest and every
file's size (cheap); a file's sha256 is checked when it is read, once (:class:`Checkpoint`), so sampling
hashes the config and the inference weights, never the training state it does not load.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors.torch import load_file, save_file

from torch import nn

from vdmkit.errors import CheckpointMismatchError, CorruptCheckpointError, OutputError, UnsafeFormatError
from vdmkit.io.atomic import TMP_MARK, atomic_directory, atomic_path, current_umask, fsync_file

FORMAT = "vdmkit-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
# the files of a checkpoint, by role
WEIGHTS = "model.safetensors"  # the inference weights (EMA for a training run)
CONFIG = "config.json"  # what the weights are: the model's config (a checkpoint describes itself)
RUN = "run.json"  # the training run that wrote it (data, optimiser, steps); absent in older checkpoints
STATE_TENSORS = "training_state.safetensors"  # raw weights, optimizer, RNG states (resume only)
STATE_DOC = "training_state.json"  # step, optimizer settings (resume only)

# torch.nn.init's in-place fills: what module constructors draw their random initial weights with
INIT_FILLS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
              "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
INIT_SKIPPED = contextvars.ContextVar("vdmkit_init_skipped", default=False)


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """Build modules whose every weight is loaded right after (a strict load) without drawing random initial weights:
    torch.nn.init's fills do nothing inside, and :func:`init_skipped` tells wrappers of other libraries' models (the
    CLIP text encoder) to skip theirs. Non-persistent buffers are computed as usual. ModelScope's 1.4B UNet and its
    text tower spent ~20 of a ~30 s load drawing weights that the load then overwrote. The switch is process-wide while
    it lasts: a module built by another thread meanwhile would not be initialised either."""
    originals = {name: getattr(nn.init, name) for name in INIT_FILLS if hasattr(nn.init, name)}
    token = INIT_SKIPPED.set(True)
    try:
        for name in originals:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in originals.items():
            setattr(nn.init, name, fn)
        INIT_SKIPPED.reset(token)


def init_skipped() -> bool:
    return INIT_SKIPPED.get()


@torch.no_grad()
def empty_parameters(module: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Give every floating-point parameter of ``module`` fresh, unwritten storage of ``dtype`` on ``device`` (tied
    parameters stay tied): for a module built under :func:`skipped_init` whose weights a strict load writes next, so
    that its unwritten float32 values are never converted or moved (buffers are left to ``module.to``). ModelScope's
    1.4B UNet and text tower loaded in bf16: the cast of 7 GB of unwritten float32 took 2.9 of an 11 s load."""
    for param in {id(p): p for p in module.parameters()}.values():
        if param.is_floating_point() and (param.dtype != dtype or param.device != device):
            param.data = torch.empty(param.shape, dtype=dtype, device=device)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def user_cache() -> Path:
    """vdmkit's cache directory: ``$VDMKIT_CACHE``, else ``$XDG_CACHE_HOME/vdmkit``, else ``~/.cache/vdmkit``."""
    root = os.environ.get("VDMKIT_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vdmkit"


HASH_CACHE = "sha256.json"  # in user_cache(): {real path: [size, mtime_ns, inode, sha256]}


def cached_sha256(path: Path) -> str:
    """sha256 of a large file that vdmkit does not own (a diffusers folder's weights, several GB): computed once, then
    taken from the user cache while the file's size, modification time and inode are unchanged (as git's index does).
    An unreadable or unwritable cache only costs the hash."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    cache = user_cache() / HASH_CACHE
    try:
        known = json.loads(cache.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if isinstance(entry, list) and len(entry) == 4 and entry[:3] == stamp and isinstance(entry[3], str):
        return entry[3]
    digest = sha256_file(path)
    known[str(path)] = [*stamp, digest]
    try:
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps(known, indent=0))
    except OSError:
        pass
    return digest


def unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies safetensors can write: a tensor whose storage an earlier one already uses (tied weights, such as
    T5's shared embedding under its two names) is written as a copy of its own; a load puts the same values in."""
    seen, out = set(), {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        if value.numel() and value.untyped_storage().data_ptr() in seen:
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    return out


def save_checkpoint(directory: str | os.PathLike, tensors: dict[str, dict[str, torch.Tensor]],
                    documents: dict[str, object], headers: dict[str, dict] | None = None,
                    blobs: dict[str, bytes] | None = None, finish: Callable[[Path], None] | None = None) -> Path:
    """Write ``{name}.safetensors`` for each tensor dict and ``{name}.json`` for each document (a name may carry its
    suffix already: WEIGHTS, CONFIG, ...); ``headers[name]`` goes into that safetensors file's header as JSON (the
    "vdmkit" entry, as :func:`save_tensors` writes it); ``blobs``: more files, relative name -> bytes (a pretrained
    text encoder's config and tokenizer files). Every file is in the manifest. ``finish(folder)``, if given, runs on
    the complete temporary folder before it is renamed: files outside the manifest go there (a model's searched
    schedules, which `vdmkit search-schedule` extends later), so the folder never appears without them."""
    directory = Path(directory)
    if directory.exists():
        # (vdmkit's typed error, as save_pretrained, export and inflate raise: save_autoencoder raised a builtin
        # FileExistsError that a caller catching VdmkitError missed, sweep 26B)
        raise OutputError(f"checkpoint {str(directory)!r} already exists; refusing to overwrite it: give a new folder")
    with atomic_directory(directory) as tmp:
        files = {}
        for name, tdict in tensors.items():
            path = tmp / _with_suffix(name, ".safetensors")
            header = (headers or {}).get(name)
            save_file(unshared(tdict), str(path),
                      metadata={"vdmkit": json.dumps(header, sort_keys=True)} if header is not None else None)
            os.chmod(path, 0o666 & ~current_umask())  # safetensors creates 0600 files; others' tools need to read them
            files[path.name] = path
        for name, doc in documents.items():
            path = tmp / _with_suffix(name, ".json")
            path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
            files[path.name] = path
        for name, data in (blobs or {}).items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[Path(name).as_posix()] = path
        for path in files.values():
            fsync_file(path)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "files": {n: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for n, p in files.items()}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        fsync_file(tmp / MANIFEST)
        if finish is not None:
            finish(tmp)
    return directory


def _with_suffix(name: str, suffix: str) -> str:
    return name if name.endswith(suffix) else name + suffix


def read_manifest(directory: str | os.PathLike, *, check_hashes: bool = True) -> dict:
    """Verify a checkpoint directory against its manifest; raise CorruptCheckpointError saying what is wrong.

    Every file must exist with the recorded size; ``check_hashes`` also compares every file's sha256."""
    ckpt = Checkpoint(directory)
    if check_hashes:
        ckpt.verify(*ckpt.manifest["files"])
    return ckpt.manifest


def check_manifest(manifest, path: Path) -> None:
    """CorruptCheckpointError unless ``manifest`` has the shape a checkpoint's manifest has: an object whose
    ``files`` maps relative paths inside the checkpoint to ``{"bytes": int, "sha256": str}``."""
    def bad(what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{str(path)!r} is not a checkpoint manifest ({what}): damaged or hand-edited")

    if not isinstance(manifest, dict):
        raise bad(f"a JSON {type(manifest).__name__}, not an object")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise bad("no 'files' object")
    for name, info in files.items():
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
            raise bad(f"file name {name!r} is not a path inside the checkpoint")
        if not (isinstance(info, dict) and isinstance(info.get("bytes"), int) and not isinstance(info["bytes"], bool)
                and isinstance(info.get("sha256"), str)):
            raise bad(f"its entry for {name!r} lacks an integer 'bytes' and a 'sha256'")


class Checkpoint:
    """An opened checkpoint directory: manifest read, every file present at its recorded size.

    ``read_json`` / ``load_tensors`` / ``verify`` check a file's sha256 against the manifest the first time
    it is used, and never again: only what is read is hashed, once."""

    def __init__(self, directory: str | os.PathLike):
        directory = Path(directory)
        if not directory.is_dir():
            raise CorruptCheckpointError(f"checkpoint {str(directory)!r} is not a directory")
        mpath = directory / MANIFEST
        if not mpath.is_file():
            raise CorruptCheckpointError(f"checkpoint {str(directory)!r} has no {MANIFEST}: incomplete or not a "
                                         "vdmkit checkpoint")
        manifest = load_json(mpath)
        check_manifest(manifest, mpath)
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
        self.directory, self.manifest = directory, manifest
        self._verified: set[str] = set()

    @property
    def name(self) -> str:
        return self.directory.name

    def __contains__(self, name: str) -> bool:
        return name in self.manifest["files"]

    def sha256(self, name: str) -> str:
        """The manifest's sha256 of ``name`` (not recomputed)."""
        return self._entry(name)["sha256"]

    def _entry(self, name: str) -> dict:
        if name not in self:
            raise CorruptCheckpointError(f"checkpoint {str(self.directory)!r} has no {name}")
        return self.manifest["files"][name]

    def verify(self, *names: str) -> None:
        for name in names:
            if name in self._verified:
                continue
            expected = self._entry(name)["sha256"]
            if sha256_file(self.directory / name) != expected:
                raise CorruptCheckpointError(f"{str(self.directory / name)!r}: sha256 differs from the manifest "
                                             f"({expected[:12]}...)")
            self._verified.add(name)

    def read_json(self, name: str) -> dict:
        self.verify(name)
        return load_json(self.directory / name)

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        self.verify(name)
        return load_tensors(self.directory / name)

    def run_document(self) -> dict | None:
        """The training run that wrote this checkpoint (data, optimiser, steps) as a plain mapping: ``run.json``,
        or for checkpoints written before the model and the run were split, ``config.json``; None if unknown."""
        if RUN in self:
            return self.read_json(RUN)
        doc = self.read_json(CONFIG)
        return doc if "train" in doc else None


def open_checkpoint(path: str | os.PathLike, *, needs: tuple[str, ...] = (CONFIG,)) -> Checkpoint:
    """The checkpoint at ``path``: a checkpoint directory, a file inside one, or a run directory (its newest
    complete checkpoint whose files ``needs`` match their sha256; older ones are tried in turn, with reasons)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeFormatError(f"{str(path)!r}: pickle checkpoints are refused; vdmkit loads safetensors only")
        if path.suffix == ".safetensors" or path.name == MANIFEST:
            if not (path.parent / MANIFEST).is_file():
                if path.suffix == ".safetensors":
                    check_safetensors_file(path)  # empty, truncated, an HTML page or an LFS pointer: said as such
                raise CorruptCheckpointError(
                    f"{str(path)!r} is a loose weights file, not in a vdmkit checkpoint folder (no {MANIFEST} beside "
                    "it): pass the checkpoint or run folder; a diffusers folder's weights load through its folder")
            if path.name not in (MANIFEST, WEIGHTS):  # an adapter or a training state is not the model beside it
                raise CorruptCheckpointError(
                    f"{str(path)!r} is not its checkpoint's model weights ({WEIGHTS}; a LoRA adapter or a training "
                    f"state?): pass the folder {str(path.parent)!r}, and apply an adapter with --lora / load_lora")
            path = path.parent
        else:
            raise CorruptCheckpointError(f"{str(path)!r} is a file; pass a checkpoint directory (holding {MANIFEST})")
    elif not path.exists():
        raise CorruptCheckpointError(f"model path {str(path)!r} does not exist")
    elif not (path / MANIFEST).is_file():
        if (path / "checkpoints").is_dir():
            return latest_checkpoint(path, needs=needs)
        _no_manifest(path)
    ckpt = Checkpoint(path)
    ckpt.verify(*needs)
    return ckpt


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` names (see :func:`open_checkpoint`)."""
    return open_checkpoint(path).directory


def _no_manifest(path: Path):
    raise CorruptCheckpointError(f"{str(path)!r} holds no {MANIFEST}: not a complete vdmkit checkpoint")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor] | Iterable[dict[str, torch.Tensor]],
                source: str | os.PathLike) -> None:
    """Load every tensor or fail listing missing, unexpected and mis-shaped keys. ``state`` may come in parts (an
    iterable of dicts, e.g. one per component file): each is checked and copied in before the next is read, so only
    one part's tensors are held at once; keys no part gave are missing at the end."""
    own = module.state_dict()
    whole = isinstance(state, dict)
    seen: set[str] = set()
    for part in [state] if whole else state:
        missing = sorted(set(own) - set(part)) if whole else []
        unexpected = sorted(set(part) - set(own))
        shapes = sorted(f"{k}: checkpoint {tuple(part[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(part) if own[k].shape != part[k].shape)
        if missing or unexpected or shapes:
            mismatch(source, missing, unexpected, shapes)
        module.load_state_dict(part, strict=False)
        seen.update(part)
        del part
    missing = sorted(set(own) - seen)
    if missing:
        mismatch(source, missing, [], [])


def mismatch(source: str | os.PathLike, missing: list[str], unexpected: list[str], shapes: list[str]) -> None:
    def show(items):
        return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
    parts = [f"missing {show(missing)}" if missing else "", f"unexpected {show(unexpected)}" if unexpected else "",
             f"shape mismatch {show(shapes)}" if shapes else ""]
    raise CheckpointMismatchError(
        f"checkpoint {str(source)!r} does not fit this model: " + "; ".join(p for p in parts if p))


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
    if len(head) > 8:  # no header length and "{": "truncated (its header needs 7.8e18 bytes)" misled (sweep 27E)
        raise CorruptCheckpointError(f"{str(path)!r} is not a safetensors file (it starts with {head[:8]!r})")
    if header + 8 > size:
        raise CorruptCheckpointError(f"{str(path)!r}: {size} bytes but its header alone needs {header + 8}: truncated")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """One safetensors file written atomically (CPU, contiguous), ``metadata`` as its JSON header entry "vdmkit"
    and a ``<file>.json`` sidecar, as videos have."""
    from vdmkit.io.video import write_with_sidecar

    path = Path(path)

    def write(tmp: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"vdmkit": json.dumps(metadata, sort_keys=True)} if metadata is not None else None)

    if metadata is None:  # (an earlier file's sidecar is left as it was)
        with atomic_path(path) as tmp:
            write(tmp)
        return path
    # the file and its sidecar replace an earlier pair together, as a video's do: the file was renamed first, and a
    # stop between the two renames paired new latents (or an adapter) with the earlier file's sidecar (sweep 25B D2)
    return write_with_sidecar(path, write, metadata)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if not str(path).strip():
        raise CorruptCheckpointError("no weights file given (an empty path)")
    path = Path(path)
    if path.is_dir():
        raise CorruptCheckpointError(f"{str(path)!r} is a folder; give its .safetensors file")
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


def folder_config(folder: str | os.PathLike, what: str, name: str = "config.json") -> dict:
    """The JSON config of a pretrained component folder (diffusers / transformers layout)."""
    path = Path(folder) / name
    if not path.is_file():
        raise CorruptCheckpointError(f"{str(folder)!r} holds no {name}: not a {what} folder")
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise CorruptCheckpointError(f"{str(path)!r} must hold a JSON object")
    return doc


def folder_weights(folder: str | os.PathLike, filename: str) -> Path:
    """The safetensors weights ``filename`` of a pretrained component folder; a folder holding only pickles is
    refused, naming the conversion."""
    folder = Path(folder)
    path = folder / filename
    if path.is_file():
        return path
    pickled = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickled:
        raise UnsafeFormatError(f"{str(folder)!r} holds only pickle weights ({', '.join(pickled)}); vdmkit loads "
                                "safetensors only: convert them, e.g. save_pretrained(..., safe_serialization=True)")
    stem, suffix = filename.rsplit(".", 1) if "." in filename else (filename, "")
    others = sorted(p.name for p in folder.glob(f"{stem}*.{suffix}")) if folder.is_dir() and suffix else []
    if others:  # a variant (save_pretrained(variant="fp16")) or shards: said, with what to do (2026-12-06)
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")  # 29 shards: 29
        raise CorruptCheckpointError(f"{str(folder)!r} holds no {filename} but {shown}: vdmkit reads the "
                                     f"one file {filename}; for a variant (e.g. .fp16.) rename it to {filename} (its "
                                     "dtype loads as stored; --dtype sets the weights' type); merge shards into one "
                                     "file with diffusers' save_pretrained(..., max_shard_size=\"100GB\")")
    raise CorruptCheckpointError(f"{str(folder)!r} holds no {filename}")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first (complete or not)."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []


def latest_checkpoint(run_dir: str | os.PathLike, *, needs: tuple[str, ...] = (CONFIG,)) -> Checkpoint:
    """The newest complete checkpoint of a run whose files ``needs`` match their sha256; incomplete or corrupt
    ones are skipped, with a warning that names each and its reason."""
    ckpt, skipped = complete_checkpoint(run_dir, needs=needs)
    if skipped:
        warnings.warn(f"{str(run_dir)!r}: using {ckpt.name}; skipped the newer "
                      + "; ".join(f"{path.name} ({reason})" for path, reason in skipped), CheckpointSkippedWarning,
                      stacklevel=2)
    return ckpt


class CheckpointSkippedWarning(UserWarning):
    """A run's newest checkpoint was incomplete or corrupt, and an older one is used."""


def complete_checkpoint(run_dir: str | os.PathLike, *,
                        needs: tuple[str, ...] = (CONFIG,)) -> tuple[Checkpoint, list[tuple[Path, str]]]:
    """The newest complete checkpoint of a run (as :func:`latest_checkpoint`), and the newer ones skipped, each with
    the reason; CorruptCheckpointError naming every reason when none is complete."""
    run_dir = Path(run_dir)
    skipped = []
    for path in reversed(checkpoint_dirs(run_dir)):
        try:
            ckpt = Checkpoint(path)
            ckpt.verify(*needs)
            return ckpt, skipped
        except CorruptCheckpointError as e:
            skipped.append((path, str(e)))
    detail = ("; skipped: " + " | ".join(reason for _, reason in skipped)) if skipped else ""
    raise CorruptCheckpointError(f"no complete checkpoint under {str(run_dir / 'checkpoints')!r}{detail}")


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary directories that killed checkpoint writes left in a run (their process is gone);
    return them. A live writer's temporary directory is left alone."""
    removed = []
    root = Path(run_dir) / "checkpoints"
    for tmp in sorted(root.glob(f".step_*{TMP_MARK}*")) if root.is_dir() else []:
        pid = tmp.name.rsplit(TMP_MARK, 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
