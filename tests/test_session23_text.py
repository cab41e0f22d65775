"""CLIP / T5 text conditioning (session 23): a diffusers folder's tokenizer_config.json model_max_length checked and
named, cut negative prompts named and recorded, typed special tokens warned about, the frozen encoders outside a
caller's autocast (training's), a tokenizer without a padding token refused at load."""

import json
import shutil
import warnings

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from vdmkit.errors import ConfigError, VocabularyWarning

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline  # noqa: E402
from tests.test_text_encoders import PROMPTS, encoder, run_config, save_t5  # noqa: E402


@pytest.fixture(scope="module")
def ms_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s23text") / "ms"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    return folder


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s23t5") / "t5"
    save_t5(folder)
    return folder


@pytest.fixture(scope="module")
def t5_big(t5_folder, tmp_path_factory):
    """The tiny T5 with feed-forward outputs as large as T5 v1.1 / XXL's: float16 overflows on them."""
    big = tmp_path_factory.mktemp("s23t5big") / "t5"
    shutil.copytree(t5_folder, big)
    state = load_file(big / "model.safetensors")
    save_file({k: v * 1e5 if ".wo." in k else v for k, v in state.items()}, big / "model.safetensors",
              metadata={"format": "pt"})
    return big


def edited(folder, tmp_path, file, **changes):
    """A copy of ``folder`` with ``changes`` written into its JSON ``file``."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    path = copy / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return copy


def clip(folder):
    from vdmkit.conditioning.clip import ClipTextConfig, ClipTextEncoder

    enc = ClipTextEncoder(ClipTextConfig(folder=str(folder / "text_encoder"), tokenizer=str(folder / "tokenizer"),
                                         dim=16))
    enc.load_folder_weights()
    return enc


@pytest.mark.parametrize("value", [77.0, None, "77", True, 100, 1])
def test_a_bad_model_max_length_is_refused_naming_the_file_and_key(ms_folder, tmp_path, value):
    """77.0 loaded, then every sample died in the tokenizer with a raw TypeError; null and "77" named neither file
    nor key; 100 (past CLIP's 77 positions) blamed a text.max_length the folder's user never wrote (before
    2026-12-06)."""
    from vdmkit.pipelines import TextToVideo

    folder = edited(ms_folder, tmp_path, "tokenizer/tokenizer_config.json", model_max_length=value)
    with pytest.raises(ConfigError, match=r"tokenizer/tokenizer_config.json': model_max_length must be"):
        TextToVideo.from_pretrained(folder)


def test_transformers_no_limit_model_max_length_reads_as_the_encoders_positions(ms_folder, tmp_path):
    from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

    from vdmkit.pipelines import TextToVideo

    folder = edited(ms_folder, tmp_path, "tokenizer/tokenizer_config.json", model_max_length=VERY_LARGE_INTEGER)
    with pytest.warns(UserWarning, match="model_max_length .* means no limit; .* 77 positions"):
        pipe = TextToVideo.from_pretrained(folder)
    assert pipe.text_encoder.cfg.max_length == 77


@pytest.mark.parametrize("value", [77.0, "77", True])
def test_clip_and_t5_configs_take_whole_numbers_only(t5_folder, value):
    from vdmkit.conditioning.clip import ClipTextConfig
    from vdmkit.conditioning.t5 import T5TextConfig

    with pytest.raises(ConfigError, match="text.max_length must be a whole number"):
        ClipTextConfig(folder="x", max_length=value)
    with pytest.raises(ConfigError, match="text.max_length must be a whole number"):
        T5TextConfig(folder="x", max_length=value)
    with pytest.raises(ConfigError, match="text.dim must be a whole number"):
        ClipTextConfig(folder="x", dim=16.0)


def test_a_tokenizer_without_a_padding_token_is_refused_when_the_encoder_is_built(ms_folder, t5_folder, tmp_path):
    """It loaded, then every prompt failed with transformers' Python advice, naming no file (before 2026-12-06)."""
    from vdmkit.conditioning.t5 import T5TextConfig, T5TextEncoder

    folder = edited(ms_folder, tmp_path, "tokenizer/tokenizer_config.json", pad_token=None)
    with pytest.raises(ConfigError, match=r"tokenizer' has no padding token .*pad_token.*\"!\" for SD 2"):
        clip(folder)
    t5 = edited(t5_folder, tmp_path, "tokenizer_config.json", pad_token=None)
    with pytest.raises(ConfigError, match=r"t5' has no padding token .*\"<pad>\" for T5"):
        T5TextEncoder(T5TextConfig(folder=str(t5), dim=16))


def caught_messages(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, VocabularyWarning)]


def test_a_cut_negative_prompt_is_named_and_recorded(ms_folder, tmp_path):
    """It was "1 prompt(s) longer than 77 CLIP tokens were cut; tokens dropped per prompt index: {1: 325}" (a batch
    row) and the sidecar recorded no cut (before 2026-12-06)."""
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines.render import render_sample
    from vdmkit.pipelines.request import make_request

    pipe = TextToVideo.from_pretrained(ms_folder)
    negative = "blurry ugly " * 40
    said = caught_messages(lambda: pipe.conditions(["a red cat"], [negative]))
    assert len(said) == 1 and said[0].startswith("negative prompt 'blurry ugly") and "tokens were cut" in said[0]
    assert "index" not in said[0]
    cut = pipe.text_encoder.cut_tokens(negative)
    assert cut > 0 and f": {cut} tokens were cut" in said[0]
    request = make_request(pipe.config, ["a red cat"], frames=2, height=16, width=16, steps=2,
                           negative_prompt=negative, output="latents")
    meta = render_sample(pipe, request, tmp_path / "a.safetensors").metadata
    assert meta["prompt_tokens_cut"] == 0 and meta["negative_prompt_tokens_cut"] == cut


def test_a_cut_prompt_of_a_batch_is_quoted_not_numbered(t5_folder):
    """``sample --prompts``: the file's 2nd prompt was "prompt index 0" (its row in a one-video batch)."""
    ours = encoder(t5_folder, max_length=8)
    long = "a red circle moving left fast slow up down"  # 9 words + </s>: 2 tokens past 8
    said = caught_messages(lambda: ours([long]))
    assert said == [f"prompt {long[:40]!r}... is longer than 8 T5 tokens: 2 tokens were cut"]


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_special_tokens_spelled_in_a_prompt_are_named(ms_folder, t5_folder, kind):
    """They were encoded as control tokens without a word: CLIP's pooled output then ignored the rest of the prompt
    (before 2026-12-06). They still are, as transformers and diffusers encode them: the warning names them."""
    if kind == "clip":
        ours, prompt, tokens = clip(ms_folder), "a red <|endoftext|> cat", "<|endoftext|>"
        with torch.no_grad():
            pooled = ours([prompt, "a red"]).pooled
        assert torch.equal(pooled[0], pooled[1])  # what the warning is for
    else:
        ours, prompt, tokens = encoder(t5_folder, max_length=24), "a red </s> <pad> up <unk>", "</s>, <pad>, <unk>"
    said = caught_messages(lambda: ours([prompt]))
    assert len(said) == 1 and f"spells the {kind.upper()} tokenizer's special token(s) {tokens}, encoded" in said[0]
    assert not any("special token" in m for m in caught_messages(lambda: ours(["a red <endoftext> /s pad <|x|>"])))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_frozen_encoders_compute_outside_a_callers_autocast(ms_folder, t5_big, dtype):
    """Under float16 autocast (training's on devices without bf16) T5's feed-forward overflowed (inf / NaN); under
    bf16 the features were 2.4% off the fp32 ones sampling uses (before 2026-12-06)."""
    for ours, prompts in ((encoder(t5_big, max_length=16), PROMPTS), (clip(ms_folder), ["a red cat", ""])):
        with torch.no_grad():
            full = ours(prompts)
            with torch.autocast("cpu", dtype=dtype):
                cast = ours(prompts)
        assert torch.isfinite(cast.tokens).all()
        assert torch.equal(cast.tokens, full.tokens) and torch.equal(cast.pooled, full.pooled)


def test_training_under_float16_autocast_keeps_t5_finite(t5_big, tmp_path, monkeypatch):
    """``loss is nan at step 0; lower train.lr`` on float16-autocast devices (T4, V100, MPS) before 2026-12-06."""
    import vdmkit.device as device
    from vdmkit import cli

    monkeypatch.setattr(device, "low_precision_dtype", lambda d: torch.float16)
    config = run_config(tmp_path, "dit", "t5", t5_big)
    doc = yaml.safe_load(open(config))
    doc["train"].update(precision="bf16", steps=1, checkpoint_every=1)
    with open(config, "w") as f:
        yaml.safe_dump(doc, f)
    assert cli.main(["train", config, "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "dit_run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics if "loss" in m)
