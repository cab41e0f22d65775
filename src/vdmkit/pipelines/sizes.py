"""Shape refusals restated in what the user gives (from the model's config alone): the nearest frames, height and
width that fit a request, super-resolution's low-resolution input checked in its own pixels, and a causal video
autoencoder's whole groups of known frames (moved from pipelines/conditioned.py, which had reached the line limit)."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from vdmkit.errors import ConstraintError

SIDES = ("frames", "height", "width")


def refusal(config, frames: int, height: int, width: int) -> str | None:
    """Why the model cannot take a (frames, height, width) pixel request, None when it can."""
    try:
        config.check_latent_shape(frames, height, width)
    except ConstraintError as e:
        return str(e)
    return None


def outward(n: int, reach: int) -> Iterator[int]:
    """Positive values by distance from ``n``, the larger first on a tie (n, n + 1, n - 1, n + 2, ...), at most
    ``reach`` from it: a search for the nearest that fits stops at the first, whatever the size of ``n``."""
    for d in range(reach + 1):
        for m in (n + d, n - d) if d else (n,):
            if m >= 1:
                yield m


def nearest(n: int, fits: Callable[[int], bool]) -> int | None:
    """The positive value closest to ``n`` that ``fits`` (the larger on a tie: the backbones' "nearest valid" rule,
    vdmkit.backbones.layers.nearest_multiple), None if none within n + 63 of it."""
    return next((m for m in outward(n, n + 63) if fits(m)), None)


def fitting_shape(config, shape: tuple[int, int, int], frames_at_most: int | None = None) -> dict[str, int]:
    """For each of frames, height and width of ``shape`` that the model cannot take (with its training size on the
    other two), the nearest value it takes (frames: at most ``frames_at_most``, an input's that can only be cut);
    {} when every side fits (or none that does is within reach)."""
    trained = (config.frames, config.height, config.width)
    most = (frames_at_most or float("inf"), float("inf"), float("inf"))
    changes = {}
    for i, side in enumerate(SIDES):
        def fits(m: int, i=i) -> bool:
            return m <= most[i] and refusal(config, *trained[:i], m, *trained[i + 1:]) is None

        if not fits(shape[i]) and (valid := nearest(shape[i], fits)) is not None:
            changes[side] = valid
    return changes


def resized_size(config, height: int | None, width: int | None, input_height: int, input_width: int,
                 factor: int = 1) -> tuple[int, int]:
    """The size an input is resized to from --height / --width: as given; one side alone gives the other from the
    input's aspect, the nearest the model takes (a 176x144 clip with --height 32 was centre-cropped to 32x176, 78% of
    the frame gone, before 2026-12-07); neither: the input's own. ``factor``: a super-resolution model's, whose
    output (the input times it) is what its sizes rule."""
    if height is None and width is None or height is not None and width is not None:
        return (height or input_height, width or input_width)
    given, i = (height, 1) if height is not None else (width, 2)
    raw = max(1, round(given * (input_width / input_height if i == 1 else input_height / input_width)))

    def fits(m: int) -> bool:
        shape = [config.frames, given * factor, m * factor] if i == 1 else [config.frames, m * factor, given * factor]
        return refusal(config, *shape) is None

    other = nearest(raw, fits) or raw
    return (given, other) if i == 1 else (other, given)


def check_low_res_size(config, frames: int, height: int, width: int, factor: int) -> None:
    """ConstraintError in the low-res input's pixels when the model cannot make its x ``factor`` output (its own check
    named the output's size and nearest valid one, read as the input's: "got 14x14; nearest valid: 16x16" for a 7x7
    input that must be 8x8). A length the model cannot take is left to the request's check."""
    why = refusal(config, frames, height * factor, width * factor)
    if why is None or refusal(config, frames, config.height, config.width) is not None:
        return
    why = why.partition("; nearest valid")[0]  # the output's nearest size: said below as the input's
    h = nearest(height, lambda m: refusal(config, frames, m * factor, config.width) is None) or height
    w = nearest(width, lambda m: refusal(config, frames, config.height, m * factor) is None) or width
    raise ConstraintError(f"the low-resolution video is {height}x{width}, and this x{factor} model cannot make its "
                          f"{height * factor}x{width * factor} output ({why}); nearest valid input: {h}x{w} (x{factor}"
                          f" = {h * factor}x{w * factor} output)")


def temporal_compression(config) -> int:
    """Pixel frames per latent frame after the first: a causal video autoencoder's c; 1 in pixels or a frame VAE."""
    return config.latent.autoencoder_config().temporal_compression if config.latent.enabled else 1


def check_whole_groups(mask: torch.Tensor, compression: int) -> None:
    """ConstraintError when known frames fill part of a latent frame's group of ``compression`` pixel frames: that
    latent frame is not known, so the model never sees them (before 2026-12-06 they were dropped silently, listed in
    the sidecar and pasted over frames generated without them)."""
    if compression == 1:
        return
    groups = mask[:, 1:].reshape(mask.shape[0], -1, compression)
    partial = (groups.amin(dim=2) != groups.amax(dim=2)).nonzero()
    if len(partial):
        b, j = (int(i) for i in partial[0])
        first = j * compression + 1
        known = [first + int(i) for i in groups[b, j].nonzero()[:, 0]]
        raise ConstraintError(
            f"known frame(s) {known} fill part of a latent frame: this model's causal video autoencoder encodes frame "
            f"0 alone and then each {compression} frames together (here {first}..{first + compression - 1}), and a "
            f"latent frame conditions only when all of its frames are known. Mark whole groups known (frame 0; "
            f"1..{compression}; {compression + 1}..{2 * compression}; ...) or unknown")


def latent_frame_mask(mask: torch.Tensor, compression: int) -> torch.Tensor:
    """A pixel frame mask (B, T) -> the latent frames' (B, 1 + (T - 1) / c): latent 0 is pixel frame 0, latent j
    encodes pixel frames (j - 1) c + 1 .. j c and is known when all of them are (requests know whole groups:
    :func:`check_whole_groups`)."""
    if compression == 1:
        return mask
    rest = mask[:, 1:].reshape(mask.shape[0], -1, compression).amin(dim=2)
    return torch.cat([mask[:, :1], rest], dim=1)
