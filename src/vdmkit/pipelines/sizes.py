"""Shape refusals restated in what the user gives (from the model's config alone): the nearest frames, height and
width that fit a request, and super-resolution's low-resolution input checked in its own pixels."""

from __future__ import annotations

from typing import Callable, Iterator

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
