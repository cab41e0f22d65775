"""Datasets: procedural moving shapes (more sources arrive with the data issue)."""

from vdmkit.data.shapes import ShapesConfig, ShapesDataset, render_shapes_sample

__all__ = ["ShapesConfig", "ShapesDataset", "render_shapes_sample"]
