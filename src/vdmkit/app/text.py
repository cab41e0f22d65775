"""Text typed by people into the app (prompts, rater ids, prompt files): one check for all of it."""

from __future__ import annotations

import unicodedata

MAX_PROMPT_CHARS = 500


def check_text(value, what: str, limit: int, hint: str) -> str:
    """``value`` stripped: a non-empty string of at most ``limit`` characters without control characters (NUL, tabs,
    newlines). ``hint`` says what to type instead of nothing."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is empty; {hint}")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value)} characters; the limit is {limit}")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"{what} contains control characters (NUL, tabs, newlines ...); use plain text")
    return value
