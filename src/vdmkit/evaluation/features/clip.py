"""CLIP for CLIPSIM (and frame consistency), from a local transformers folder (config.json,
model.safetensors, tokenizer files): frames get OpenAI's ``clip._transform`` (shorter side 224 bicubic,
centre crop 224, /255, CLIP mean/std), captions at most 77 tokens. transformers is imported only here,
when a model loads."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vdmkit.errors import (
    CheckpointMismatchError,
    ConfigError,
    ConstraintError,
    CorruptCheckpointError,
    UnsafeFormatError,
    VocabularyWarning,
)
from vdmkit.evaluation.features import weights
from vdmkit.video import check_video, fold_time

CLIP_WEIGHTS = "model.safetensors"  # transformers' weight file; pytorch_model.bin (pickle) is refused
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI clip._transform / HF CLIPImageProcessor
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MAX_TOKENS = 77  # OpenAI clip.tokenize context length
PIL_BICUBIC = 3


@dataclass(frozen=True)
class ClipModel:
    """A CLIP model and tokenizer from a local transformers folder, with its provenance."""

    model: nn.Module
    tokenizer: object
    record: weights.WeightRecord
    preprocessing: dict = field(default_factory=dict)

    def to(self, device) -> "ClipModel":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return weights.module_device(self.model)


def _check_clip_processor(folder: Path) -> None:
    """If the folder has a preprocessor config, it must describe the reference CLIP preprocessing."""
    import json

    cfg_path = folder / "preprocessor_config.json"
    if not cfg_path.is_file():
        return
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    size = cfg.get("size", {})
    size = size.get("shortest_edge", size) if isinstance(size, dict) else size
    crop = cfg.get("crop_size", {})
    crop = crop.get("height", crop) if isinstance(crop, dict) else crop
    ok = (size == CLIP_SIZE and crop == CLIP_SIZE and cfg.get("resample", PIL_BICUBIC) == PIL_BICUBIC
          and np.allclose(cfg.get("image_mean", CLIP_MEAN), CLIP_MEAN)
          and np.allclose(cfg.get("image_std", CLIP_STD), CLIP_STD))
    if not ok:
        raise ConfigError(f"{str(cfg_path)!r} describes preprocessing (size {size}, crop {crop}, resample "
                          f"{cfg.get('resample')}) that is not CLIP's 224 bicubic + centre crop; vdmkit applies the "
                          "reference preprocessing, so use a folder made for a 224-pixel CLIP (e.g. "
                          "openai/clip-vit-base-patch32)")


def _check_clip_config(folder: Path) -> None:
    """ConfigError unless ``folder/config.json`` describes a CLIP model with both towers (model_type "clip"):
    transformers loads a text or vision tower alone into a default-size CLIPModel of random weights."""
    import json

    path = folder / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CorruptCheckpointError(f"CLIP folder {str(folder)!r}: its config.json cannot be read ({err}); a CLIP "
                                     "model folder holds config.json, model.safetensors and tokenizer files") from None
    kind = cfg.get("model_type") if isinstance(cfg, dict) else None
    if kind == "clip":
        return
    architecture = ", ".join((cfg.get("architectures") if isinstance(cfg, dict) else None) or ["model"])
    holds = {"clip_text_model": f"a {architecture}: the text tower only, as a diffusion pipeline's text_encoder",
             "clip_vision_model": f"a {architecture}: the image tower only"}.get(kind, f"a {architecture}")
    raise ConfigError(f"{str(folder)!r} holds {holds} (config.json model_type {kind!r}), not a CLIP model; CLIPSIM "
                      "compares each video's frames with its caption, so --clip needs a CLIP model with both towers "
                      "(model_type 'clip', e.g. huggingface.co/openai/clip-vit-base-patch32: config.json, "
                      "model.safetensors, tokenizer files)")


def load_clip(folder: str | os.PathLike, *, expected_sha256: str | None = None) -> ClipModel:
    """CLIP from a local transformers folder (``config.json``, ``model.safetensors``, tokenizer files);
    ``local_files_only``, safetensors only. ``expected_sha256`` pins ``model.safetensors``. A folder of one tower
    (a pipeline's text_encoder), or weights that do not fill the model its config describes, is refused."""
    folder = Path(folder)
    weight_file = folder / CLIP_WEIGHTS
    if not weight_file.is_file():
        if (folder / "pytorch_model.bin").is_file():
            raise UnsafeFormatError(f"{str(folder)!r} has only pytorch_model.bin (pickle); get the model.safetensors "
                                    "of the same model (e.g. from huggingface.co/openai/clip-vit-base-patch32)")
        raise CorruptCheckpointError(
            f"CLIP folder {str(folder)!r} has no {CLIP_WEIGHTS}: download a CLIP model folder (config.json, "
            f"{CLIP_WEIGHTS}, tokenizer files), e.g. huggingface.co/openai/clip-vit-base-patch32, and pass its path; "
            "vdmkit never downloads weights")
    _check_clip_processor(folder)
    _check_clip_config(folder)
    has = {name for name in ("tokenizer.json", "vocab.json", "merges.txt") if (folder / name).is_file()}
    if "tokenizer.json" not in has and len(has) < 2:  # transformers' own error names a backend, not the files
        raise ConfigError(f"CLIP folder {str(folder)!r} has no tokenizer (tokenizer.json, or vocab.json + merges.txt): "
                          "copy the tokenizer files of the same CLIP model beside its config.json")
    spec = weights.WeightFile(CLIP_WEIGHTS, None, None, "huggingface.co/openai/clip-vit-base-patch32", "CLIPSIM")
    record = weights.verify_weight_file(spec, weight_file, expected_sha256)
    from transformers import AutoTokenizer, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model, info = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                            output_loading_info=True)
    # a weight the file lacks is left randomly initialised: CLIPSIM would differ on every run (sweep 24E)
    wrong = [(what, sorted(info.get(key) or ())) for what, key in (
        ("missing from the file (left random)", "missing_keys"), ("in the file but not CLIP's", "unexpected_keys"),
        ("of another shape", "mismatched_keys"))]
    wrong = [f"{len(keys)} {what} (e.g. {', '.join(map(str, keys[:2]))})" for what, keys in wrong if keys]
    if wrong:
        raise CheckpointMismatchError(f"{str(weight_file)!r} does not hold the CLIP model its config.json describes: "
                                      f"weights {'; '.join(wrong)}; CLIPSIM needs the complete model.safetensors of "
                                      "a CLIP model (e.g. openai/clip-vit-base-patch32)")
    model.eval().requires_grad_(False)
    return ClipModel(model, tokenizer, record, {
        "resize": f"shorter side {CLIP_SIZE}, PIL bicubic", "crop": f"centre {CLIP_SIZE}",
        "normalise": "x / 255, CLIP mean/std", "max_tokens": CLIP_MAX_TOKENS})


def clip_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, 224, 224)`` float, OpenAI ``clip._transform``: PIL bicubic
    resize of the shorter side to 224 (longer side ``int(224 * long / short)``), centre crop 224
    (offset ``round((size - 224) / 2)``), /255, CLIP mean/std."""
    from PIL import Image

    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        new_long = int(CLIP_SIZE * max(h, w) / min(h, w))
        new_w, new_h = (CLIP_SIZE, new_long) if w <= h else (new_long, CLIP_SIZE)
        img = Image.fromarray(frame).resize((new_w, new_h), Image.BICUBIC)
        top, left = round((new_h - CLIP_SIZE) / 2.0), round((new_w - CLIP_SIZE) / 2.0)
        out.append(np.asarray(img.crop((left, top, left + CLIP_SIZE, top + CLIP_SIZE))))
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _embedding(out) -> torch.Tensor:
    """transformers < 5 returns the projected embedding; >= 5 a model output with ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_frame_embeddings(clip: ClipModel, videos: torch.Tensor, *, batch_size: int = 32,
                          progress: bool = True) -> np.ndarray:
    """``(B, 3, T, H, W)`` in [-1, 1] -> float64 ``(B, T, D)`` image embeddings of every frame
    (frames quantised to uint8 by rounding, as saved videos are)."""
    check_video(videos, channels=3, name="CLIP input video")
    b, t = videos.shape[0], videos.shape[2]
    frames = ((fold_time(videos).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    frames = frames.permute(0, 2, 3, 1).numpy()
    chunks = [_embedding(clip.model.get_image_features(pixel_values=clip_input(frames[i:i + batch_size]).to(clip.device)))
              for i in tqdm(range(0, len(frames), batch_size), desc="CLIP frames", disable=not progress)]
    return weights.finite_rows(torch.cat(chunks), "CLIP image tower").reshape(b, t, -1)


@torch.no_grad()
def clip_text_embeddings(clip: ClipModel, captions: list[str]) -> np.ndarray:
    """Captions -> float64 ``(B, D)`` text embeddings; captions over 77 tokens are cut with a
    :class:`VocabularyWarning` giving the number of tokens dropped."""
    if not captions:
        raise ConstraintError("no captions given; CLIPSIM needs one caption per video")
    full = clip.tokenizer(list(captions))["input_ids"]
    dropped = {i: len(ids) - CLIP_MAX_TOKENS for i, ids in enumerate(full) if len(ids) > CLIP_MAX_TOKENS}
    if dropped:
        warnings.warn(f"{len(dropped)} caption(s) longer than {CLIP_MAX_TOKENS} tokens were cut; tokens dropped "
                      f"per caption index: {dropped}", VocabularyWarning, stacklevel=2)
    tokens = clip.tokenizer(list(captions), padding="max_length", truncation=True, max_length=CLIP_MAX_TOKENS,
                            return_tensors="pt")
    out = clip.model.get_text_features(input_ids=tokens["input_ids"].to(clip.device),
                                       attention_mask=tokens["attention_mask"].to(clip.device))
    return weights.finite_rows(_embedding(out), "CLIP text tower")
