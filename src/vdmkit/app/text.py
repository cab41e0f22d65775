"""Text typed by people into the app (prompts, rater ids, prompt files): one check for all of it, and whether a
words model can read a prompt."""

from __future__ import annotations

import unicodedata

MAX_PROMPT_CHARS = 500
# bidirectional embeddings, overrides and isolates: they reorder what is shown (a rater id shown as another's);
# right-to-left prompts carry them legitimately
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# letters that draw nothing: Hangul fillers, the blank Braille pattern
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible(value: str) -> str:
    """``value`` without what draws nothing: format characters (zero-width spaces, joiners, byte-order marks ...) and
    blank letters (a Hangul filler)."""
    return "".join(c for c in value if unicodedata.category(c) != "Cf" and c not in BLANK_LETTERS)


def shows_something(value: str) -> bool:
    """Whether ``value`` draws anything: a character that is neither invisible, blank, a space nor a combining mark
    with nothing to combine with."""
    return any(not c.isspace() and not unicodedata.category(c).startswith("M") for c in visible(value))


def check_text(value, what: str, limit: int, hint: str, *, identifier: bool = False) -> str:
    """``value`` stripped: a string of at most ``limit`` characters that shows something (a zero-width space or a
    Hangul filler alone was taken before 2026-12-06), without control characters (NUL, tabs, newlines). An
    ``identifier`` (a rater id) also refuses the bidirectional controls that reorder what is shown, and is kept
    without its invisible characters, so that "alice" and "alice" + a zero-width space are one rater. ``hint`` says
    what to type instead of nothing."""
    if not isinstance(value, str) or not shows_something(value):
        invisible = isinstance(value, str) and value.strip()
        raise ValueError(f"{what} is empty{' (only invisible characters)' if invisible else ''}; {hint}")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value)} characters; the limit is {limit}")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"{what} contains control characters (NUL, tabs, newlines ...); use plain text")
    if identifier and BIDI_CONTROLS.intersection(value):
        raise ValueError(f"{what} contains bidirectional control characters (U+202A-U+202E, U+2066-U+2069), which "
                         "change the order it is shown in; use plain text")
    return visible(value).strip() if identifier else value


def check_words(config, prompt: str) -> None:
    """A model whose text encoder reads words (the built-in one) refuses a prompt without any, or with none it knows
    among the words it reads (the first ``text.max_length - 1``): "!!!", an emoji or words all outside its vocabulary
    encode to nothing it was trained on, and sampled so, said only when the job had run (before 2026-12-06). The app's
    /api/generate and `vdmkit human-eval create` both ask it."""
    from vdmkit.conditioning.text import split_words

    if config.text_encoder != "words":
        return
    words = split_words(prompt)
    if not words:
        raise ValueError(f"prompt {prompt!r} has no words: this model encodes words (letters and digits), not "
                         "punctuation or symbols; describe the video, e.g. 'a slow red circle moving right'")
    vocabulary = set(config.text.vocab)
    read = config.text.max_length - 1  # after <bos>
    if not vocabulary or vocabulary.intersection(words[:read]):
        return
    later = [w for w in dict.fromkeys(words[read:]) if w in vocabulary]
    if later:  # the known words are there, past what the model reads: it said none was in its vocabulary
        shown = ", ".join(map(repr, later[:6])) + (" ..." if len(later) > 6 else "")
        raise ValueError(f"prompt {prompt!r}: none of its first {read} words (the most this model reads) is in its "
                         f"vocabulary; {shown} come after them: put them first")
    known = ", ".join(sorted(vocabulary - {"<pad>", "<bos>", "<unk>"})[:12])
    raise ValueError(f"prompt {prompt!r}: none of its words is in this model's vocabulary of {len(vocabulary)} (it "
                     f"knows e.g. {known}); describe the video in those words")
