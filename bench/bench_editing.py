"""Edit moving-shapes clips with a trained shapes model and score the edits with the detector.

    python bench/bench_editing.py --model runs/default --n 16 --steps 15 --out outputs/bench_editing

Sources: ``--n`` clips of the shapes generator showing the source prompt's object (a red circle moving left; speed,
size and start drawn per clip). Each is edited to the target prompt (a blue circle moving left) by SDEdit at three
strengths and by DDIM inversion, without and with reuse of the source pass's self-attention maps; all with DDIM at
``--steps`` and guidance ``--guidance`` (inversion: ``--cfg-inversion source``, negative-prompt inversion, guides
against the source prompt; ``plain`` against the empty prompt).
Per method: how often the detector sees the target colour, the median over clips of the mean distance (pixels at
32x32) between the edit's object centre and the source's, frame by frame, the single-object rate, and seconds per
clip; for inversion also the reconstruction PSNR of the source branch. Results: ``OUT/results.json`` and a PNG grid
(one row per method, first clip, every other frame).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.evaluation import detect_shapes, object_centres
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines import TextToVideo, edit, edit_inverted, invert
from vdmkit.pipelines.editing import reconstruction_error
from vdmkit.training.config import read_run_config
from vdmkit.video import to_uint8


def track_distance(a: torch.Tensor, b: torch.Tensor, size: int) -> float:
    """Mean distance (pixels at a 32-pixel frame) between the object centres of two videos (C, T, H, W), over the
    frames where both show one; nan if none."""
    pairs = [(p, q) for p, q in zip(object_centres(a), object_centres(b)) if p is not None and q is not None]
    if not pairs:
        return math.nan
    return float(np.mean([math.hypot(p[0] - q[0], p[1] - q[1]) for p, q in pairs])) * 32 / size


def source_clips(cfg: ShapesConfig, shape: str, colour: str, direction: str, n: int) -> torch.Tensor:
    data = ShapesDataset(ShapesConfig(**{**cfg.__dict__, "shapes": (shape,), "colours": (colour,),
                                         "directions": (direction,), "holdout": (), "seed": 777}))
    return data.batch(0, n)[0]


def summarise(name: str, sources: torch.Tensor, edits: torch.Tensor, target_colour: str, size: int,
              seconds: float, extra: dict | None = None) -> dict:
    detections = [detect_shapes(v) for v in edits]
    distances = [track_distance(s, e, size) for s, e in zip(sources, edits)]
    return {"method": name, "colour_changed": sum(d.colour == target_colour for d in detections),
            "n": len(edits), "track_distance_px": round(float(np.nanmedian(distances)), 2),
            "track_distance_mean_px": round(float(np.nanmean(distances)), 2),
            "single_object": round(float(np.mean([d.single_object_rate for d in detections])), 3),
            "direction_kept": sum(d.direction == detect_shapes(s).direction for d, s in zip(detections, sources)),
            "seconds_per_clip": round(seconds / len(edits), 2), **(extra or {})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--strengths", default="0.4,0.6,0.8")
    ap.add_argument("--reuse", default="0,0.5", help="attention-reuse fractions to try (empty: no inversion)")
    ap.add_argument("--cfg-inversion", choices=("plain", "source"), default="source",
                    help="inversion's negative prompt: the empty prompt, or the source prompt")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default="outputs/bench_editing")
    args = ap.parse_args()

    pipe = TextToVideo.from_pretrained(args.model)
    cfg = read_run_config(args.model).data
    source_prompt, target_prompt = "a red circle moving left", "a blue circle moving left"
    sources = source_clips(cfg, "circle", "red", "left", args.n)  # (n, 3, T, H, W)
    batches = [sources[i:i + args.batch] for i in range(0, args.n, args.batch)]
    common = dict(steps=args.steps, sampler="ddim", guidance=args.guidance)
    rows, strips = [], {"source": sources[0]}
    source_colour = sum(detect_shapes(v).colour == "red" for v in sources)
    print(f"sources: detector sees red in {source_colour}/{args.n}")

    for strength in [float(s) for s in args.strengths.split(",") if s]:
        t0 = time.perf_counter()
        edits = torch.cat([edit(pipe, b, target_prompt, strength=strength, seed=i, **common)
                           for i, b in enumerate(batches)])
        name = f"sdedit {strength}"
        rows.append(summarise(name, sources, edits, "blue", cfg.size, time.perf_counter() - t0))
        strips[name] = edits[0]
        print(json.dumps(rows[-1]))

    t0 = time.perf_counter()
    inversions = [invert(pipe, b, source_prompt, **common) for b in batches]
    invert_seconds = time.perf_counter() - t0
    for reuse in [float(r) for r in args.reuse.split(",") if r]:
        t0 = time.perf_counter()
        results = [edit_inverted(pipe, inv, target_prompt, cfg_inversion=args.cfg_inversion,
                                  attention_reuse=reuse)
                   for inv in inversions]
        seconds = time.perf_counter() - t0 + invert_seconds
        edits = torch.cat([r.video for r in results])
        recon = reconstruction_error(sources, torch.cat([r.source for r in results]))
        name = f"inversion ({args.cfg_inversion} CFG), attention reuse {reuse}"
        rows.append(summarise(name, sources, edits, "blue", cfg.size, seconds,
                              {"reconstruction_psnr_db": round(recon["psnr_db"], 2)}))
        strips[name] = edits[0]
        print(json.dumps(rows[-1]))

    out = Path(args.out)
    grid = np.concatenate([np.concatenate(list(to_uint8(v)[::2]), axis=1) for v in strips.values()], axis=0)
    write_video(out / "grid.png", upscale(grid[None], 3))
    summary = {"model": args.model, "source": source_prompt, "target": target_prompt, "n": args.n,
               "steps": args.steps, "sampler": "ddim", "guidance": args.guidance, "rows": list(strips),
               "cfg_inversion": args.cfg_inversion,
               "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
               "source_red": source_colour, "results": rows}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
