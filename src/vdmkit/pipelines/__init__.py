"""Pipelines: a model's parts loaded and saved as one checkpoint (base.py), requests validated once (request.py),
the tasks on top: text-to-video; render.py writes a sample with its metadata; Stable Diffusion folders inflated to
video models (inflate.py)."""

from vdmkit.pipelines.base import Pipeline, open_model
from vdmkit.pipelines.config import LatentSpec, PipelineConfig, pipeline_config
from vdmkit.pipelines.default import default_model
from vdmkit.pipelines.inflate import inflate
from vdmkit.pipelines.request import SampleRequest, make_request
from vdmkit.pipelines.text2video import TextToVideo

__all__ = ["LatentSpec", "Pipeline", "PipelineConfig", "SampleRequest", "TextToVideo", "default_model", "inflate",
           "make_request", "open_model", "pipeline_config"]
