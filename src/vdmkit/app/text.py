"""Text typed by people into the app (prompts, rater ids, prompt files): one check for all of it."""

from __future__ import annotations

import unicodedata

MAX_PROMPT_CHARS = 500
# bidirectional embeddings, overrides and isolates: they reorder what is shown (a rater id shown as another's)
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def visible(value: str) -> str:
    """``value`` without its invisible format characters (zero-width spaces, joiners, byte-order marks ...)."""
    return "".join(c for c in value if unicodedata.category(c) != "Cf")


def check_text(value, what: str, limit: int, hint: str) -> str:
    """``value`` stripped: a string of at most ``limit`` characters with something visible in it (a zero-width space
    alone was taken before 2026-12-06), and without control characters (NUL, tabs, newlines) or the bidirectional
    ones that reorder what is shown. ``hint`` says what to type instead of nothing."""
    if not isinstance(value, str) or not visible(value).strip():
        invisible = isinstance(value, str) and value.strip()
        raise ValueError(f"{what} is empty{' (only invisible characters)' if invisible else ''}; {hint}")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value)} characters; the limit is {limit}")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"{what} contains control characters (NUL, tabs, newlines ...); use plain text")
    if BIDI_CONTROLS.intersection(value):
        raise ValueError(f"{what} contains bidirectional control characters (U+202A-U+202E, U+2066-U+2069), which "
                         "change the order it is shown in; use plain text")
    return value
