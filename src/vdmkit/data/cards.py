"""The files a dataset card writes (vdmkit.curation.card), known by name here: curate's scan and training's listing
of a folder both leave them out, so a card kept at the dataset's root is never data."""

from __future__ import annotations

from pathlib import Path

PLOTS = ("duration", "resolution", "motion", "caption_length")

CARD_FILES = {"README.md": "# Dataset card", "index.html": "<!doctype html><meta charset='utf-8'><title>Dataset card"}


CARD_NAMES = frozenset({*CARD_FILES, "thresholds.yaml", *(f"{name}.png" for name in PLOTS)})


def is_card_file(path: Path) -> bool:
    """A file a dataset card wrote (its README, page, thresholds and histograms, beside a vdmkit card README): left
    out of a scan by name, so a card at the dataset's root hides no video and an earlier card's charts are no
    training images (a card folder's whole content was skipped, and only when given as --card)."""
    if path.name not in CARD_NAMES:
        return False
    readme = path.parent / "README.md"
    try:
        return readme.is_file() and readme.read_text(encoding="utf-8", errors="replace").startswith(
            CARD_FILES["README.md"])
    except OSError:
        return False
