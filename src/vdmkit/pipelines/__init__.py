"""Pipelines: a model's parts loaded and saved as one checkpoint (base.py), requests validated once (request.py),
the tasks on top: text-to-video, training-free editing (editing.py: SDEdit, DDIM inversion with attention reuse) and long
videos in windows (long_video.py), conditioned generation (conditioned.py: image-to-video, interpolation, extension,
super-resolution) and cascades of them (cascade.py); render.py writes a sample with its metadata; Stable Diffusion
folders inflated to video models (inflate.py)."""

from vdmkit.pipelines.base import Pipeline, open_model
from vdmkit.pipelines.cascade import CascadeConfig, StageConfig, load_cascade, run_cascade
from vdmkit.pipelines.config import LatentSpec, PipelineConfig, pipeline_config
from vdmkit.pipelines.conditioned import (
    ConditionedRequest,
    conditioned_request,
    extend,
    image_to_video,
    interpolate,
    run_conditioned,
    sample_conditioned,
    upscale,
)
from vdmkit.pipelines.default import default_model
from vdmkit.pipelines.editing import Edited, Inversion, edit, edit_inverted, invert
from vdmkit.pipelines.inflate import inflate
from vdmkit.pipelines.long_video import LongRequest, long_request, long_video
from vdmkit.pipelines.request import SampleRequest, make_request
from vdmkit.pipelines.text2video import TextToVideo

__all__ = ["CascadeConfig", "ConditionedRequest", "Edited", "Inversion", "LatentSpec", "LongRequest", "Pipeline",
           "PipelineConfig", "SampleRequest", "StageConfig", "TextToVideo", "conditioned_request", "default_model", "edit",
           "edit_inverted", "extend", "image_to_video", "inflate", "interpolate", "invert", "load_cascade",
           "long_request", "long_video", "make_request", "open_model", "pipeline_config", "run_cascade",
           "run_conditioned", "sample_conditioned", "upscale"]
