"""A small video classifier for the moving-shapes data: the feature network of the shapes FVD.

I3D knows nothing about 32-pixel coloured shapes, so the shapes benchmark measures distances in the
feature space of a network trained here on the shapes data itself. It is a 3D conv net on
``(B, 3, 16, 32, 32)`` clips with four heads (colour, shape, direction, speed); its 64-d pooled
features feed the Frechet and kernel distances, and the joint colour x shape x direction posterior
feeds an Inception-Score-like number. The weights ship with the package (``weights/``, safetensors,
sha256 pinned below) and this module is their training recipe::

    python -m vdmkit.evaluation.shapes_classifier --out src/vdmkit/evaluation/weights/shapes_classifier.safetensors
    vdmkit eval train-classifier --out shapes_classifier.safetensors   # the same, from the CLI
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    SHAPES,
    SPEEDS,
    ShapesConfig,
    render_shapes_sample,
)
from vdmkit.errors import CheckpointMismatchError, ConstraintError
from vdmkit.video import check_video

HEADS = {"colour": tuple(COLOURS), "shape": SHAPES, "direction": tuple(DIRECTIONS), "speed": tuple(SPEEDS)}
JOINT_HEADS = ("colour", "shape", "direction")  # the "classes" of the shapes IS: 8 x 3 x 8 = 192
INPUT_SIZE = 32
MIN_FRAMES = 4  # two temporal stride-2 convolutions
FEATURE_DIM = 64
WIDTHS = (16, 32, FEATURE_DIM)
WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = "shapes_classifier.safetensors"
# the shipped file: made by the recipe below with its defaults (2000 steps, 252 s on one busy CPU thread);
# held-out accuracy colour 1.000, shape 0.968, direction 0.999, speed 0.999 (1024 clips, all backgrounds).
# Re-running the recipe (1 thread, torch 2.13 CPU) gives bit-identical tensors; the shipped file's bytes
# differ from a new one's only by the "train_seconds" its metadata records (new files leave it out).
SHIPPED_SHA256 = "6930026cea8847511c36688301128d3880d77bf9ebcd4968d1246c7f04da0138"
SHIPPED_BYTES = 290_764
# training recipe defaults (the shipped file was made with exactly these; see the file's metadata)
TRAIN_STEPS = 2000
TRAIN_BATCH = 32
TRAIN_LR = 3e-3
TRAIN_SEED = 7
TRAIN_DATA_SEED = 1_000_000  # far from the seeds the protocols draw real and fake sets from
NOISE_STD_MAX = 0.1  # augmentation: Gaussian pixel noise of std U(0, 0.1), so blurry or noisy samples stay in range


class ShapesClassifier(nn.Module):
    """``forward(x (B, 3, T, 32, 32) in [-1, 1]) -> {head: (B, classes) logits}``; ``features`` is the
    ``(B, 64)`` pooled embedding used for the shapes FVD."""

    def __init__(self):
        super().__init__()
        c1, c2, c3 = WIDTHS
        self.conv1 = nn.Conv3d(3, c1, 3, stride=(1, 2, 2), padding=1)
        self.conv2 = nn.Conv3d(c1, c2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv3d(c2, c3, 3, stride=2, padding=1)
        self.norms = nn.ModuleList([nn.GroupNorm(4, c) for c in WIDTHS])
        self.heads = nn.ModuleDict({name: nn.Linear(c3, len(classes)) for name, classes in HEADS.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip((self.conv1, self.conv2, self.conv3), self.norms):
            x = F.relu(norm(conv(x)))          # (B, 16, T, 16, 16) -> (B, 32, T/2, 8, 8) -> (B, 64, T/4, 4, 4)
        return x.amax(dim=(3, 4)).mean(dim=2)  # (B, 64): max over space (where the object is), mean over time

    def classify(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.classify(self.features(x))


def classifier_input(videos: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 3, T, 32, 32)``: frames of another size are resized with
    antialiased bilinear interpolation; T >= 4."""
    check_video(videos, channels=3, name="shapes-classifier input video")
    b, c, t, h, w = videos.shape
    if t < MIN_FRAMES:
        raise ConstraintError(f"the shapes classifier needs at least {MIN_FRAMES} frames, got T={t}")
    if (h, w) == (INPUT_SIZE, INPUT_SIZE):
        return videos.float()
    frames = videos.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                           antialias=True)
    return frames.reshape(b, t, c, INPUT_SIZE, INPUT_SIZE).permute(0, 2, 1, 3, 4)


def joint_log_probs(logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, 192)`` log p(colour, shape, direction) = sum of the heads' log-softmaxes (independent heads)."""
    out = None
    for name in JOINT_HEADS:
        lp = F.log_softmax(logits[name].double(), dim=-1)
        out = lp if out is None else (out[:, :, None] + lp[:, None, :]).flatten(1)
    return out


# ---- the shipped weights ---------------------------------------------------------------------------

def _weight_spec():
    from vdmkit.evaluation.features.weights import WeightFile

    return WeightFile(WEIGHTS_FILE, SHIPPED_SHA256, SHIPPED_BYTES, "a fresh install of vdmkit (the package ships it in "
                      "src/vdmkit/evaluation/weights/)", "the shapes benchmark (FVD/KVD/IS features)")


def load_shapes_classifier(path: str | os.PathLike | None = None, *, expected_sha256=None):
    """The bundled classifier (or ``path``: a file or a folder holding ``shapes_classifier.safetensors``),
    sha256-checked against the shipped file unless ``expected_sha256`` names another."""
    from vdmkit.evaluation.features.weights import (
        PINNED,
        Extractor,
        locate_weight_file,
        verify_weight_file,
    )
    from vdmkit.io.checkpoint import load_tensors

    spec = _weight_spec()
    file = locate_weight_file(spec, WEIGHTS_DIR if path is None else path)
    record = verify_weight_file(spec, file, PINNED if expected_sha256 is None else expected_sha256)
    model = ShapesClassifier()
    try:
        model.load_state_dict(load_tensors(file), strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(f"{str(file)!r} does not fit the shapes classifier: {e}") from e
    model.eval().requires_grad_(False)
    return Extractor("shapes_classifier", model, record, FEATURE_DIM, {
        "input": "(B, 3, T, 32, 32) in [-1, 1]; other sizes: bilinear antialiased resize to 32",
        "features": "64-d: spatial max, temporal mean after three 3x3x3 convs", "is_classes": "colour x shape x direction (192)"})


@torch.no_grad()
def shapes_features(extractor, videos: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(B, 64)`` features and ``(B, 192)`` joint log-probabilities of one batch."""
    from vdmkit.evaluation.features.weights import finite_rows

    model = extractor.module
    feats = model.features(classifier_input(videos).to(extractor.device))
    return finite_rows(feats, "shapes classifier"), finite_rows(joint_log_probs(model.classify(feats)), "shapes classifier")


# ---- training recipe ------------------------------------------------------------------------------

def _configs(frames: int = 16) -> list[ShapesConfig]:
    """Every background, every direction: the classifier must read any shapes config."""
    return [ShapesConfig(size=INPUT_SIZE, frames=frames, directions=tuple(DIRECTIONS), background=bg,
                         seed=TRAIN_DATA_SEED + i) for i, bg in enumerate(BACKGROUNDS)]


def _labelled_batch(configs, indices: np.ndarray, pick: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    items = [render_shapes_sample(configs[p], int(i)) for p, i in zip(pick, indices)]
    videos = torch.stack([it["video"] for it in items])
    labels = {name: torch.tensor([HEADS[name].index(it["attributes"][name]) for it in items]) for name in HEADS}
    return videos, labels


def heldout_set(n: int = 1024, seed: int = TRAIN_DATA_SEED + 100):
    """A fixed labelled test set from data seeds the training never draws."""
    configs = [ShapesConfig(size=INPUT_SIZE, frames=16, directions=tuple(DIRECTIONS), background=bg, seed=seed + i)
               for i, bg in enumerate(BACKGROUNDS)]
    return _labelled_batch(configs, np.arange(n), np.arange(n) % len(configs))


@torch.no_grad()
def accuracy(model: ShapesClassifier, videos: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    model.eval()
    logits = [model(v) for v in videos.split(128)]
    return {name: float((torch.cat([lg[name] for lg in logits]).argmax(-1) == labels[name]).float().mean())
            for name in HEADS}


def train_classifier(out: str | os.PathLike, *, steps: int = TRAIN_STEPS, batch_size: int = TRAIN_BATCH,
                     lr: float = TRAIN_LR, seed: int = TRAIN_SEED, threads: int = 1, progress: bool = True) -> dict:
    """Train the classifier on freshly rendered shapes clips (every step a new batch) and write it as
    safetensors with its recipe and held-out accuracy in the metadata. Returns that metadata."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from vdmkit.io.atomic import atomic_path

    if steps < 1 or batch_size < 1:
        raise ConstraintError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    configs = _configs()
    model = ShapesClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc="shapes classifier", disable=not progress)
    for _ in bar:
        model.train()
        videos, labels = _labelled_batch(configs, rng.integers(0, 2**31 - 1, batch_size),
                                         rng.integers(0, len(configs), batch_size))
        noise = torch.from_numpy(rng.uniform(0, NOISE_STD_MAX, (batch_size, 1, 1, 1, 1))).float()
        logits = model((videos + noise * torch.randn(videos.shape, generator=gen)).clamp(-1, 1))
        loss = sum(F.cross_entropy(logits[name], labels[name]) for name in HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - t0
    acc = accuracy(model, *heldout_set())
    meta = {"recipe": f"python -m vdmkit.evaluation.shapes_classifier --steps {steps} --batch-size {batch_size} "
                      f"--lr {lr} --seed {seed}",
            "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "data_seed": TRAIN_DATA_SEED,
            "threads": threads, "heldout_accuracy": acc, "heads": {k: list(v) for k, v in HEADS.items()},
            "torch": torch.__version__}
    out = Path(out)
    with atomic_path(out) as tmp:  # no wall-clock time in the file: the same recipe writes the same bytes
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"vdmkit": json.dumps(meta, sort_keys=True)})
    return {**meta, "train_seconds": round(seconds, 1)}


def check_retrain_output(out: str | os.PathLike) -> None:
    """A retrained classifier is a new file: never the pinned one the package ships (every shapes evaluation checks its
    sha256, and a retrain on other threads or another CPU is not bit-identical), never an existing file."""
    from vdmkit.errors import OutputError
    from vdmkit.io.video import check_output_path

    out = Path(out)
    if out.resolve() == (WEIGHTS_DIR / WEIGHTS_FILE).resolve():
        raise OutputError(f"{str(out)!r} is the shipped, sha256-pinned classifier: write the retrained one elsewhere "
                          "(--out FILE) and evaluate with it by --weights FOLDER --weights-sha256 "
                          f"{WEIGHTS_FILE}=SHA256")
    check_output_path(out, (".safetensors",))
    if out.exists():
        raise OutputError(f"{str(out)!r} exists; choose a new file for the retrained classifier")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vdmkit.evaluation.shapes_classifier",
                                 description="train the shapes-benchmark video classifier (FVD features)")
    ap.add_argument("--out", default=WEIGHTS_FILE)
    ap.add_argument("--steps", type=int, default=TRAIN_STEPS)
    ap.add_argument("--batch-size", type=int, default=TRAIN_BATCH)
    ap.add_argument("--lr", type=float, default=TRAIN_LR)
    ap.add_argument("--seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    check_retrain_output(args.out)
    meta = train_classifier(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            threads=args.threads)
    from vdmkit.io.checkpoint import sha256_file

    print(json.dumps({**meta, "out": args.out, "sha256": sha256_file(Path(args.out)),
                      "bytes": Path(args.out).stat().st_size}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
