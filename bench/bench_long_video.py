"""Long videos from a 16-frame shapes model: sliding windows, FreeNoise and autoregressive extension, scored by the
detector.

    python bench/bench_long_video.py --model runs/default --frames 64,128 --steps 10 --out outputs/bench_long

For each prompt, frame count and mode: the single-object rate; the largest frame-to-frame jump of the object's
centre (pixels at 32x32) across window seams (the transitions where a window starts or ends) against the largest
inside windows, and the median step (the object's speed); in how many 16-frame chunks the detector sees the prompt's
direction and colour (the shapes bounce off the walls, so a long clip of one direction turns around: the training
clips do too); seconds per frame against 16-frame sampling with the same sampler and steps. Results:
``OUT/results.json`` and a PNG strip per video (every 4th frame).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vdmkit.evaluation import detect_shapes, object_centres
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines import TextToVideo, long_request
from vdmkit.pipelines.long_video import run_long, window_starts
from vdmkit.video import to_uint8

PROMPTS = [("a slow red circle moving left", "red", "left"), ("a slow green square moving down", "green", "down")]
CHUNK = 16


def seams(request) -> set[int]:
    """Transitions t -> t + 1 (named by t) where a window starts or ends."""
    starts = window_starts(request.latent_frames, request.window, request.overlap)
    ends = {s + request.window - 1 for s in starts[:-1]}
    return {s - 1 for s in starts[1:]} | ends


def continuity(video: torch.Tensor, seam: set[int], size: int) -> dict:
    centres = object_centres(video)
    jumps = {t: math.hypot(b[0] - a[0], b[1] - a[1]) * 32 / size
             for t, (a, b) in enumerate(zip(centres, centres[1:])) if a is not None and b is not None}
    at = [j for t, j in jumps.items() if t in seam]
    inside = [j for t, j in jumps.items() if t not in seam]
    rnd = lambda xs, f: round(float(f(xs)), 2) if xs else None  # noqa: E731
    return {"max_jump_seam_px": rnd(at, max), "max_jump_within_px": rnd(inside, max),
            "median_step_px": rnd(list(jumps.values()), np.median)}


def chunks_agree(video: torch.Tensor, colour: str, direction: str) -> tuple[int, int, int]:
    """(chunks with the prompt's direction, with its colour, chunks) over non-overlapping 16-frame chunks."""
    parts = [video[:, s:s + CHUNK] for s in range(0, video.shape[1] - CHUNK + 1, CHUNK)]
    dets = [detect_shapes(p) for p in parts]
    return sum(d.direction == direction for d in dets), sum(d.colour == colour for d in dets), len(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", default="64,128")
    ap.add_argument("--modes", default="freenoise,windows,autoregressive")
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS))
    ap.add_argument("--out", default="outputs/bench_long")
    args = ap.parse_args()

    pipe = TextToVideo.from_pretrained(args.model)
    size = pipe.config.width
    out = Path(args.out)
    common = dict(steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=0)
    rows = []
    base_seconds = []
    pipe([PROMPTS[0][0]], steps=1, sampler=args.sampler, guidance=args.guidance)  # warm-up, not timed
    for prompt, colour, direction in PROMPTS[:args.prompts]:
        t0 = time.perf_counter()
        short = pipe([prompt], **common)
        base_seconds.append((time.perf_counter() - t0) / short.shape[2])
        det = detect_shapes(short[0])
        rows.append({"prompt": prompt, "frames": short.shape[2], "mode": "plain (16 frames)",
                     "single_object": round(det.single_object_rate, 3), "direction": det.direction == direction,
                     "seconds_per_frame": round(base_seconds[-1], 3)})
        print(json.dumps(rows[-1]))
        for frames in [int(f) for f in args.frames.split(",")]:
            for mode in args.modes.split(","):
                request = long_request(pipe.config, prompt, frames=frames, mode=mode, overlap=args.overlap, **common)
                t0 = time.perf_counter()
                video = run_long(pipe, request)[0]  # (3, T, H, W)
                seconds = time.perf_counter() - t0
                det = detect_shapes(video)
                dirs, cols, n = chunks_agree(video, colour, direction)
                rows.append({"prompt": prompt, "frames": frames, "mode": mode, "window": request.window,
                             "overlap": request.overlap, "single_object": round(det.single_object_rate, 3),
                             **continuity(video, seams(request), size), "direction_chunks": f"{dirs}/{n}",
                             "colour_chunks": f"{cols}/{n}", "seconds_per_frame": round(seconds / frames, 3),
                             "vs_16_frames": round(seconds / frames / base_seconds[-1], 2)})
                print(json.dumps(rows[-1]))
                name = f"{prompt.replace(' ', '_')}_{frames}_{mode}"
                write_video(out / f"{name}.png", upscale(np.concatenate(list(to_uint8(video)[::4]), axis=1)[None], 2))
                write_video(out / f"{name}.mp4", upscale(to_uint8(video), 4))
    summary = {"model": args.model, "steps": args.steps, "sampler": args.sampler, "guidance": args.guidance,
               "overlap": args.overlap, "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
               "results": rows}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
