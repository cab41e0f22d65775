"""Evaluation: metric maths (:mod:`.statistics`), feature extractors from local files (:mod:`.features`, one
module per network), LPIPS (:mod:`.perceptual`), the moving-shapes detector (:mod:`.shapes`) and classifier
(:mod:`.shapes_classifier`), the metric registry (:mod:`.metrics`), protocols (:mod:`.protocols`), sample
sources (:mod:`.sources`), the wiring (:mod:`.run`: :func:`evaluate`) and reports (:mod:`.report`).

Names are imported on first use (PEP 562), so ``vdmkit eval --help`` does not pay for torch.
"""

from vdmkit.lazy import lazy_exports

_EXPORTS = {
    "vdmkit.evaluation.features.c3d": ("load_c3d",),
    "vdmkit.evaluation.features.clip": ("clip_frame_embeddings", "clip_text_embeddings", "load_clip"),
    "vdmkit.evaluation.features.i3d": ("i3d_features", "iter_i3d_features", "load_i3d"),
    "vdmkit.evaluation.features.inception": ("inception_features", "iter_inception_features", "load_fid_inception"),
    "vdmkit.evaluation.perceptual": ("LPIPS", "load_lpips", "lpips", "lpips_per_frame"),
    "vdmkit.evaluation.shapes": ("ShapeDetection", "detect_shapes", "object_centres", "score_video"),
    "vdmkit.evaluation.shapes_classifier": ("load_shapes_classifier",),
    "vdmkit.evaluation.statistics": (
        "FeatureMoments", "accumulate_moments", "clip_score_torchmetrics", "clipsim", "frame_consistency_all_pairs",
        "frame_consistency_consecutive", "frame_consistency_vbench", "frechet_distance", "frechet_distance_from_stats",
        "frechet_distance_stylegan_v", "gaussian_stats", "inception_score", "inception_score_from_probs",
        "inception_score_tgan2", "kernel_distance", "kernel_distance_full", "kernel_distance_x1000",
        "merge_moments", "mmd2_unbiased", "moments", "psnr", "psnr_per_frame", "psnr_pooled", "ssim",
        "ssim_per_frame", "ValueRangeWarning"),
    "vdmkit.evaluation.metrics": ("METRICS",),
    "vdmkit.evaluation.protocols": ("CLIP_SAMPLINGS", "PROTOCOLS", "Protocol", "get_protocol", "plan_real_clips"),
    "vdmkit.evaluation.run": ("Evaluation", "evaluate"),
    "vdmkit.evaluation.report": ("compare_reports", "load_report", "write_report_html", "write_report_json"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
