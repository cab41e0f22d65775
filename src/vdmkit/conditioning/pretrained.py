"""What the text encoders from local transformers folders (``clip``, ``t5``) share: the folder's weights (one
``model.safetensors`` or the shards its index names) in the key form the installed transformers uses, prompt checks,
and the unknown-word and over-length warnings. Nothing is ever downloaded; pickled weights are refused.

transformers 5 names CLIPTextModel's weights without the ``text_model.`` level that files saved by transformers 4
carry (every Stable Diffusion and ModelScope folder published before 2026), and T5 files may hold the shared
embedding once for the two tied names; :func:`matched_state` maps either form onto the model in this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import torch

from vdmkit.conditioning.text import check_prompt_text
from vdmkit.errors import ConfigError, CorruptCheckpointError, VocabularyWarning
from vdmkit.io.checkpoint import cached_sha256, folder_weights, load_json, load_strict, load_tensors

COPY = "text_encoder"  # in a checkpoint: the encoder's config.json and tokenizer/ files (its weights are its tensors)
TOKENIZER_NAMES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "spiece.model")
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"  # sharded weights: {"weight_map": {key: shard file}}


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


def snapshot(folder: str | os.PathLike, tokenizer: str | os.PathLike) -> dict[str, bytes]:
    """The encoder's small files, read once, as checkpoints carry them (``text_encoder/config.json`` and
    ``text_encoder/tokenizer/*``): a trained or converted model then samples, resumes and fine-tunes without the
    folder it came from, from any working directory."""
    files = {f"{COPY}/config.json": (Path(folder) / "config.json").read_bytes()}
    for name in TOKENIZER_NAMES:
        if (Path(tokenizer) / name).is_file():
            files[f"{COPY}/tokenizer/{name}"] = (Path(tokenizer) / name).read_bytes()
    return files


def hf_config(config_class, raw: dict, folder, what: str):
    """``config_class`` built from a folder's config.json (``raw``, its private keys left out); ConfigError naming the
    file for a value of the wrong type (transformers 5 checks them with huggingface_hub's strict dataclasses)."""
    errors: tuple[type[Exception], ...] = (TypeError, ValueError)
    with contextlib.suppress(ImportError):
        from huggingface_hub.errors import StrictDataclassError
        errors += (StrictDataclassError,)
    try:
        return config_class(**{k: v for k, v in raw.items() if not k.startswith("_")})
    except errors as err:
        raise ConfigError(f"{str(Path(folder) / 'config.json')!r} is not a valid {what} config: "
                          f"{str(err).splitlines()[0][:200]}") from err


def tokenizer_json(folder) -> None:
    """CorruptCheckpointError naming the file when a tokenizer folder's JSON file is not JSON (truncated, an HTML
    page saved in its place): the tokenizers' own errors do not say which file."""
    for name in TOKENIZER_NAMES:
        if name.endswith(".json") and (Path(folder) / name).is_file():
            load_json(Path(folder) / name)


def load_tokenizer(tokenizer_class, folder: Path, kind: str, hint: str):
    """``tokenizer_class.from_pretrained(folder)`` (local files only); CorruptCheckpointError naming the folder, and
    the file for a JSON file that is not JSON, when it does not load (``hint``: what to check)."""
    tokenizer_json(folder)
    try:
        return tokenizer_class.from_pretrained(str(folder), local_files_only=True)
    except (ImportError, ValueError, TypeError, OSError, KeyError) as err:
        why = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CorruptCheckpointError(f"the {kind} tokenizer in {str(folder)!r} did not load ({why}){hint}") from err


def check_tokenizer(tokenizer, folder, kind: str, model: str, vocab_size: int, pad: str) -> None:
    """``tokenizer`` (loaded from ``folder``) is one of ``model`` type (CLIP: BPE; T5: Unigram) whose ids fit the
    encoder's ``vocab_size``: another model's tokenizer loads without complaint and feeds wrong ids. It must have a
    padding token (``pad``: the ones the model family uses, for the message)."""
    found = None
    try:
        found = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # vocab.json + merges.txt (BPE) or spiece.model (Unigram): the loader itself took the kind
    if found is not None and found != model:
        raise ConfigError(f"the tokenizer in {str(folder)!r} is a {found} tokenizer; a {kind} text encoder takes "
                          f"{kind}'s own ({model}): give text.tokenizer the folder that came with the encoder")
    if len(tokenizer) > vocab_size:
        raise ConfigError(f"the tokenizer in {str(folder)!r} has {len(tokenizer)} tokens, more than the {kind} "
                          f"encoder's vocabulary of {vocab_size}: it belongs to another model")
    if tokenizer.pad_token is None:  # prompts are padded to max_length: transformers refused each one, naming no file
        raise ConfigError(f"the tokenizer in {str(folder)!r} has no padding token (pad_token is null in its "
                          f"tokenizer_config.json or special_tokens_map.json), and prompts are padded to max_length: "
                          f"set pad_token to the one the model was trained with ({pad})")


def checkpoint_copy(text_cfg, directory: str | os.PathLike):
    """``text_cfg`` reading the encoder's files from the copy checkpoint ``directory`` carries, when it has one (and
    the config names a folder at all)."""
    copy = Path(directory) / COPY
    if getattr(text_cfg, "folder", None) and (copy / "config.json").is_file():
        return dataclasses.replace(text_cfg, folder=str(copy), tokenizer=str(copy / "tokenizer"))
    return text_cfg


def without_paths(text: dict) -> dict:
    """A text section as compared between runs: where its folder lay is no part of the model (the checkpoint carries
    the weights and the files)."""
    return {k: v for k, v in text.items() if k not in ("folder", "tokenizer")}


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The safetensors files of a transformers model folder: ``model.safetensors``, or the shards named by
    ``model.safetensors.index.json`` (large T5 encoders). A folder of pickles only is refused, naming the
    conversion; a missing shard is a CorruptCheckpointError naming it."""
    folder = Path(folder)
    index = folder / INDEX
    if not (folder / WEIGHTS).is_file() and index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CorruptCheckpointError(f"{str(index)!r} is not a safetensors index (a weight_map): {err}") from err
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing or not shards:
            raise CorruptCheckpointError(f"{str(index)!r} names shards that are not in the folder: "
                                         f"{', '.join(missing) or 'none listed'}")
        return [folder / s for s in shards]
    return [folder_weights(folder, WEIGHTS)]


def files_sha256(files: list[Path]) -> str:
    """sha256 of one weights file; for shards, the sha256 over their names and sha256."""
    if len(files) == 1:
        return cached_sha256(files[0])
    return hashlib.sha256(",".join(f"{p.name}:{cached_sha256(p)}" for p in files).encode()).hexdigest()


def matched_state(state: dict[str, torch.Tensor], own_keys, levels: tuple[str, ...] = (),
                  tied: tuple[tuple[str, str], ...] = (), dropped: tuple[str, ...] = ("position_ids",)) -> dict:
    """``state`` (a transformers file's tensors) keyed as the model whose state-dict keys are ``own_keys``: a key one
    of ``levels`` (a module level, e.g. ``"text_model."``) away from an own key is renamed to it; buffers ending in
    one of ``dropped`` that the model does not have are left out; of a ``tied`` pair of names (one tensor) the one
    the file lacks is filled from the other. Keys that fit nowhere stay, so a strict load names them."""
    own = set(own_keys)
    out = {}
    for key, value in state.items():
        if key not in own:
            for level in levels:
                if key.startswith(level) and key[len(level):] in own:
                    key = key[len(level):]
                    break
                if level + key in own:
                    key = level + key
                    break
        if key not in own and key.endswith(dropped):
            continue
        out[key] = value
    for a, b in tied:
        for have, lack in ((a, b), (b, a)):
            if have in out and lack in own and lack not in out:
                out[lack] = out[have]
    return out


def check_prompt_strings(prompts) -> list[str]:
    """ConfigError as a request's prompt checks give it (a TypeError or ValueError from here before 2026-12-06)."""
    return [check_prompt_text(p) for p in prompts]


def quoted(prompt: str) -> str:
    """The start of ``prompt`` as warnings quote it."""
    return f"{prompt[:40]!r}{'...' if len(prompt) > 40 else ''}"


def encoded(tokenizer, prompt: str, max_length: int):
    """``prompt``'s first ``max_length`` tokens (those encoded) with their character offsets and the mask of the
    special tokens the tokenizer adds (start, end; not those the prompt spells)."""
    return tokenizer(prompt, max_length=max_length, truncation=True, return_offsets_mapping=True,
                     return_special_tokens_mask=True, verbose=False)


def unknown_words(tokenizer, prompt: str, max_length: int) -> list[str]:
    """The words (whitespace-separated, in order) of ``prompt`` with a token the vocabulary maps to its unknown token,
    among the first ``max_length`` tokens (those encoded; words past them are cut, not encoded as <unk>). A typed
    unknown token is a special token (:func:`typed_special_tokens`), not an unknown word."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    tokens = encoded(tokenizer, prompt, max_length)
    unknown = [a for i, added, (a, b) in zip(tokens["input_ids"], tokens["special_tokens_mask"],
                                             tokens["offset_mapping"])
               if i == unk and not added and prompt[a:b].strip() != tokenizer.unk_token]
    words = [m for m in re.finditer(r"\S+", prompt) if any(m.start() <= a < m.end() for a in unknown)]
    return [m.group() for m in words]


def typed_special_tokens(tokenizer, prompt: str, max_length: int) -> list[str]:
    """The special tokens (CLIP's <|endoftext|>, T5's </s>, <pad>, <unk>) that ``prompt`` spells, among the tokens
    encoded: the tokenizer encodes them as those control tokens, not as text (transformers' and diffusers' default)."""
    special = set(tokenizer.all_special_ids)
    tokens = encoded(tokenizer, prompt, max_length)
    found = [tokenizer.convert_ids_to_tokens(i) for i, added, (a, b) in zip(
        tokens["input_ids"], tokens["special_tokens_mask"], tokens["offset_mapping"])
        if i in special and not added and prompt[a:b].strip() == tokenizer.convert_ids_to_tokens(i)]
    return list(dict.fromkeys(found))


def warn_cut(name: str, prompt: str, dropped: int, max_length: int, what: str) -> None:
    """A VocabularyWarning that ``dropped`` tokens past ``max_length`` of ``prompt`` (what ``name`` calls it: "prompt",
    "negative prompt", "caption") were cut."""
    warnings.warn(f"{name} {quoted(prompt)} is longer than {max_length} {what} tokens: {dropped} tokens were cut",
                  VocabularyWarning, stacklevel=3)


def prompt_names(prompts: list[str], names: list[str] | None) -> list[str]:
    """What warnings call each of ``prompts``: ``names`` (one per prompt), or "prompt" for each."""
    if names is None:
        return ["prompt"] * len(prompts)
    if len(names) != len(prompts):
        raise ConfigError(f"got {len(names)} names for {len(prompts)} prompts; give one name per prompt")
    return list(names)


class FolderWeights:
    """Mixin of the transformers-folder text encoders: ``self.model`` (the transformers module), ``self.cfg.folder``,
    ``self.carried`` (:func:`snapshot`), and the key forms of :func:`matched_state` in ``LEVELS``, ``TIED`` and
    ``DROPPED``."""

    LEVELS: tuple[str, ...] = ()
    TIED: tuple[tuple[str, str], ...] = ()
    DROPPED: tuple[str, ...] = ("position_ids",)
    SPECIAL_NOTE = ""  # what a typed special token does to this encoder's output, for the warning

    def train(self, mode: bool = True):
        """The encoder is frozen: its network stays in evaluation mode (T5's dropout off) whatever ``mode``."""
        super().train(mode)
        self.model.eval()
        return self

    def cut_tokens(self, prompt: str) -> int:
        """Tokens of ``prompt`` past ``max_length`` (cut), as the sidecar records them."""
        return max(0, len(self.tokenizer(prompt, verbose=False)["input_ids"]) - self.cfg.max_length)

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of ``prompt`` the vocabulary cannot spell (they reach the model as <unk>), as the sidecar records
        them."""
        return unknown_words(self.tokenizer, prompt, self.cfg.max_length)

    def warn_vocabulary(self, prompts: list[str], names: list[str], what: str) -> None:
        """A VocabularyWarning per prompt (``names``: what to call each, "prompt", "negative prompt", ...) with unknown
        words, listing them as the word tokenizer does; with special tokens spelled in its text, naming them; and
        longer than ``max_length``, giving the count cut."""
        for name, prompt in dict.fromkeys(zip(names, prompts)):  # a long video's windows repeat their prompts
            unknown = self.unknown_words(prompt)
            if unknown:
                warnings.warn(f"{name} {quoted(prompt)}: {len(unknown)} word(s) not in the {what} vocabulary, encoded "
                              f"as {self.tokenizer.unk_token}: {', '.join(unknown)}", VocabularyWarning, stacklevel=2)
            special = typed_special_tokens(self.tokenizer, prompt, self.cfg.max_length)
            if special:  # diffusers encodes them so too (split_special_tokens=True splits CLIP's, not T5's)
                warnings.warn(f"{name} {quoted(prompt)} spells the {what} tokenizer's special token(s) "
                              f"{', '.join(special)}, encoded as control tokens (as transformers and diffusers do), "
                              f"not as text{self.SPECIAL_NOTE}; remove them or write them otherwise",
                              VocabularyWarning, stacklevel=2)
            dropped = self.cut_tokens(prompt)
            if dropped:
                warn_cut(name, prompt, dropped, self.cfg.max_length, what)

    def outside_autocast(self) -> contextlib.AbstractContextManager:
        """The encoder computes in its own weights' precision, never under an autocast a caller opened (training's):
        T5 overflows float16 autocast, and bf16-autocast features differed from the fp32 ones sampling uses."""
        kind = self.model.device.type
        try:
            active = torch.is_autocast_enabled(kind)
        except (TypeError, RuntimeError):  # a device type autocast does not know: nothing to leave
            return contextlib.nullcontext()
        return torch.autocast(kind, enabled=False) if active else contextlib.nullcontext()

    def folder_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A file's tensors keyed as ``self.model`` names its weights."""
        return matched_state(state, self.model.state_dict().keys(), self.LEVELS, self.TIED, self.DROPPED)

    def load_folder_weights(self) -> str:
        """Load the folder's own weights into the encoder, strictly (a fresh training run starts from them; a trained
        run's checkpoints carry them); return their sha256."""
        files = weight_files(self.cfg.folder)  # shard by shard: one shard's tensors held at a time (T5-XXL: 19 GB)
        load_strict(self.model, (self.folder_state(load_tensors(path)) for path in files), self.cfg.folder)
        return files_sha256(files)
