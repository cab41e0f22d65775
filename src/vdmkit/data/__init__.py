"""Datasets: procedural moving shapes, and real video-text data (folder + captions, UCF-101, MSR-VTT,
WebDataset shards) served in aspect/length buckets with joint image+video batches."""

from vdmkit.data.loader import VideoTextDataset, build_dataset, data_config
from vdmkit.data.shapes import ShapesConfig, ShapesDataset, render_shapes_sample
from vdmkit.data.video_text import VideoDataConfig, list_samples

__all__ = ["ShapesConfig", "ShapesDataset", "VideoDataConfig", "VideoTextDataset", "build_dataset", "data_config",
           "list_samples", "render_shapes_sample"]
