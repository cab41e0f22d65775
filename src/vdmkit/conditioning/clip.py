"""A CLIP text encoder from a local transformers folder (SD, ModelScope T2V: the pipeline's ``text_encoder/`` and
``tokenizer/``), as the ``clip`` entry of vdmkit.registry.TEXT_ENCODERS. Nothing is ever downloaded.

Prompts are padded to ``max_length`` (77) tokens and the backbone attends to every position, padding included, as
Stable Diffusion and ModelScope were trained; ``tokens`` is CLIP's last hidden state, ``pooled`` its pooled output
(the end-of-text token after the final norm). Longer prompts are cut with a VocabularyWarning giving the count.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, CorruptCheckpointError, VocabularyWarning
from vdmkit.io.checkpoint import folder_config, init_skipped

TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))  # either set loads


@dataclass
class ClipTextConfig:
    folder: str = ""  # transformers CLIPTextModel folder: config.json (+ model.safetensors, loaded by the pipeline)
    tokenizer: str = ""  # folder with tokenizer.json, or vocab.json and merges.txt ("" = ``folder``)
    dim: int = 1024  # hidden size: the width of the tokens the backbone cross-attends to
    max_length: int = 77

    def __post_init__(self):
        if not self.folder:
            raise ConfigError("text.folder must name a local transformers CLIP text-encoder folder (config.json); "
                              "vdmkit never downloads weights")
        if self.max_length < 2:
            raise ConfigError(f"text.max_length must be >= 2, got {self.max_length}")


def read_clip_config(folder: str | os.PathLike) -> dict:
    raw = folder_config(folder, "transformers CLIP text encoder")
    name = (raw.get("architectures") or ["CLIPTextModel"])[0]
    if name not in ("CLIPTextModel", "CLIPTextModelWithProjection") or raw.get("model_type", "clip_text_model") not in (
            "clip_text_model", "clip"):
        raise ConfigError(f"{str(folder)!r} describes a {name} ({raw.get('model_type')}); vdmkit loads CLIPTextModel "
                          "text encoders")
    return raw


def hf_init_skipped() -> contextlib.AbstractContextManager:
    """transformers' own switch that skips a model's weight initialisation (its location moved in transformers 5);
    a no-op context where neither location has it."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


class ClipTextEncoder(nn.Module):
    """``encoder(prompts) -> TextCondition``: tokens (B, max_length, dim), mask all True, pooled (B, dim). The
    network is built from the folder's config.json; its weights are a pipeline checkpoint's ``text_encoder.model.*``
    (the folder's model.safetensors for diffusers folders)."""

    def __init__(self, cfg: ClipTextConfig):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        raw = read_clip_config(cfg.folder)
        self.cfg = cfg
        config = CLIPTextConfig(**{k: v for k, v in raw.items() if not k.startswith("_")})
        if config.hidden_size != cfg.dim:
            raise ConfigError(f"text.dim={cfg.dim} but the CLIP folder's hidden_size is {config.hidden_size}")
        with hf_init_skipped() if init_skipped() else contextlib.nullcontext():  # the weights are loaded next
            self.model = CLIPTextModel(config).eval().requires_grad_(False)  # frozen, as in SD and ModelScope
        tok = Path(cfg.tokenizer or cfg.folder)
        if not any(all((tok / f).is_file() for f in files) for files in TOKENIZER_FILES):
            raise CorruptCheckpointError(f"tokenizer folder {str(tok)!r} holds neither tokenizer.json nor vocab.json "
                                         "with merges.txt")
        self.tokenizer = CLIPTokenizer.from_pretrained(str(tok), local_files_only=True)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def unknown_words(self, prompt: str) -> list[str]:
        return []  # byte-level BPE: every string has tokens

    def forward(self, prompts: list[str]) -> TextCondition:
        for p in prompts:
            if not isinstance(p, str):
                raise TypeError(f"prompt must be a string, got {type(p).__name__}")
            if "\x00" in p:
                raise ValueError(f"prompt contains a NUL character: {p!r}")
        full = self.tokenizer(list(prompts))["input_ids"]
        over = {i: len(ids) - self.cfg.max_length for i, ids in enumerate(full) if len(ids) > self.cfg.max_length}
        if over:
            warnings.warn(f"{len(over)} prompt(s) longer than {self.cfg.max_length} CLIP tokens were cut; tokens "
                          f"dropped per prompt index: {over}", VocabularyWarning, stacklevel=2)
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.cfg.max_length, truncation=True,
                             return_tensors="pt").input_ids.to(self.model.device)
        out = self.model(ids)
        mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)  # SD / ModelScope attend to the padding
        return TextCondition(tokens=out.last_hidden_state, mask=mask, pooled=out.pooler_output)
