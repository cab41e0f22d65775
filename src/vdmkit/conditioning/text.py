"""A small trainable text encoder over a word vocabulary, for the built-in synthetic data.

The empty prompt ``""`` is the unconditional input used by classifier-free guidance. Unknown words map
to ``<unk>`` and are reported with a :class:`VocabularyWarning` (never dropped silently); prompts longer
than ``max_length`` words are cut with a warning saying how many words were dropped.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from vdmkit.errors import ConfigError, VocabularyWarning

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, UNK)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def split_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def check_prompt_text(prompt, name: str = "prompt") -> str:
    """``prompt`` itself; ConfigError naming ``name`` for what no tokenizer encodes as given: a non-string, a NUL (C
    strings end there), a lone surrogate (undecodable bytes read with surrogateescape: tokenizers fail or drop it)."""
    if not isinstance(prompt, str):
        raise ConfigError(f"{name} must be a string, got {type(prompt).__name__}: {prompt!r}")
    if "\x00" in prompt:
        raise ConfigError(f"{name} {prompt!r} contains a NUL character; remove it")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConfigError(f"{name} {prompt!r} is not valid text ({err.reason} at {err.start}): a lone surrogate; "
                          "decode the source as UTF-8") from None
    return prompt


def dropped_symbols(text: str) -> list[str]:
    """The runs of symbols in ``text`` (Unicode category S: emoji, arrows, math and currency signs, with the
    variation selectors and joiners that build emoji) that no word token covers: an all-emoji prompt is
    unconditional. Punctuation, accents and spaces are not reported."""
    runs, run = [], ""
    for c in text:
        if unicodedata.category(c).startswith("S") or (run and (c in "\u200d" or 0xFE00 <= ord(c) <= 0xFE0F)):
            run += c
        elif run:
            runs.append(run)
            run = ""
    return runs + ([run] if run else [])


@dataclass
class TextCondition:
    """Encoded prompts: per-token features for cross-attention and a pooled vector."""

    tokens: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool, True = real token
    pooled: torch.Tensor  # (B, D)

    def __getitem__(self, index: slice) -> "TextCondition":
        return TextCondition(self.tokens[index], self.mask[index], self.pooled[index])


class WordTokenizer:
    """Lower-cased words -> ids, ``<bos>`` first, padded to the longest prompt in the batch."""

    def __init__(self, words: list[str], max_length: int = 16):
        words = sorted(set(words) - set(SPECIAL_TOKENS))
        self.vocab = list(SPECIAL_TOKENS) + words
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_length = max_length

    def unknown_words(self, prompt: str) -> list[str]:
        """Words the vocabulary lacks among those encoded (as <unk>; words past the maximum length are dropped, not
        encoded), then symbols no token covers (dropped)."""
        return [w for w in self.kept_words(prompt) if w not in self.index] + dropped_symbols(prompt)

    def kept_words(self, prompt: str) -> list[str]:
        """The words of ``prompt`` that are encoded: the first ``max_length - 1`` (after <bos>)."""
        return split_words(prompt)[: self.max_length - 1]

    def cut_tokens(self, prompt: str) -> int:
        """How many words of ``prompt`` are past the maximum length, and dropped."""
        return max(0, len(split_words(prompt)) - (self.max_length - 1))

    def __call__(self, prompts: list[str], names: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) int64 and mask (B, L) bool. ``names``: what warnings call each prompt ("prompt",
        "negative prompt"; default "prompt")."""
        rows = []
        if names is not None and len(names) != len(prompts):
            raise ConfigError(f"got {len(names)} names for {len(prompts)} prompts; give one name per prompt")
        for prompt, name in zip(prompts, names or ["prompt"] * len(prompts)):
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
            if "\x00" in prompt:
                raise ValueError(f"prompt contains a NUL character: {prompt!r}")
            words, kept = split_words(prompt), self.kept_words(prompt)
            # among the words encoded: a 2000-word prompt listed 2000 unknown words of which 15 were encoded
            unknown = [w for w in kept if w not in self.index]
            if unknown:
                warnings.warn(
                    f"{name} {prompt[:40]!r}{'...' if len(prompt) > 40 else ''}: {len(unknown)} word(s) not in the "
                    f"model's vocabulary, encoded as {UNK}: {', '.join(unknown)}", VocabularyWarning, stacklevel=2)
            symbols = dropped_symbols(prompt)
            if symbols:
                warnings.warn(f"{name} {prompt!r}: symbols no word token covers are dropped: {' '.join(symbols)}"
                              + (f" (nothing is left: the {name} samples unconditionally)" if not words else ""),
                              VocabularyWarning, stacklevel=2)
            if not words and not symbols and prompt.strip():  # "!!!", "—", a zero-width space: as "" unsaid
                warnings.warn(f"{name} {prompt!r} has no words (punctuation and invisible characters are not "
                              f"encoded): nothing is left, the {name} samples unconditionally", VocabularyWarning,
                              stacklevel=2)
            if len(kept) < len(words):
                warnings.warn(
                    f"{name} {prompt[:40]!r}... has {len(words)} words; the last {len(words) - len(kept)} beyond the "
                    f"maximum of {self.max_length - 1} are dropped", VocabularyWarning, stacklevel=2)
            rows.append([self.index[BOS]] + [self.index.get(w, self.index[UNK]) for w in kept])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.index[PAD], dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, ids != self.index[PAD]


POOLINGS = ("mean", "first")


@dataclass
class WordEncoderConfig:
    vocab: tuple[str, ...] = ()
    dim: int = 128
    layers: int = 2
    heads: int = 4
    max_length: int = 16
    # pooled vector (the backbone's FiLM input): the "first" token's output (a CLS-style read; trained from
    # scratch it barely moves with words late in the prompt) or the "mean" of the prompt's token features
    pooling: str = "first"

    def __post_init__(self):
        for name in ("dim", "layers", "heads", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"text.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise ConfigError(f"text.dim={self.dim} must be a multiple of text.heads={self.heads}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"text.pooling={self.pooling!r} unknown; valid: {', '.join(POOLINGS)}")


class WordTextEncoder(nn.Module):
    """Word embeddings + learned positions + a small pre-norm transformer encoder."""

    def __init__(self, cfg: WordEncoderConfig):
        super().__init__()
        if not cfg.vocab:
            raise ConfigError("text encoder vocab is empty; build it from the dataset (e.g. ShapesConfig.vocabulary())")
        self.cfg = cfg
        self.tokenizer = WordTokenizer(list(cfg.vocab), cfg.max_length)
        self.embed = nn.Embedding(len(self.tokenizer.vocab), cfg.dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_length, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of ``prompt`` outside the vocabulary (encoded as <unk>)."""
        return self.tokenizer.unknown_words(prompt)

    def cut_tokens(self, prompt: str) -> int:
        """Words of ``prompt`` past the maximum length (dropped)."""
        return self.tokenizer.cut_tokens(prompt)

    def forward(self, prompts: list[str], names: list[str] | None = None) -> TextCondition:
        """``names``: what warnings call each prompt ("prompt", "negative prompt"; default "prompt")."""
        ids, mask = self.tokenizer(prompts, names)
        ids, mask = ids.to(self.pos.device), mask.to(self.pos.device)
        h = self.embed(ids) + self.pos[:, : ids.shape[1]]  # (B, L, D)
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        if self.cfg.pooling == "first":
            pooled = h[:, 0]
        else:
            m = mask[..., None].to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return TextCondition(tokens=h, mask=mask, pooled=pooled)
