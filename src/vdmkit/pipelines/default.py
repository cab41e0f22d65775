"""The bundled default model: the one place that says where it is, so `vdmkit sample` without ``--model``, `make
demo` and the app's model list find it the same way.

It is a vdmkit checkpoint trained here by ``configs/default.yaml`` (moving shapes, 16 frames of 32x32) and shipped
as package data; its weights' sha256 is pinned below, so a replaced file is refused rather than sampled.
"""

from __future__ import annotations

from pathlib import Path

from vdmkit.errors import CorruptCheckpointError
from vdmkit.io.checkpoint import WEIGHTS, Checkpoint, sha256_file

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "default"
DEFAULT_SHA256 = "2bd017ff3242863e9a0d2e45a268665c3c495599d73900ac49dc08363183abfd"  # of model.safetensors
# its consistency adapter (LCM-LoRA, configs/distill_lora.yaml): 4 lcm steps without guidance, `vdmkit sample --fast`
DEFAULT_LCM = DEFAULT_MODEL / "lcm_lora.safetensors"
DEFAULT_LCM_SHA256 = "29a6095e694660beb563bf575c47e1b203e98b65ab6b936c09f0fbb187acd77d"


def default_model() -> Path | None:
    """The checkpoint directory of the default model shipped with vdmkit, or None when this install has none.

    CorruptCheckpointError when the shipped files are not the pinned ones (their sha256 is checked again, against
    the manifest, when they are loaded)."""
    if not (DEFAULT_MODEL / "manifest.json").is_file():
        return None
    recorded = Checkpoint(DEFAULT_MODEL).sha256(WEIGHTS)
    if DEFAULT_SHA256 and recorded != DEFAULT_SHA256:
        raise CorruptCheckpointError(f"the bundled default model at {str(DEFAULT_MODEL)!r} records weights "
                                     f"{recorded[:12]}..., not the pinned {DEFAULT_SHA256[:12]}...: reinstall vdmkit")
    return DEFAULT_MODEL


def default_lcm_adapter() -> Path | None:
    """The bundled default's consistency adapter (apply it with ``pipe.load_lora``: the pipeline then samples with lcm,
    4 steps, guidance 1), or None when this install has none; CorruptCheckpointError when it is not the pinned file."""
    if not DEFAULT_LCM.is_file():
        return None
    found = sha256_file(DEFAULT_LCM)
    if found != DEFAULT_LCM_SHA256:
        raise CorruptCheckpointError(f"the bundled consistency adapter {str(DEFAULT_LCM)!r} has sha256 {found[:12]}..., "
                                     f"not the pinned {DEFAULT_LCM_SHA256[:12]}...: reinstall vdmkit")
    return DEFAULT_LCM


def bundled_adapter(folder) -> Path | None:
    """The bundled consistency adapter when ``folder`` is the bundled default model's (its pin checked:
    CorruptCheckpointError), else None: it was distilled for those weights only."""
    return default_lcm_adapter() if Path(folder).resolve() == DEFAULT_MODEL else None


def fast_adapters(model, loras: list[str] | None) -> list[str]:
    """`vdmkit sample --fast`: the default's consistency adapter first, then ``loras``; ValueError for another model
    or an install without it."""
    keyword = model == "default" and not Path(model).exists()  # the bundled model's name (cascades, distill, app)
    if model is not None and not keyword and Path(model).resolve() != DEFAULT_MODEL:
        raise ValueError("--fast applies the bundled default model's consistency adapter; for another model distil "
                         "one (`vdmkit distill MODEL --config configs/distill_lora.yaml`) and give it as --lora")
    adapter = default_lcm_adapter()
    if adapter is None:
        raise ValueError(f"--fast: this install has no consistency adapter at {str(DEFAULT_LCM)!r}")
    from vdmkit.backbones.lora import parse_lora_argument

    for value in loras or []:  # said as "--lora X gives the same adapter as --lora X" (sweep 26A)
        if Path(parse_lora_argument(value)[0]).resolve() == adapter.resolve():
            raise ValueError(f"--fast applies the consistency adapter {str(adapter)!r} already: drop --lora {value!r} "
                             "(or drop --fast and give it as --lora PATH:SCALE for another scale)")
    return [str(adapter), *(loras or [])]
