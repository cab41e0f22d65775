"""Evaluation: the moving-shapes detector (FVD, FID and friends arrive with the evaluation issue)."""

from vdmkit.evaluation.shapes import ShapeDetection, detect_shapes, score_video

__all__ = ["ShapeDetection", "detect_shapes", "score_video"]
