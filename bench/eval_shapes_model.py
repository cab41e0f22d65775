"""Sample a trained moving-shapes model on held-out prompts and count what the videos show.

    python bench/eval_shapes_model.py --model runs/shapes --n 16 --steps 50 --guidance 3 --out outputs/eval

Prompts are the captions of a dataset with another seed (held-out combinations). Each video is scored by
the deterministic detector in vdmkit.evaluation.shapes (single object per frame, colour, shape,
direction); a PNG grid (one row per prompt, every other frame) is written for looking at the samples.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.evaluation import score_video
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines import TextToVideo
from vdmkit.training.config import read_run_config
from vdmkit.video import to_uint8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--prompt-seed", type=int, default=1234)
    ap.add_argument("--out", default="outputs/eval")
    args = ap.parse_args()

    pipe = TextToVideo.from_pretrained(args.model)
    cfg = read_run_config(args.model).data
    held_out = ShapesDataset(ShapesConfig(**{**cfg.__dict__, "seed": args.prompt_seed}))
    out = Path(args.out)
    rows, results = [], []
    t0 = time.perf_counter()
    for i in range(args.n):
        item = held_out[i]
        video = pipe([item["caption"]], steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=i,
                     precision=args.precision)[0]
        score = score_video(video, item["attributes"], background=cfg.background, directions=cfg.directions)
        results.append({"prompt": item["caption"], **score})
        u8 = to_uint8(video)
        rows.append(np.concatenate(list(u8[::2]), axis=1))
        write_video(out / f"{i:02d}.mp4", upscale(u8, 4))
    seconds = (time.perf_counter() - t0) / args.n
    write_video(out / "grid.png", upscale(np.concatenate(rows, axis=0)[None], 3))
    n = args.n
    summary = {
        "model": str(args.model), "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
        "n": n, "seconds_per_video": round(seconds, 2),
        "single_object_frames": round(float(np.mean([r["single_object_rate"] for r in results])), 3),
        "colour": f"{sum(r['colour_ok'] for r in results)}/{n}",
        "shape": f"{sum(r['shape_ok'] for r in results)}/{n}",
        "direction": f"{sum(r['direction_ok'] for r in results)}/{n}",
    }
    (out / "results.json").write_text(json.dumps({"summary": summary, "videos": results}, indent=2))
    for r in results:
        print(f"{r['prompt']:40s} -> {r['colour']} {r['shape']} {r['direction']} single={r['single_object_rate']:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
