"""Helpers the command modules share (cli.py, tasks_cli.py): the model argument, the seed type, the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def model_or_default(model: str | None, command: str):
    """--model, or the bundled default model when none is given (its pinned sha256 checked)."""
    from vdmkit.pipelines import default_model

    model = model or default_model()
    if model is None:
        raise ValueError(f"{command} needs --model PATH (no default model is installed)")
    return model


def seed(text: str):
    if text.lower() in ("none", "random"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer or 'random', got {text!r}") from None


def report(result, out: Path, strip: bool, info: dict | None = None) -> None:
    """Warnings to stderr, the written files and (unless ``info`` is None) the key metadata and ``info`` to
    stdout."""
    from vdmkit.io.video import write_video

    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    written = [result.path]
    if strip and result.frames is not None and out.suffix != ".png":
        written.append(write_video(out.with_suffix(".png"), result.frames))
    for path in written:
        print(f"saved {path}")
    if info is not None:
        keys = ("prompt", "seed", "sampler", "steps", "guidance", "strength", "reconstruction")
        print(json.dumps({**{k: result.metadata[k] for k in keys if k in result.metadata}, **info}))
