"""Data curation: scan a folder into a manifest, split scenes, score motion, filter, caption, describe.

``curate(root, out)`` is the Python entry point; ``vdmkit curate DIR --out manifest.jsonl`` the CLI.
Heavy dependencies (OpenCV, matplotlib) are imported inside the functions that need them; the names below are
imported on first use, so registering the CLI command imports nothing heavy.
"""

from vdmkit.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "vdmkit.curation.config": ("CurateConfig", "load_curate_config"),
    "vdmkit.curation.hooks": ("CAPTIONERS", "SCORERS", "BasicCaptioner", "Captioner", "Scorer"),
    "vdmkit.curation.run": ("curate", "scan_file"),
    "vdmkit.curation.scores": ("black_level", "motion_score", "scene_cuts"),
})
