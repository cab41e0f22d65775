"""vdmkit: a toolkit for video diffusion models.

The pipelines are here by name, imported when first used (``import vdmkit`` stays light for the CLI):
``from vdmkit import TextToVideo, default_model`` is ``from vdmkit.pipelines import ...``."""

__version__ = "0.1.0"

_PIPELINES = ("TextToVideo", "default_model", "image_to_video", "interpolate", "extend", "upscale", "edit", "invert",
              "edit_inverted", "long_video", "run_cascade", "load_cascade", "open_model", "make_request")
__all__ = ["__version__", *_PIPELINES]


def __getattr__(name: str):
    if name in _PIPELINES:
        import vdmkit.pipelines

        return getattr(vdmkit.pipelines, name)
    raise AttributeError(f"module 'vdmkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PIPELINES))
