"""A T5 text encoder from a local transformers folder, frozen, as the ``t5`` entry of
vdmkit.registry.TEXT_ENCODERS: the text tower of Imagen, PixArt-alpha, Latte, Open-Sora and CogVideoX.

The folder is a ``T5EncoderModel`` (or a whole ``T5ForConditionalGeneration``, whose decoder is left out):
``config.json`` and ``model.safetensors`` (or shards with ``model.safetensors.index.json``); the tokenizer
(``tokenizer.json``, or SentencePiece's ``spiece.model`` with the ``sentencepiece`` package) in ``text.tokenizer``
or the same folder. Prompts are padded to ``max_length`` tokens (120, PixArt-alpha's and Latte's; CogVideoX uses
226) so shapes stay fixed for compiled and captured sampling, and the mask hides the padding from cross-attention,
as those models do. ``tokens`` is the encoder's last hidden state; T5 has no pooled output, so ``pooled`` (which the
backbones add to the timestep embedding where ``pooled_text`` is on) is the mean of the real tokens' states.
Words the vocabulary cannot spell (encoded as <unk>) are listed in a VocabularyWarning, special tokens a prompt spells
(</s>, <pad>) named in one, and longer prompts are cut with one giving the count; nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vdmkit.conditioning.pretrained import (FolderWeights, check_prompt_strings, check_tokenizer, hf_config,
                                           hf_init_skipped, load_tokenizer, prompt_names, snapshot)
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.io.checkpoint import folder_config, init_skipped

ARCHITECTURES = ("T5EncoderModel", "T5ForConditionalGeneration", "T5Model")
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")  # either loads (spiece.model needs sentencepiece)
MAX_LENGTH = 1024  # tokens per prompt, at most


@dataclass
class T5TextConfig:
    folder: str = ""  # transformers T5 folder: config.json (+ model.safetensors, or shards with their index)
    tokenizer: str = ""  # folder with tokenizer.json or spiece.model ("" = ``folder``)
    dim: int = 4096  # d_model: T5-XXL's (4096) as the video models use it; T5-base 768, T5-large 1024
    max_length: int = 120

    def __post_init__(self):
        if not self.folder:
            raise ConfigError("text.folder must name a local transformers T5 encoder folder (config.json); vdmkit "
                              "never downloads weights")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ConfigError(f"text.dim must be a whole number >= 1, got {self.dim!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or not (
                2 <= self.max_length <= MAX_LENGTH):
            raise ConfigError(f"text.max_length must be a whole number in [2, {MAX_LENGTH}] (T5 video models use 120 "
                              f"to 512 tokens; the encoder's attention grows with its square), got {self.max_length!r}")


def read_t5_config(folder) -> dict:
    raw = folder_config(folder, "transformers T5 encoder")
    name = (raw.get("architectures") or ["T5EncoderModel"])[0]
    if name not in ARCHITECTURES or raw.get("model_type", "t5") != "t5":
        raise ConfigError(f"{str(folder)!r} describes a {name} ({raw.get('model_type')}); the t5 text encoder loads "
                          f"{', '.join(ARCHITECTURES)} folders (model_type t5)")
    return raw


class T5TextEncoder(FolderWeights, nn.Module):
    """``encoder(prompts) -> TextCondition``: tokens (B, max_length, dim), mask True on the real tokens (the
    end-of-sequence token included), pooled (B, dim) the mean over them. Built from the folder's config.json; its
    weights are a checkpoint's ``text_encoder.model.*`` (a fresh training run: ``load_folder_weights``)."""

    TIED = (("shared.weight", "encoder.embed_tokens.weight"),)  # one tensor; files may hold either name

    def __init__(self, cfg: T5TextConfig):
        super().__init__()
        from transformers import T5Config, T5EncoderModel, T5TokenizerFast

        raw = read_t5_config(cfg.folder)
        self.cfg = cfg
        config = hf_config(T5Config, raw, cfg.folder, "T5 encoder")
        if config.d_model != cfg.dim:
            raise ConfigError(f"text.dim={cfg.dim} but the T5 folder's d_model is {config.d_model}")
        with hf_init_skipped() if init_skipped() else contextlib.nullcontext():  # the weights are loaded next
            self.model = T5EncoderModel(config).eval().requires_grad_(False)  # frozen, as in every T5 video model
        tok = Path(cfg.tokenizer or cfg.folder)
        if not any((tok / f).is_file() for f in TOKENIZER_FILES):
            raise CorruptCheckpointError(f"tokenizer folder {str(tok)!r} holds neither tokenizer.json nor spiece.model")
        hint = ("; a folder with only spiece.model needs `pip install sentencepiece protobuf`"
                if not (tok / "tokenizer.json").is_file() else " (is it T5's tokenizer.json?)")
        self.tokenizer = load_tokenizer(T5TokenizerFast, tok, "T5", hint)
        check_tokenizer(self.tokenizer, tok, "T5", "Unigram", config.vocab_size, '"<pad>" for T5')
        self.carried = snapshot(cfg.folder, tok)  # what checkpoints carry besides the weights

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def _apply(self, fn, recurse=True):
        """Every cast keeps T5's feed-forward outputs (``wo``, transformers' ``_keep_in_fp32_modules``) out of float16,
        as transformers' own float16 load does: their activations overflow float16 in T5 v1.1 and XXL (bfloat16's range
        is wide enough)."""
        keep_names = tuple(getattr(self.model, "_keep_in_fp32_modules", None) or ())
        keep = {id(p) for name, module in self.model.named_modules() if name.rsplit(".", 1)[-1] in keep_names
                for p in module.parameters(recurse=False)}

        def cast(t: torch.Tensor) -> torch.Tensor:
            if id(t) in keep and t.is_floating_point():  # where and in what dtype ``fn`` would put it, on no data
                probe = fn(torch.empty(0, dtype=t.dtype, device=t.device))
                if probe.dtype == torch.float16:  # never through float16: large weights would overflow on the way
                    return t.to(device=probe.device, dtype=torch.float32)
            return fn(t)

        return super()._apply(cast, recurse)

    def folder_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's tensors of a T5 file; a whole model's decoder and output head are left out."""
        encoder = {k: v for k, v in state.items() if not k.startswith(("decoder.", "lm_head."))}
        return super().folder_state(encoder)

    def forward(self, prompts: list[str], names: list[str] | None = None) -> TextCondition:
        """``names``: what warnings call each prompt ("prompt", "negative prompt"; default "prompt")."""
        prompts = check_prompt_strings(prompts)
        self.warn_vocabulary(prompts, prompt_names(prompts, names), "T5")
        batch = self.tokenizer(prompts, padding="max_length", max_length=self.cfg.max_length, truncation=True,
                               return_tensors="pt")
        ids = batch.input_ids.to(self.model.device)
        mask = batch.attention_mask.to(self.model.device).bool()
        with self.outside_autocast():
            tokens = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask[..., None].to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextCondition(tokens=tokens, mask=mask, pooled=pooled)
