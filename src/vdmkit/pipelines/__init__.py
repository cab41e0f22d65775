"""Pipelines: a model's parts loaded and saved as one checkpoint (base.py), requests validated once (request.py),
and the tasks on top: text-to-video; render.py writes a sample with its metadata."""

from vdmkit.pipelines.base import Pipeline, open_model
from vdmkit.pipelines.config import LatentSpec, PipelineConfig, pipeline_config
from vdmkit.pipelines.default import default_model
from vdmkit.pipelines.request import SampleRequest, make_request
from vdmkit.pipelines.text2video import TextToVideo

__all__ = ["LatentSpec", "Pipeline", "PipelineConfig", "SampleRequest", "TextToVideo", "default_model", "make_request",
           "open_model", "pipeline_config"]
