"""Latent caches: encode a dataset once with the run's autoencoder, train on the stored latents.

A cache is a directory of safetensors shards (``latents``: (n, C, T, h, w) float32, scaled as the
backbone sees them) and a ``manifest.json`` naming, for each shard, its sample range, sha256 and size,
plus everything that changes the latents: the autoencoder's weights hash and config, and the data
config. Training refuses a cache whose manifest does not match its run config (a stale cache). Shards
are written under temporary names and renamed when complete; the manifest is written last, so an
interrupted cache is never mistaken for a complete one, and rerunning the command resumes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from vdmkit.config import to_dict
from vdmkit.device import resolve_device
from vdmkit.errors import ConfigError, CorruptCheckpointError, OutputError
from vdmkit.io.atomic import TEMPORARY_NAME, atomic_path, check_writable_folder, write_text_atomic
from vdmkit.io.checkpoint import sha256_file
from vdmkit.training.config import RunConfig

FORMAT = "vdmkit-latent-cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "in_progress.json"  # what an unfinished cache's shards were written with (a rerun resumes only those)
SHARD_NAME = re.compile(r"shard_\d{5,}\.safetensors")


def _identity(cfg: RunConfig) -> dict:
    """What the cached latents depend on; a cache is valid for a run only when this matches. Not data.condition: the
    training loop draws the known frames (or low-res input) from the latents, which it does not change."""
    return {"autoencoder_sha256": cfg.latent.sha256, "autoencoder_kind": cfg.latent.kind,
            "autoencoder_model": cfg.latent.model, "data": _without_condition(to_dict(cfg.data))}


def _without_condition(data):
    return {k: v for k, v in data.items() if k != "condition"} if isinstance(data, dict) else data


def _stale_keys(manifest: dict, want: dict) -> list[str]:
    """The keys of ``want`` whose value the manifest does not hold; within a mapping (data, the autoencoder's
    config) the keys in it that differ (data.seed)."""
    stale = []
    for key, ours in want.items():
        theirs = _without_condition(manifest.get(key)) if key == "data" else manifest.get(key)
        if isinstance(theirs, dict) and isinstance(ours, dict):
            stale += [f"{key}.{k}" for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
        elif theirs != ours:
            stale.append(key)
    return stale


def _is_cache_file(path: Path) -> bool:
    """A file a cache writes: its shards, its progress record, its manifest, or an interrupted write of one."""
    name = path.name
    if TEMPORARY_NAME.fullmatch(name):  # atomic_path's temporary: .{stem}.{random}-{pid}.tmp{suffix}
        name = name[1:].split(".", 1)[0] + name[name.rindex(".tmp") + 4:]
    return path.is_file() and (name in (MANIFEST, PROGRESS) or SHARD_NAME.fullmatch(name) is not None)


def _check_cache_folder(out: Path) -> None:
    """OutputError unless ``out`` is new, empty, or an unfinished cache: a complete cache is never rewritten, and a
    folder holding anything else (a training run, another tool's manifest.json) is never written into."""
    if not out.is_dir():
        return
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            is_cache = json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
            is_cache = False
        if is_cache:
            raise OutputError(f"{str(out)!r} already holds a complete latent cache; choose another directory")
    foreign = sorted(p.name for p in out.iterdir() if not _is_cache_file(p) or p == manifest)
    if foreign:
        shown = ", ".join(repr(n) for n in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{str(out)!r} holds files that are not a latent cache's ({shown}): a cache is written only "
                          "into a new or empty folder (or an interrupted cache's); choose another directory")


def check_encode_memory(cfg: RunConfig, batch: int, shard: int, device) -> None:
    """OutOfMemoryError, from the configs alone (before the autoencoder loads or the cache folder is made), when
    encoding ``batch`` clips of ``cfg.data`` on ``device`` would not fit: the autoencoder's float32 weights, the clips,
    the encode (a meta-device run of it), and the ``shard`` latents a shard gathers, listed then joined, on the CPU
    (counted with the rest there, checked apart on another device)."""
    from vdmkit.autoencoders.load import build_autoencoder
    from vdmkit.memory import MemoryEstimate, check_fits, encode_bytes

    data = cfg.data
    with torch.device("meta"):
        ae = build_autoencoder(cfg.latent.kind, cfg.latent.model)
    clips, encode = encode_bytes(ae, batch, data.frames, data.size, data.size)
    latents = 2 * shard * math.prod(ae.latent_shape(data.frames, data.size, data.size)) * 4
    parts = {"weights": 4 * sum(p.numel() for p in ae.parameters()), "clips": clips, "encode": encode}
    what = f"encoding {batch} x {data.frames} frames at {data.size}x{data.size}"
    fewer = (f"fewer clips at once (--batch-size {batch}; the latents change by float rounding only), " if batch > 1
             else "")
    advice = (f"{fewer}shorter or smaller clips (data.frames {data.frames}, data.size {data.size}; a run trains on the "
              "cache at the same size), or --device naming one with more free memory")
    if device.type == "cpu":
        check_fits(MemoryEstimate({**parts, "shard latents": latents}), device, what, advice)
        return
    check_fits(MemoryEstimate(parts), device, what, advice)
    check_fits(MemoryEstimate({"clips": clips, "shard latents": latents}), "cpu",
               f"{what}: a shard of {shard} latents gathered on the CPU", advice)


def write_latent_cache(cfg: RunConfig, samples: int, out: str | os.PathLike | None = None, *,
                       shard_size: int = 256, batch_size: int = 16, progress: bool = True) -> Path:
    """Encode dataset samples ``0 .. samples-1`` of ``cfg.data`` into a cache at ``out`` (default: latent.cache)."""
    from vdmkit.autoencoders.load import load_autoencoder
    from vdmkit.data.shapes import ShapesConfig, ShapesDataset

    if not isinstance(cfg.data, ShapesConfig):
        raise ConfigError("cache-latents stores one latent shape per cache: it takes the shapes data; real-video "
                          "folders (bucketed shapes) are encoded on the fly during training")
    if not cfg.latent.enabled:
        raise ConfigError("cache-latents needs latent.autoencoder: a pixel-space run has nothing to encode")
    out = Path(out or cfg.latent.cache or "")
    if not str(out) or str(out) == ".":
        raise ConfigError("give the cache directory: --out DIR or latent.cache=DIR")
    counts = {"samples": samples, "shard_size": shard_size, "batch_size": batch_size}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the cache directory {str(out)!r} is a file; give a new or existing folder (--out DIR)")
    check_writable_folder(out, f"the cache directory {str(out)!r}")  # below a file, or unwritable: before loading
    _check_cache_folder(out)
    device = resolve_device(cfg.train.device)
    check_encode_memory(cfg, min(batch_size, samples), min(shard_size, samples), device)
    vae = load_autoencoder(cfg.latent.autoencoder).to(device)
    if vae.sha256 != cfg.latent.sha256:
        raise ConfigError(f"the autoencoder at {cfg.latent.autoencoder!r} changed since the config was read")
    dataset = ShapesDataset(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    # a rerun resumes an interrupted cache: only one written for this very autoencoder, data and layout
    started = {**_identity(cfg), "samples": samples, "shard_size": shard_size}
    progress_file = out / PROGRESS
    if progress_file.is_file() and not any(out.glob("shard_*.safetensors")):
        progress_file.unlink()  # interrupted before its first shard: nothing to resume, any settings may start anew
    if progress_file.is_file():
        try:
            before = json.loads(progress_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            before = None
        started = json.loads(json.dumps(started))  # as stored: lists for tuples
        if before != started:
            differ = sorted(k for k in started if not isinstance(before, dict) or before.get(k) != started[k])
            raise ConfigError(f"{str(out)!r} holds the shards of an interrupted cache written with another "
                              f"{', '.join(differ) or 'configuration'}; finish it with the same config and --samples, "
                              "or delete the folder (or choose another)")
    elif any(out.glob("shard_*.safetensors")):
        raise ConfigError(f"{str(out)!r} holds latent shards of unknown origin (no {PROGRESS}); delete them or choose "
                          "another directory")
    else:
        write_text_atomic(progress_file, json.dumps(started, indent=2, sort_keys=True))
    shards = []
    shape = (None, *vae.latent_shape(cfg.data.frames, cfg.data.size, cfg.data.size))
    bar = tqdm(total=samples, disable=not progress, desc="cache-latents", dynamic_ncols=True)
    for start in range(0, samples, shard_size):
        count = min(shard_size, samples - start)
        path = out / f"shard_{start // shard_size:05d}.safetensors"
        # a rerun resumes: the complete shards are kept, each read back first, since the manifest will vouch for it
        damage = _shard_damage(path, count, shape) if path.exists() else None
        if damage:
            print(f"cache-latents: {str(path)!r} of the interrupted cache is damaged ({damage}); encoding it again",
                  file=sys.stderr)
        if not path.exists() or damage:
            latents, captions = [], []
            for b in range(start, start + count, batch_size):
                n = min(batch_size, start + count - b)
                videos, caps = dataset.batch(b, n)
                with torch.no_grad():
                    latents.append(vae.encode_latents(videos.to(device)).cpu())
                captions += caps
                bar.update(n)
            with atomic_path(path) as tmp:
                save_file({"latents": torch.cat(latents).float().contiguous()}, str(tmp),
                          metadata={"captions": json.dumps(captions)})
        else:
            bar.update(count)
        shards.append({"file": path.name, "start": start, "count": count, "sha256": sha256_file(path),
                       "bytes": path.stat().st_size})
    bar.close()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "samples": samples, "shards": shards,
                **_identity(cfg)}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    progress_file.unlink(missing_ok=True)
    return out


def _read_shard(path: Path) -> tuple[torch.Tensor, list]:
    """A shard's latents and their captions, in one read (safetensors' errors, a missing key or metadata, bad JSON
    raise as they are: the callers say what they mean)."""
    with safe_open(str(path), "pt") as f:
        return f.get_tensor("latents"), json.loads(f.metadata()["captions"])


def _shard_damage(path: Path, count: int, shape: tuple) -> str | None:
    """Why the shard at ``path`` is not ``count`` latents of ``shape`` (its first entry None) with their captions (it
    is truncated, not safetensors, or of another shape), else None."""
    try:
        latents, captions = _read_shard(path)
    except Exception as err:  # SafetensorError, a missing key or metadata, bad JSON: each a shard not to keep
        return f"{type(err).__name__}: {err}"
    want = (count, *shape[1:])
    if tuple(latents.shape) != want or len(captions) != count:
        return f"it holds latents of shape {tuple(latents.shape)} and {len(captions)} captions, not {want}"
    return None


class LatentCache:
    """The stored latents as a dataset: ``batch(start, size)`` -> (latents, captions), indices wrap around."""

    def __init__(self, directory: str | os.PathLike, cfg: RunConfig, *, check_hashes: bool = True):
        from vdmkit.data.shapes import ShapesConfig

        if not isinstance(cfg.data, ShapesConfig):  # said before the cache is read: it was called stale
            raise ConfigError(f"latent.cache={str(directory)!r}: a latent cache holds the shapes data, and this run "
                              f"trains on real clips (data.kind={getattr(cfg.data, 'kind', '?')}), which are encoded "
                              "on the fly with latent.autoencoder: drop latent.cache")
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise ConfigError(f"latent cache {str(self.directory)!r} holds no manifest.json (missing or "
                              "unfinished); write it with `vdmkit cache-latents`")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptCheckpointError(f"{str(path)!r} is not valid JSON: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CorruptCheckpointError(f"{str(path)!r} is not a vdmkit latent cache manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CorruptCheckpointError(f"{str(path)!r} has format_version {manifest.get('format_version')!r}; this "
                                         f"vdmkit reads {FORMAT_VERSION}: rewrite the cache with `vdmkit "
                                         "cache-latents`")
        if not isinstance(manifest.get("shards"), list) or not isinstance(manifest.get("samples"), int):
            raise CorruptCheckpointError(f"{str(path)!r} lacks its list of shards or its sample count: an edited or "
                                         "broken manifest; rewrite the cache with `vdmkit cache-latents`")
        stale = _stale_keys(manifest, json.loads(json.dumps(_identity(cfg))))  # lists for tuples, as stored
        if stale:
            raise ConfigError(f"latent cache {str(self.directory)!r} is stale: its {', '.join(stale)} differ(s) from "
                              "this run's; rewrite it with `vdmkit cache-latents`")
        latents, captions = [], []
        for shard in manifest["shards"]:
            if not isinstance(shard, dict) or not isinstance(shard.get("file"), str) or "sha256" not in shard:
                raise CorruptCheckpointError(f"{str(path)!r}: a shard entry without its file and sha256 ({shard!r})")
            file = self.directory / shard["file"]
            if not file.is_file():
                raise CorruptCheckpointError(f"latent cache shard {str(file)!r} is missing")
            if check_hashes and sha256_file(file) != shard["sha256"]:
                raise CorruptCheckpointError(f"latent cache shard {str(file)!r} does not match its sha256")
            try:
                shard_latents, shard_captions = _read_shard(file)
            except Exception as err:  # a shard that matches its sha256 yet cannot be read: written damaged
                raise CorruptCheckpointError(f"latent cache shard {str(file)!r} cannot be read ({type(err).__name__}: "
                                             f"{err}); delete the cache folder and write it again with `vdmkit "
                                             "cache-latents`") from err
            latents.append(shard_latents)
            captions += shard_captions
        self.latents = torch.cat(latents)
        self.captions = captions
        self.shard_hashes = [shard["sha256"] for shard in manifest["shards"]]
        if len(self.captions) != len(self.latents) or len(self.latents) != manifest["samples"]:
            raise CorruptCheckpointError(f"latent cache {str(self.directory)!r}: shards hold {len(self.latents)} "
                                         f"latents and {len(self.captions)} captions, manifest says "
                                         f"{manifest['samples']}")
        if not torch.isfinite(self.latents).all():
            raise CorruptCheckpointError(f"latent cache {str(self.directory)!r} holds non-finite latents")

    def __len__(self) -> int:
        return len(self.latents)

    def identity(self) -> dict:
        """What a run's data position is counted in (as a folder dataset's): the samples, and a sha256 of the shards'
        recorded sha256s in order. A run's checkpoints record it; a resume on another or rewritten cache says so."""
        return {"samples": len(self), "sha256": hashlib.sha256("\n".join(self.shard_hashes).encode()).hexdigest()}

    def batch(self, start: int, size: int) -> tuple[torch.Tensor, list[str]]:
        """Samples ``start .. start + size - 1``, wrapping round past the last one (train warns when a run does)."""
        idx = [(start + i) % len(self) for i in range(size)]
        return self.latents[idx], [self.captions[i] for i in idx]
