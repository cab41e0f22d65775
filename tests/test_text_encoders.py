"""Text encoders from local transformers folders: T5 (``text_encoder: t5``) against transformers' own T5EncoderModel,
the key forms real folders carry (CLIP's transformers-4 ``text_model.`` level, T5's tied embedding, a whole T5 with its
decoder, shards), fresh training runs that start from the folder's weights (both backbone families), and the bad
inputs. Tiny random-weight models saved by transformers itself."""

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from vdmkit import cli
from vdmkit.conditioning.t5 import T5TextConfig, T5TextEncoder
from vdmkit.errors import (CheckpointMismatchError, ConfigError, CorruptCheckpointError, UnsafeFormatError,
                           VocabularyWarning)
from vdmkit.io.checkpoint import latest_checkpoint, skipped_init

transformers = pytest.importorskip("transformers")

WORDS = ["▁a", "▁red", "▁blue", "▁circle", "▁square", "▁moving", "▁left", "▁right", "▁up", "▁down", "▁fast", "▁slow"]
PROMPTS = ["a red circle moving left", "", "a fast blue square moving up, then 7 times down"]


def t5_tokenizer():
    """A T5 (Unigram, SentencePiece-style) tokenizer over a few words and single letters; digits are unknown."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    letters = list("abcdefghijklmnopqrstuvwxyz,") + ["▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -2.0) for w in WORDS] + [(c, -5.0) for c in letters]
    tk = Tokenizer(models.Unigram(vocab, unk_id=2))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    return transformers.T5TokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                        extra_ids=0)


def t5_config(vocab: int) -> "transformers.T5Config":
    return transformers.T5Config(vocab_size=vocab, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=1,
                                 num_heads=2, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                 dropout_rate=0.1, decoder_start_token_id=0)


def save_t5(folder, model_class="T5EncoderModel", **save):
    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(t5_config(len(tokenizer))).eval()
    model.save_pretrained(folder, safe_serialization=True, **save)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5") / "text_encoder"
    model, tokenizer = save_t5(folder)
    return folder, model, tokenizer


def encoder(folder, **kw) -> T5TextEncoder:
    with skipped_init():
        enc = T5TextEncoder(T5TextConfig(folder=str(folder), dim=16, **kw))
    enc.load_folder_weights()
    return enc


def reference(model, tokenizer, prompts, max_length=120):
    batch = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state, batch


def test_t5_equals_transformers_and_masks_the_padding(t5_folder):
    folder, model, tokenizer = t5_folder
    ours = encoder(folder)
    with torch.no_grad():
        cond = ours(PROMPTS)
    ref, batch = reference(model, tokenizer, PROMPTS)
    assert cond.tokens.shape == (3, 120, 16)
    torch.testing.assert_close(cond.tokens, ref, atol=1e-6, rtol=0)
    assert torch.equal(cond.mask, batch.attention_mask.bool())
    assert cond.mask[1].sum() == 1  # "" is the end-of-sequence token alone: the unconditional prompt
    real = batch.attention_mask[..., None].float()
    torch.testing.assert_close(cond.pooled, (ref * real).sum(1) / real.sum(1), atol=1e-6, rtol=0)
    ours.train()  # frozen: T5's dropout stays off
    assert not ours.model.training and not any(p.requires_grad for p in ours.parameters())
    with torch.no_grad():
        assert torch.equal(ours(PROMPTS).tokens, cond.tokens)
    # the real tokens do not see the padding: the same prompt padded to 24 gives the same states
    with torch.no_grad():
        short = encoder(folder, max_length=24)(PROMPTS)
    n = int(cond.mask[0].sum())
    torch.testing.assert_close(short.tokens[0, :n], cond.tokens[0, :n], atol=1e-6, rtol=0)
    assert ours.unknown_words(PROMPTS[2]) == ["7"]


def test_t5_files_in_the_forms_real_folders_carry(t5_folder, tmp_path):
    """The shared embedding under one name only, a whole T5ForConditionalGeneration (decoder left out), and shards
    with their index all load to the same encoder."""
    _, model, tokenizer = t5_folder
    want, _ = reference(model, tokenizer, PROMPTS)
    tied = tmp_path / "tied"
    save_t5(tied)
    state = load_file(tied / "model.safetensors")
    state.pop("encoder.embed_tokens.weight", None)
    save_file(state, tied / "model.safetensors", metadata={"format": "pt"})
    whole = tmp_path / "whole"
    whole_model, _ = save_t5(whole, "T5ForConditionalGeneration")
    assert any(k.startswith("decoder.") for k in load_file(whole / "model.safetensors"))
    shards = tmp_path / "shards"
    save_t5(shards, max_shard_size="20KB")
    assert (shards / "model.safetensors.index.json").is_file() and not (shards / "model.safetensors").exists()
    for f in (tied, shards):
        with torch.no_grad():
            torch.testing.assert_close(encoder(f)(PROMPTS).tokens, want, atol=1e-6, rtol=0)
    with torch.no_grad():
        got = encoder(whole)(PROMPTS).tokens
        ref, _ = reference(whole_model.encoder, tokenizer, PROMPTS)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_t5_in_bf16_stays_close_to_fp32(t5_folder):
    folder, _, _ = t5_folder
    ours = encoder(folder)
    with torch.no_grad():
        full = ours(PROMPTS).tokens
        half = ours.to(torch.bfloat16)(PROMPTS).tokens
    assert half.dtype == torch.bfloat16
    err = (half.float() - full).abs().max() / full.abs().max()
    assert err < 0.03, float(err)  # measured 0.0087 on this tiny model


def test_over_length_prompts_warn_with_the_count(t5_folder):
    folder, _, _ = t5_folder
    ours = encoder(folder, max_length=8)
    with pytest.warns(VocabularyWarning, match=r"prompt 'a red .* is longer than 8 T5 tokens: 2 tokens were cut"):
        cond = ours(["a red circle moving left fast slow up down"])  # 9 words + </s> = 10 tokens
    assert cond.tokens.shape[1] == 8 and bool(cond.mask.all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours(["a red circle"])


@pytest.mark.parametrize("bad, match", [
    (["a", 3], "prompt must be a string, got int"),
    (["a\x00b"], "contains a NUL character"),
    (["a\udcffb"], "not valid text .* lone surrogate"),
])
def test_t5_refuses_bad_prompts(t5_folder, bad, match):
    """A TypeError or ValueError before 2026-12-06 (a lone surrogate the tokenizer's own TypeError): the ConfigError a
    request's prompt checks give."""
    with pytest.raises(ConfigError, match=match):
        encoder(t5_folder[0])(bad)


def test_t5_says_the_unknown_words_it_encodes(t5_folder):
    """The README says unknown words are reported on stderr and in the metadata: T5 recorded them in the sidecar only,
    and listed words past max_length that were cut, not encoded (before 2026-12-06)."""
    ours = encoder(t5_folder[0], max_length=24)
    with pytest.warns(VocabularyWarning, match=r"'a red 7 circle héllo 日本': 3 word\(s\) not in the T5 vocabulary, "
                                               r"encoded as <unk>: 7, héllo, 日本") as caught:
        ours(["a red 7 circle héllo 日本", "a red 7 circle héllo 日本", ""])
    assert len([w for w in caught if "vocabulary" in str(w.message)]) == 1  # one prompt, said once
    assert ours.unknown_words("a red 7 circle héllo 日本") == ["7", "héllo", "日本"]
    # 13 tokens (a space and 7 are two) in 12: the last 7 is cut, not encoded as <unk>
    assert encoder(t5_folder[0], max_length=12).unknown_words("a red circle moving left 7 up down fast 7") == ["7"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours(["a red circle moving left", ""])


def test_t5_bad_folders_are_typed_errors(t5_folder, tmp_path):
    import shutil

    folder = t5_folder[0]
    with pytest.raises(ConfigError, match="text.folder must name a local transformers T5"):
        T5TextConfig()
    with pytest.raises(CorruptCheckpointError, match="holds no config.json: not a transformers T5 encoder folder"):
        T5TextEncoder(T5TextConfig(folder=str(tmp_path), dim=16))
    clip_like = tmp_path / "clip"
    clip_like.mkdir()
    (clip_like / "config.json").write_text(json.dumps({"architectures": ["CLIPTextModel"],
                                                       "model_type": "clip_text_model"}))
    with pytest.raises(ConfigError, match="describes a CLIPTextModel.*loads T5EncoderModel"):
        T5TextEncoder(T5TextConfig(folder=str(clip_like), dim=16))
    with pytest.raises(ConfigError, match="text.dim=32 but the T5 folder's d_model is 16"):
        T5TextEncoder(T5TextConfig(folder=str(folder), dim=32))
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    shutil.copy(folder / "config.json", no_tok / "config.json")
    with pytest.raises(CorruptCheckpointError, match="holds neither tokenizer.json nor spiece.model"):
        T5TextEncoder(T5TextConfig(folder=str(no_tok), dim=16))
    # weights: truncated, pickle only, a shard missing, another model's keys
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        encoder(broken)
    (broken / "model.safetensors").unlink()
    (broken / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    with pytest.raises(UnsafeFormatError, match="holds only pickle weights.*safe_serialization=True"):
        encoder(broken)
    (broken / "pytorch_model.bin").unlink()
    (broken / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-1-of-2.safetensors"}}))
    with pytest.raises(CorruptCheckpointError, match="names shards that are not in the folder: model-1-of-2"):
        encoder(broken)
    (broken / "model.safetensors.index.json").unlink()
    save_file({"other.weight": torch.zeros(2)}, broken / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="unexpected other.weight"):
        encoder(broken)


# ---- CLIP: the key form of folders saved by transformers 4 ------------------------------------------------------

def test_a_pipeline_folder_saved_by_transformers_4_loads(tmp_path):
    """Every SD and ModelScope folder published before transformers 5 names the CLIP weights with a ``text_model.``
    level (and often the position_ids buffer); both load to the same pipeline as the transformers 5 form."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit.pipelines import TextToVideo

    new, old = tmp_path / "new", tmp_path / "old"
    tiny_pipeline(new, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    import shutil

    shutil.copytree(new, old)
    path = old / "text_encoder" / "model.safetensors"
    state = {f"text_model.{k}": v for k, v in load_file(path).items()}
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(state, path, metadata={"format": "pt"})
    a, b = TextToVideo.from_pretrained(new), TextToVideo.from_pretrained(old)
    with torch.no_grad():
        ta, tb = a.text_encoder(["a red panda"]).tokens, b.text_encoder(["a red panda"]).tokens
    assert torch.equal(ta, tb)


# ---- fresh training runs start from the folder's weights ------------------------------------------------------

def run_config(tmp_path, backbone: str, encoder_kind: str, folder, tokenizer=None, max_length: int = 64) -> str:
    model = ({"channels": [16, 16], "attention_levels": [1], "norm_groups": 8, "head_dim": 8} if backbone == "unet3d"
             else {"width": 16, "depth": 2, "heads": 2, "patch_size": 2})
    text = {"folder": str(folder), "dim": 16}
    if tokenizer is not None:
        text["tokenizer"] = str(tokenizer)
    if encoder_kind == "t5":
        text["max_length"] = max_length  # 64: the shapes captions spelled in letters fit
    doc = {"backbone": backbone, "model": model, "text_encoder": encoder_kind, "text": text,
           "data": {"size": 16, "frames": 4},
           "train": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "out_dir": str(tmp_path / f"{backbone}_run"),
                     "log_every": 1, "checkpoint_every": 2, "sample_every": 10, "precision": "fp32", "threads": 1}}
    path = tmp_path / f"{backbone}_{encoder_kind}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def trained_text_weights(run) -> dict:
    state = latest_checkpoint(run).load_tensors("model.safetensors")
    return {k[len("text_encoder.model."):]: v for k, v in state.items() if k.startswith("text_encoder.model.")}


@pytest.mark.parametrize("backbone", ["unet3d", "dit"])
def test_a_fresh_run_with_t5_starts_from_the_folders_weights_and_samples(t5_folder, tmp_path, backbone):
    folder = t5_folder[0]
    config = run_config(tmp_path, backbone, "t5", folder)
    assert cli.main(["train", config, "--no-progress"]) == 0
    run = tmp_path / f"{backbone}_run"
    saved = trained_text_weights(run)
    folder_state = load_file(folder / "model.safetensors")
    assert saved.keys() >= folder_state.keys()
    for k, v in folder_state.items():
        assert torch.equal(saved[k], v), k  # loaded, and frozen through the steps
    out = tmp_path / f"{backbone}.mp4"
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle moving left", "--steps", "2",
                     "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["prompt"] == "a red circle moving left"


def test_a_fresh_run_with_clip_starts_from_the_folders_weights(tmp_path):
    """It trained on a randomly initialised, frozen CLIP before 2026-12-06: the folder's weights never loaded."""
    from tests.test_interop import tiny_text_parts

    parts = tiny_text_parts(tmp_path)
    parts["text_encoder"].save_pretrained(tmp_path / "text_encoder", safe_serialization=True)
    parts["tokenizer"].save_pretrained(tmp_path / "tokenizer")
    config = run_config(tmp_path, "unet3d", "clip", tmp_path / "text_encoder", tmp_path / "tokenizer")
    assert cli.main(["train", config, "--no-progress"]) == 0
    saved = trained_text_weights(tmp_path / "unet3d_run")
    for k, v in load_file(tmp_path / "text_encoder" / "model.safetensors").items():
        assert torch.equal(saved[k], v), k


def test_runs_and_conversions_carry_the_encoder_files_and_outlive_the_folder(t5_folder, tmp_path, monkeypatch):
    """A model whose text encoder came from a folder needed that folder at its recorded (often relative) path to
    sample, resume or fine-tune, though its checkpoints carry the weights; a moved folder or another working directory
    made it unusable, and --resume compared the folder's spelling (before 2026-12-06)."""
    import shutil

    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit.pipelines import TextToVideo

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(t5_folder[0], work / "t5")
    monkeypatch.chdir(work)
    config = run_config(work, "dit", "t5", "t5")  # a relative folder, as the README's examples write it
    assert cli.main(["train", config, "--no-progress"]) == 0
    ckpt = latest_checkpoint(work / "dit_run")
    assert {"text_encoder/config.json", "text_encoder/tokenizer/tokenizer.json"} <= set(ckpt.manifest["files"])
    tiny_pipeline(work / "ms", diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    assert cli.main(["convert", "ms", "--to", "vdmkit", "--out", str(tmp_path / "ms_vdmkit")]) == 0
    shutil.move(work / "t5", tmp_path / "t5_moved")  # the folders are gone from where the runs recorded them
    shutil.rmtree(work / "ms")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with torch.no_grad():
        video = TextToVideo.from_pretrained(work / "dit_run")(["a red circle"], steps=2, seed=0)
        converted = TextToVideo.from_pretrained(tmp_path / "ms_vdmkit")(["a red panda"], frames=2, steps=2, seed=0)
    assert torch.isfinite(video).all() and torch.isfinite(converted).all()
    monkeypatch.chdir(work)  # the same config, its folder gone: the run continues from its checkpoint's copy
    doc = yaml.safe_load(Path(config).read_text())
    doc["train"]["steps"] = 3
    (work / "more.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["train", str(work / "more.yaml"), "--resume", "--no-progress"]) == 0
    doc["text"]["folder"] = str(tmp_path / "t5_moved") + "/"  # or the moved folder, spelt any way
    doc["train"]["steps"] = 4
    (work / "moved.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["train", str(work / "moved.yaml"), "--resume", "--no-progress"]) == 0
    assert latest_checkpoint(work / "dit_run").directory.name == "step_0000004"


def test_t5_in_float16_keeps_its_feed_forward_outputs_in_float32(t5_folder, tmp_path):
    """The whole encoder was cast to float16: with the large feed-forward outputs of T5 v1.1 / XXL (here: wo scaled up)
    the states came out 99.9% off or NaN, where transformers' own float16 load keeps `wo` in float32 (before
    2026-12-06)."""
    import shutil

    big = tmp_path / "big"
    shutil.copytree(t5_folder[0], big)
    state = load_file(big / "model.safetensors")
    save_file({k: v * 1e5 if ".wo." in k else v for k, v in state.items()}, big / "model.safetensors",
              metadata={"format": "pt"})
    ours = encoder(big, max_length=16)
    with torch.no_grad():
        full = ours(PROMPTS).tokens
        half = ours.to(torch.float16)(PROMPTS).tokens.float()
    wo = ours.model.encoder.block[0].layer[1].DenseReluDense.wo.weight
    assert wo.dtype == torch.float32 and ours.model.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float16
    assert torch.isfinite(half).all()
    assert float((half - full).abs().max() / full.abs().max()) < 0.01  # measured 0.0032, as transformers' own load


def test_tokenizers_of_another_model_and_limits_are_refused(t5_folder, tmp_path):
    """A CLIP encoder trained silently on a T5 tokenizer, a T5 encoder given CLIP's died in a TypeError traceback, a
    CLIP max_length past its positions failed at the first step, and a CLIPTextModelWithProjection folder (SDXL's
    second encoder) passed the check and failed to load (before 2026-12-06)."""
    from tests.test_interop import tiny_text_parts
    from vdmkit.conditioning.clip import ClipTextConfig, ClipTextEncoder

    parts = tiny_text_parts(tmp_path)
    parts["text_encoder"].save_pretrained(tmp_path / "clip", safe_serialization=True)
    parts["tokenizer"].save_pretrained(tmp_path / "clip_tok")
    t5 = t5_folder[0]
    with pytest.raises(ConfigError, match="is a Unigram tokenizer; a CLIP text encoder takes CLIP's own"):
        ClipTextEncoder(ClipTextConfig(folder=str(tmp_path / "clip"), tokenizer=str(t5), dim=16))
    with pytest.raises((ConfigError, CorruptCheckpointError), match="tokenizer"):
        T5TextEncoder(T5TextConfig(folder=str(t5), tokenizer=str(tmp_path / "clip_tok"), dim=16))
    with pytest.raises(ConfigError, match=r"text.max_length=100 exceeds the CLIP folder's max_position_embeddings \(77\)"):
        ClipTextEncoder(ClipTextConfig(folder=str(tmp_path / "clip"), tokenizer=str(tmp_path / "clip_tok"), dim=16,
                                       max_length=100))
    with pytest.raises(ConfigError, match=r"text.max_length must be a whole number in \[2, 1024\]"):
        T5TextConfig(folder=str(t5), dim=16, max_length=100_000)
    torch.manual_seed(0)
    projected = transformers.CLIPTextModelWithProjection(parts["text_encoder"].config).eval()
    projected.save_pretrained(tmp_path / "clip_proj", safe_serialization=True)
    assert any("text_projection" in k for k in load_file(tmp_path / "clip_proj" / "model.safetensors"))
    with skipped_init():
        ours = ClipTextEncoder(ClipTextConfig(folder=str(tmp_path / "clip_proj"), tokenizer=str(tmp_path / "clip_tok"),
                                              dim=16))
    ours.load_folder_weights()
    with torch.no_grad():
        want = projected(ours.tokenizer(["a red cat"], padding="max_length", max_length=77,
                                        return_tensors="pt").input_ids).last_hidden_state
        torch.testing.assert_close(ours(["a red cat"]).tokens, want, atol=1e-6, rtol=0)


def test_training_says_once_that_captions_are_cut(t5_folder, tmp_path):
    """Every training step printed the cut-caption warning again, each with other counts (before 2026-12-06)."""
    config = run_config(tmp_path, "dit", "t5", t5_folder[0], max_length=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["train", config, "train.steps=3", "--no-progress"]) == 0
    cut = [w for w in caught if issubclass(w.category, VocabularyWarning)]
    assert len(cut) == 1 and "said for the first batch only" in str(cut[0].message)
    records = [json.loads(line) for line in (tmp_path / "dit_run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["cut_caption_batches"] for r in records] == [1, 2, 3]  # counted, not repeated


def test_bad_clip_and_t5_folder_files_are_typed_errors_naming_the_file(t5_folder, tmp_path):
    """Before 2026-12-06 an HTML tokenizer.json or a torn tokenizer_config.json in a CLIP folder gave errors naming no
    file, and "num_hidden_layers": "2" (T5: "num_layers") a raw StrictDataclassFieldValidationError traceback."""
    import shutil

    from tests.test_interop import tiny_text_parts
    from vdmkit.conditioning.clip import ClipTextConfig, ClipTextEncoder

    parts = tiny_text_parts(tmp_path)
    good = tmp_path / "clip"
    parts["text_encoder"].save_pretrained(good, safe_serialization=True)
    parts["tokenizer"].save_pretrained(good)
    for name, text in (("tokenizer.json", "<html><body>Sign in</body></html>"), ("tokenizer_config.json", '{"model_')):
        bad = tmp_path / f"bad_{name}"
        shutil.copytree(good, bad)
        (bad / name).write_text(text)
        with pytest.raises(CorruptCheckpointError, match=f"bad_{name}/{name}' is not valid JSON"):
            ClipTextEncoder(ClipTextConfig(folder=str(bad), dim=16))
    for folder, key, build in ((good, "num_hidden_layers", lambda f: ClipTextEncoder(ClipTextConfig(folder=f, dim=16))),
                               (t5_folder[0], "num_layers", lambda f: T5TextEncoder(T5TextConfig(folder=f, dim=16)))):
        typed = tmp_path / f"typed_{key}"
        shutil.copytree(folder, typed)
        config = json.loads((typed / "config.json").read_text())
        (typed / "config.json").write_text(json.dumps({**config, key: "2"}))
        with pytest.raises(ConfigError, match=f"typed_{key}/config.json' is not a valid .* config: .*{key}"):
            build(str(typed))


def test_cut_caption_batches_counts_cut_captions_only():
    """Before 2026-12-06 batches with unknown words counted as cut, and a batch counted once per cut caption."""
    from types import SimpleNamespace

    from vdmkit.conditioning.pretrained import warn_cut
    from vdmkit.conditioning.text import WordTokenizer
    from vdmkit.training.train import DiffusionObjective

    words = WordTokenizer(["a", "red", "cat"], max_length=4)  # 3 words and the start token

    def encode(prompts, names=None):
        if prompts == ["t5"]:
            warn_cut("caption", "t5", 1, 8, "T5")
        return words(prompts)

    objective = SimpleNamespace(pipe=SimpleNamespace(encode=encode), cut_batches=0, vocabulary_said=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in (["a blue cat"], ["a red red cat", "cat cat cat cat"], ["a red"], ["t5"]):
            DiffusionObjective.encode(objective, batch)
    assert objective.cut_batches == 2 and len(caught) == 1 and "blue" in str(caught[0].message)
