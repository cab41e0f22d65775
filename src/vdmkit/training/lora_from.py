"""LoRA runs: `train.lora_from`, a run that continues the adapter in a file, vdmkit's own (`adapter.safetensors` of an
earlier run) or one another library wrote (diffusers, peft, kohya: read onto the `train.init_from` model's layers
by interop.lora_files), instead of adding new adapters: the file's layers, ranks and strength train on, and the run
writes vdmkit adapter files (`vdmkit convert --to diffusers-lora` writes them back in diffusers' layout); and the
frozen base a resumed LoRA run reads back from the checkpoint it started from (its checkpoints hold the adapters as
training state, not the whole model)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vdmkit.config import to_dict
from vdmkit.errors import ConfigError

ADAPTER = "adapter.safetensors"  # a LoRA run's checkpoints hold the EMA adapter under this name (training.train)


def continued_adapter(cfg, start, base):
    """(``cfg`` with ``train.lora`` the adapter's config and ``train.lora_from_sha256`` recorded, the AdapterFile
    whose layers and weights the run starts from) for a run with ``train.lora_from``; (cfg, None) without it. A
    resumed run (``start``: its checkpoint) builds its adapter's layers from its own checkpoint's adapter file, whose
    values the training state then replaces: the file named is not read again. Refused, each before any data or
    weights load: a file whose text-encoder part would not train (vdmkit trains the backbone's adapters), a
    consistency adapter (``vdmkit distill`` trains those), an adapter of another base than ``base`` (the init_from
    checkpoint), a sha256 pin the file no longer matches, a ``train.lora`` that says other ranks, alpha or targets
    than the file."""
    from vdmkit.backbones.lora import LoRAConfig, check_base, read_adapter
    from vdmkit.interop.lora_files import read_lora
    from vdmkit.io.checkpoint import sha256_file
    from vdmkit.pipelines.base import open_model, weights_identities

    tc = cfg.train
    if not tc.lora_from:
        return cfg, None
    if start is not None:
        recorded = (start.run_document() or {}).get("train") or {}
        named = recorded.get("lora_from") or ""
        if not named or named != tc.lora_from and Path(named).resolve() != Path(tc.lora_from).resolve():
            began = f"continued train.lora_from={named!r}" if named else "began with new adapters (no train.lora_from)"
            raise ConfigError(f"--resume: the run {began}; this config says train.lora_from={tc.lora_from!r}. A resume "
                              f"continues its own checkpoint's adapter: give the run's train.lora_from"
                              f"{'' if named else ' (none)'}, or start a new run with train.lora_from set to the file")
        adapter = read_adapter(Path(start.directory) / ADAPTER)
        sha = recorded.get("lora_from_sha256", "")
        if tc.lora_from_sha256 and sha and tc.lora_from_sha256 != sha:  # (a pin given was recorded as given: 28R)
            raise ConfigError(f"--resume: train.lora_from_sha256={tc.lora_from_sha256[:12]}..., but the run "
                              f"continued the adapter with sha256 {sha[:12]}...; resume with the run's record (or "
                              "without the pin)")
    else:
        path = Path(tc.lora_from)
        adapter = read_lora(path, cfg.pipeline())  # diffusers' layer names mapped onto this model's (meta device)
        what = f"train.lora_from={tc.lora_from!r}"
        if adapter.text is not None:
            raise ConfigError(f"{what} holds a part for the CLIP text encoder too ({len(adapter.text.tensors) // 2} "
                              "layers): vdmkit trains the video backbone's adapters only, so the adapter written would "
                              "lose that part; continue a file without it (diffusers: save_lora_weights with "
                              "unet_lora_layers only)")
        if isinstance(adapter.header.get("sampling"), dict):
            raise ConfigError(f"{what} is a consistency adapter (it records its sampling: "
                              f"{adapter.header['sampling'].get('sampler')}, guidance 1), which `vdmkit distill` "
                              "trains (distill.lora); train.lora_from continues adapters trained on the diffusion loss")
        check_base(adapter, weights_identities(open_model(str(base.directory))[0]), force=False,
                   override="continue it on the base it was trained on (train.init_from)")
        sha = sha256_file(adapter.path)
        if tc.lora_from_sha256 and tc.lora_from_sha256 != sha:
            raise ConfigError(f"train.lora_from_sha256={tc.lora_from_sha256[:12]}... pins the adapter this run "
                              f"continues, but {what} now holds {str(adapter.path)!r} (sha256 {sha[:12]}...): name "
                              "the file that holds it, or clear train.lora_from_sha256= to continue what it holds now")
    config = adapter.config  # its alpha as a number: a resumed run reads it back from its file's header so
    config = dataclasses.replace(config, alpha=float(config.scale * config.rank))
    if tc.lora is not None:  # the file decides the adapter: a train.lora beside it sets its dropout; any other field
        # it sets (away from its default: train.lora.dropout=0.1 alone fills the rest with defaults) must be the file's
        default = LoRAConfig()
        differ = [f"{k}: {getattr(tc.lora, k)!r} (the file's: {getattr(config, k)!r})"
                  for k in ("rank", "targets", "exclude")
                  if getattr(tc.lora, k) != getattr(default, k) and getattr(tc.lora, k) != getattr(config, k)]
        if tc.lora.alpha is not None and float(tc.lora.alpha) != config.alpha:
            differ.append(f"alpha: {tc.lora.alpha!r} (the file's: {config.alpha!r})")
        if differ:
            raise ConfigError(f"train.lora_from continues the adapter in its file, at its layers, ranks and strength; "
                              f"train.lora says otherwise ({'; '.join(differ)}): drop those keys (train.lora may set "
                              f"the dropout; the file's: {to_dict(dataclasses.replace(config, dropout=0.0))})")
        config = dataclasses.replace(config, dropout=tc.lora.dropout)
    adapter = dataclasses.replace(adapter, config=config)
    train = dataclasses.replace(tc, lora=config, lora_from_sha256=sha)
    return dataclasses.replace(cfg, train=train), adapter


def lora_record(value):
    """A ``train.lora`` / ``distill.lora`` as a run document recorded it, with the fields added since at their
    defaults (``exclude``), for a resume's comparison; None stays None, a record that is no LoRAConfig as it is."""
    if not isinstance(value, dict):
        return value
    from vdmkit.backbones.lora import lora_config

    try:
        return to_dict(lora_config(value))
    except ConfigError:
        return value


ADAPTERS_ONLY = "adapters"  # a LoRA run's training state: its adapters (the base: train.init_source)


def frozen_base(pipe, tc) -> dict:
    """The frozen weights of a resumed LoRA run's model: those of the checkpoint ``train.init_from`` loaded when the
    run began (``train.init_source``, its weights' sha256 ``train.init_sha256`` checked), a conditioned model's new
    inputs at their (zero) initial values."""
    from vdmkit.errors import VdmkitError
    from vdmkit.io.checkpoint import CONFIG, WEIGHTS, open_checkpoint

    source, sha = tc.init_source, tc.init_sha256
    why = (f"--resume: this LoRA run's checkpoints hold its adapters only; the frozen base is the checkpoint it "
           f"started from, {source!r}")
    try:
        base = open_checkpoint(source, needs=(CONFIG, WEIGHTS))
    except VdmkitError as err:
        raise ConfigError(f"{why}, which cannot be read now ({err}); put it back, or start a new run with "
                          "train.lora_from set to the last checkpoint's adapter.safetensors") from None
    if base.sha256(WEIGHTS) != sha:
        raise ConfigError(f"{why}, whose weights changed since (sha256 {base.sha256(WEIGHTS)[:12]}..., the run "
                          f"recorded {sha[:12]}...); put the original back, or start a new run with train.lora_from "
                          "set to the last checkpoint's adapter.safetensors")
    weights, current = base.load_tensors(WEIGHTS), pipe.state_dict()
    return {**{k: current[k] for k in current if ".condition_in." in f".{k}" and k not in weights}, **weights}
