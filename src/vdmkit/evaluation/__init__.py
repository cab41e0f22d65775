"""Evaluation: metric maths (:mod:`.statistics`), feature extractors from local files (:mod:`.features`)
and the moving-shapes detector (:mod:`.shapes`)."""

from vdmkit.evaluation.features import (
    clip_frame_embeddings,
    clip_text_embeddings,
    i3d_features,
    inception_features,
    iter_i3d_features,
    iter_inception_features,
    load_clip,
    load_fid_inception,
    load_i3d,
)
from vdmkit.evaluation.shapes import ShapeDetection, detect_shapes, score_video
from vdmkit.evaluation.statistics import (
    FeatureMoments,
    accumulate_moments,
    clip_score_torchmetrics,
    clipsim,
    frame_consistency_all_pairs,
    frame_consistency_consecutive,
    frame_consistency_vbench,
    frechet_distance,
    frechet_distance_from_stats,
    frechet_distance_stylegan_v,
    gaussian_stats,
    inception_score,
    inception_score_from_probs,
    inception_score_tgan2,
    kernel_distance,
    kernel_distance_full,
    kernel_distance_x1000,
    merge_moments,
    mmd2_unbiased,
    moments,
    psnr,
    psnr_per_frame,
    psnr_pooled,
    ssim,
    ssim_per_frame,
)

__all__ = [
    "accumulate_moments", "clip_frame_embeddings", "clip_score_torchmetrics", "clip_text_embeddings",
    "clipsim", "detect_shapes", "FeatureMoments", "frame_consistency_all_pairs",
    "frame_consistency_consecutive", "frame_consistency_vbench", "frechet_distance",
    "frechet_distance_from_stats", "frechet_distance_stylegan_v", "gaussian_stats", "i3d_features",
    "inception_features", "inception_score", "inception_score_from_probs", "inception_score_tgan2",
    "iter_i3d_features", "iter_inception_features", "kernel_distance", "kernel_distance_full",
    "kernel_distance_x1000", "load_clip", "load_fid_inception", "load_i3d", "merge_moments", "mmd2_unbiased",
    "moments", "psnr", "psnr_per_frame", "psnr_pooled", "score_video", "ShapeDetection", "ssim",
    "ssim_per_frame",
]
