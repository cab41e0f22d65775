"""Feature networks for the metrics, loaded from local files only (nothing is ever downloaded); one module
per network, and :mod:`.weights` for what they share.

===================  ==========================================  ======================================
extractor            file (put it in your weights folder)        reference preprocessing
===================  ==========================================  ======================================
I3D (FVD, KVD)       ``i3d_torchscript.pt`` (StyleGAN-V)         uint8 ``(B, 3, T, H, W)``, T >= 10;
:mod:`.i3d`                                                      the TorchScript rescales to [-1, 1] and
                                                                 resizes to 224 (``rescale=resize=True``)
Inception (FID, IS)  ``pt_inception-2015-12-05-6726825d.pth``    [0, 1] -> bilinear 299 (align_corners
:mod:`.inception`    (pytorch-fid)                               False) -> [-1, 1]; pool3 2048-d
CLIP (CLIPSIM)       a transformers folder (config.json,         shorter side 224 bicubic, centre crop
:mod:`.clip`         model.safetensors, tokenizer files)         224, /255, CLIP mean/std; text <= 77
C3D (UCF-101 IS)     ``conv3d_deepnetA_ucf.npz`` + ``mean2.npz``  BGR x 128, bilinear 112 (align_corners
:mod:`.c3d`          (TGANv2)                                    True), minus the mean; fc8 logits
===================  ==========================================  ======================================

Every loader checks the file's sha256 against the published value before loading and returns a
:class:`WeightRecord` for the report. A missing file raises :class:`CorruptCheckpointError` saying
which file to get and where to put it. Videos are ``(B, C, T, H, W)`` float in [-1, 1].

The names below are re-exported so that ``from vdmkit.evaluation.features import load_i3d`` keeps working.
"""

from vdmkit.evaluation.features.c3d import (
    C3D,
    C3D_CLASSES,
    C3D_FRAMES,
    C3D_MEAN,
    C3D_UCF101,
    c3d_input,
    c3d_log_probs,
    c3d_reference_shapes,
    load_c3d,
)
from vdmkit.evaluation.features.clip import (
    CLIP_MAX_TOKENS,
    CLIP_MEAN,
    CLIP_SIZE,
    CLIP_STD,
    CLIP_WEIGHTS,
    ClipModel,
    clip_frame_embeddings,
    clip_input,
    clip_text_embeddings,
    load_clip,
)
from vdmkit.evaluation.features.i3d import (
    I3D_DIM,
    I3D_MIN_FRAMES,
    I3D_TORCHSCRIPT,
    i3d_features,
    i3d_input,
    iter_i3d_features,
    load_i3d,
)
from vdmkit.evaluation.features.inception import (
    INCEPTION_DIM,
    INCEPTION_SIZE,
    PT_INCEPTION,
    FIDInceptionV3,
    inception_features,
    inception_input,
    iter_inception_features,
    load_fid_inception,
)
from vdmkit.evaluation.features.weights import (
    Extractor,
    WeightFile,
    WeightRecord,
    check_clip_pair,
    iter_batches,
    locate_weight_file,
    read_torch_state_dict,
    verify_weight_file,
)

__all__ = (
    "C3D",
    "C3D_CLASSES",
    "C3D_FRAMES",
    "C3D_MEAN",
    "C3D_UCF101",
    "CLIP_MAX_TOKENS",
    "CLIP_MEAN",
    "CLIP_SIZE",
    "CLIP_STD",
    "CLIP_WEIGHTS",
    "I3D_DIM",
    "I3D_MIN_FRAMES",
    "I3D_TORCHSCRIPT",
    "INCEPTION_DIM",
    "INCEPTION_SIZE",
    "PT_INCEPTION",
    "ClipModel",
    "Extractor",
    "FIDInceptionV3",
    "WeightFile",
    "WeightRecord",
    "c3d_input",
    "c3d_log_probs",
    "c3d_reference_shapes",
    "check_clip_pair",
    "clip_frame_embeddings",
    "clip_input",
    "clip_text_embeddings",
    "i3d_features",
    "i3d_input",
    "inception_features",
    "inception_input",
    "iter_batches",
    "iter_i3d_features",
    "iter_inception_features",
    "load_c3d",
    "load_clip",
    "load_fid_inception",
    "load_i3d",
    "locate_weight_file",
    "read_torch_state_dict",
    "verify_weight_file",
)
