"""Data curation: scan a folder into a manifest, split scenes, score motion, filter, caption, describe.

``curate(root, out)`` is the Python entry point; ``vdmkit curate DIR --out manifest.jsonl`` the CLI.
Heavy dependencies (OpenCV, matplotlib) are imported inside the functions that need them.
"""

from vdmkit.curation.config import CurateConfig, load_curate_config
from vdmkit.curation.hooks import CAPTIONERS, SCORERS, BasicCaptioner, Captioner, Scorer
from vdmkit.curation.run import curate, scan_file
from vdmkit.curation.scores import black_level, motion_score, scene_cuts

__all__ = ["CAPTIONERS", "SCORERS", "BasicCaptioner", "Captioner", "CurateConfig", "Scorer", "black_level", "curate",
           "load_curate_config", "motion_score", "scan_file", "scene_cuts"]
