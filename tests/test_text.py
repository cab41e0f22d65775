import pytest
import torch

from vdmkit.conditioning import WordEncoderConfig, WordTextEncoder
from vdmkit.errors import ConfigError, VocabularyWarning

VOCAB = ("a", "red", "blue", "circle", "moving", "left")


def encoder(**kw):
    torch.manual_seed(0)
    return WordTextEncoder(WordEncoderConfig(vocab=VOCAB, dim=32, layers=1, heads=2, **kw))


def test_encodes_shapes_and_pools():
    c = encoder()(["a red circle moving left", ""])
    assert c.tokens.shape == (2, 6, 32) and c.pooled.shape == (2, 32)
    assert c.mask.tolist()[1] == [True] + [False] * 5  # "" is <bos> only: the unconditional prompt


def test_pooling_first_or_masked_mean():
    first, mean = encoder(pooling="first"), encoder(pooling="mean")
    c1, c2 = first(["a red circle moving left", ""]), mean(["a red circle moving left", ""])
    torch.testing.assert_close(c1.pooled, c1.tokens[:, 0])
    torch.testing.assert_close(c2.pooled[0], c2.tokens[0].mean(0))  # every token is real in the first prompt
    torch.testing.assert_close(c2.pooled[1], c2.tokens[1, 0])  # padding is not averaged in
    with pytest.raises(ConfigError, match="pooling"):
        encoder(pooling="max")


def test_unknown_words_are_reported_not_dropped():
    enc = encoder()
    with pytest.warns(VocabularyWarning, match="triangle"):
        ids, mask = enc.tokenizer(["a red triangle"])
    assert mask.sum() == 4  # <bos> a red <unk>
    assert enc.tokenizer.unknown_words("A RED Triangle, ok") == ["triangle", "ok"]


def test_case_punctuation_cjk_and_emoji():
    enc = encoder()
    ids_a, _ = enc.tokenizer(["A Red, CIRCLE!"])
    ids_b, _ = enc.tokenizer(["a red circle"])
    assert torch.equal(ids_a, ids_b)
    with pytest.warns(VocabularyWarning):
        enc(["红色的圆 🔴 a red circle"])


def test_over_length_prompt_warns_with_count():
    enc = encoder(max_length=4)
    with pytest.warns(VocabularyWarning, match="last 2"):
        ids, _ = enc.tokenizer(["a red circle moving left"])
    assert ids.shape == (1, 4)


def test_bad_prompts():
    enc = encoder()
    with pytest.raises(ValueError, match="NUL"):
        enc(["a\x00red"])
    with pytest.raises(TypeError):
        enc([None])
    with pytest.raises(ConfigError, match="vocab"):
        WordTextEncoder(WordEncoderConfig(vocab=()))


def test_symbols_no_token_covers_are_reported_not_silently_dropped():
    """An all-emoji prompt sampled unconditionally with no word said (the README promises none is silently dropped)."""
    enc = encoder()
    assert enc.tokenizer.unknown_words("a red 😀 circle, moving left!") == ["😀"]  # punctuation is not reported
    with pytest.warns(VocabularyWarning, match="symbols no word token covers are dropped: 🟥⬆️ .*unconditionally"):
        ids, _ = enc.tokenizer(["🟥⬆️"])
    assert ids.shape == (1, 1)  # <bos> alone: the unconditional prompt
    # punctuation or invisible characters alone encode as "" too, and said nothing (the app sampled "!!!" unsaid)
    for prompt in ("!!!", "\u2014", "\u200b"):
        with pytest.warns(VocabularyWarning, match="has no words .*nothing is left, the prompt samples uncond"):
            assert enc.tokenizer([prompt])[0].shape == (1, 1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.tokenizer(["", " "])  # the unconditional prompt, as asked


def test_unknown_words_are_counted_among_the_words_encoded():
    """A 2000-word prompt warned of 2000 unknown words (a 22 KB line) and its sidecar listed them, though 15 were
    encoded and the rest dropped (2026-12-06)."""
    import warnings

    from vdmkit.conditioning.text import WordTokenizer

    tok = WordTokenizer(["red", "ball"], max_length=16)
    prompt = " ".join(["zebra"] * 2000)
    assert tok.unknown_words(prompt) == ["zebra"] * 15 and tok.cut_tokens(prompt) == 1985
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok([prompt])
    said = [str(w.message) for w in caught]
    assert any("15 word(s) not in the model's vocabulary" in m for m in said) and max(map(len, said)) < 300
    assert tok.cut_tokens("red ball") == 0
