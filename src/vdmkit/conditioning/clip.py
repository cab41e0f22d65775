"""A CLIP text encoder from a local transformers folder (SD, ModelScope T2V: the pipeline's ``text_encoder/`` and
``tokenizer/``), as the ``clip`` entry of vdmkit.registry.TEXT_ENCODERS. Nothing is ever downloaded.

Prompts are padded to ``max_length`` (77) tokens and the backbone attends to every position, padding included, as
Stable Diffusion and ModelScope were trained; ``tokens`` is CLIP's last hidden state, ``pooled`` its pooled output
(the end-of-text token after the final norm). Longer prompts are cut with a VocabularyWarning giving the count; a
prompt spelling <|endoftext|> is encoded as that token (as diffusers does) with one naming it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vdmkit.conditioning.pretrained import (FolderWeights, check_prompt_strings, check_tokenizer, hf_config,
                                           hf_init_skipped, load_tokenizer, prompt_names, snapshot)
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, CorruptCheckpointError
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
        for name in ("dim", "max_length"):  # 77.0 from a hand-edited file reached the tokenizer: a raw TypeError
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "max_length" else 1):
                raise ConfigError(f"text.{name} must be a whole number >= {2 if name == 'max_length' else 1}, "
                                  f"got {value!r}")


def read_clip_config(folder: str | os.PathLike) -> dict:
    raw = folder_config(folder, "transformers CLIP text encoder")
    name = (raw.get("architectures") or ["CLIPTextModel"])[0]
    if name not in ("CLIPTextModel", "CLIPTextModelWithProjection") or raw.get("model_type", "clip_text_model") not in (
            "clip_text_model", "clip"):
        raise ConfigError(f"{str(folder)!r} describes a {name} ({raw.get('model_type')}); vdmkit loads CLIPTextModel "
                          "text encoders")
    return raw


class ClipTextEncoder(FolderWeights, nn.Module):
    """``encoder(prompts) -> TextCondition``: tokens (B, max_length, dim), mask all True, pooled (B, dim). The
    network is built from the folder's config.json; its weights are a pipeline checkpoint's ``text_encoder.model.*``
    (the folder's model.safetensors for diffusers folders, and for a fresh training run: ``load_folder_weights``)."""

    LEVELS = ("text_model.",)  # the module level transformers 4 had and transformers 5 dropped
    # a CLIPTextModelWithProjection's projection (SDXL's second encoder): the last hidden state does not use it
    DROPPED = ("position_ids", "text_projection.weight")
    SPECIAL_NOTE = " (the pooled output is read at the first <|endoftext|>: the words after it leave it unchanged)"

    def __init__(self, cfg: ClipTextConfig):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        raw = read_clip_config(cfg.folder)
        self.cfg = cfg
        config = hf_config(CLIPTextConfig, raw, cfg.folder, "CLIP text encoder")
        if config.hidden_size != cfg.dim:
            raise ConfigError(f"text.dim={cfg.dim} but the CLIP folder's hidden_size is {config.hidden_size}")
        if cfg.max_length > config.max_position_embeddings:
            raise ConfigError(f"text.max_length={cfg.max_length} exceeds the CLIP folder's max_position_embeddings "
                              f"({config.max_position_embeddings}): CLIP has a position for each of its tokens")
        with hf_init_skipped() if init_skipped() else contextlib.nullcontext():  # the weights are loaded next
            self.model = CLIPTextModel(config).eval().requires_grad_(False)  # frozen, as in SD and ModelScope
        tok = Path(cfg.tokenizer or cfg.folder)
        if not any(all((tok / f).is_file() for f in files) for files in TOKENIZER_FILES):
            raise CorruptCheckpointError(f"tokenizer folder {str(tok)!r} holds neither tokenizer.json nor vocab.json "
                                         "with merges.txt")
        self.tokenizer = load_tokenizer(CLIPTokenizer, tok, "CLIP", ": are these CLIP's tokenizer files?")
        check_tokenizer(self.tokenizer, tok, "CLIP", "BPE", config.vocab_size,
                        '"<|endoftext|>" for SD 1.x, "!" for SD 2 and ModelScope')
        self.carried = snapshot(cfg.folder, tok)  # what checkpoints carry besides the weights

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def unknown_words(self, prompt: str) -> list[str]:
        return []  # byte-level BPE: every string has tokens

    def forward(self, prompts: list[str], names: list[str] | None = None) -> TextCondition:
        """``names``: what warnings call each prompt ("prompt", "negative prompt"; default "prompt")."""
        prompts = check_prompt_strings(prompts)
        self.warn_vocabulary(prompts, prompt_names(prompts, names), "CLIP")
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.cfg.max_length, truncation=True,
                             return_tensors="pt").input_ids.to(self.model.device)
        with self.outside_autocast():
            out = self.model(ids)
        mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)  # SD / ModelScope attend to the padding
        return TextCondition(tokens=out.last_hidden_state, mask=mask, pooled=out.pooler_output)
