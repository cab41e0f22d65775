"""Sample a trained moving-shapes model on prompts it did not train on and count what the videos show.

    python bench/eval_shapes_model.py --model runs/shapes --n 64 --steps 50 --guidance 3 --out outputs/eval
    python bench/eval_shapes_model.py --model runs/default --set holdout --n 32 --sampler dpmpp_2m --steps 8

``--set fresh`` (default): the captions of a dataset with another seed (new clips; with 192 captions in all, the
strings themselves recur in training). ``--set holdout``: only the colour x shape x direction combinations the
recipe's ``data.holdout`` kept out of training (never seen), cycled, each with its own seed. Each video is scored
by the deterministic detector in vdmkit.evaluation.shapes (single object per frame, colour, shape, direction),
overall and per shape class; a PNG grid (one row per prompt, every other frame) is written for looking at the
samples. Sampling time per video is measured with the torch thread count printed beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.data.shapes import COLOURS
from vdmkit.evaluation import score_video
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines import TextToVideo
from vdmkit.training.config import read_run_config
from vdmkit.video import to_uint8


def prompts(cfg: ShapesConfig, which: str, n: int, seed: int) -> list[tuple[str, dict]]:
    """(caption, attributes) for ``n`` evaluation videos."""
    if which == "fresh":
        data = ShapesDataset(ShapesConfig(**{**cfg.__dict__, "seed": seed}))
        return [(item["caption"], item["attributes"]) for item in (data[i] for i in range(n))]
    combos = [(s, c, d, v) for s, c, d, v in itertools.product(cfg.shapes, cfg.colours, cfg.directions, cfg.speeds)
              if cfg.held_out(s, c, d, v)]
    if not combos:
        raise SystemExit("--set holdout: this model's recipe holds nothing out (data.holdout is empty)")
    picked = [combos[i % len(combos)] for i in range(n)]
    return [(cfg.caption(*c), dict(zip(("shape", "colour", "direction", "speed"), c))) for c in picked]


def rate(results: list[dict], key: str) -> str:
    return f"{sum(r[key] for r in results)}/{len(results)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--set", choices=("fresh", "holdout"), default="fresh")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--prompt-seed", type=int, default=1234)
    ap.add_argument("--out", default="outputs/eval")
    ap.add_argument("--data-from", help="take the data recipe (and its held-out set) from this run instead of --model's "
                    "(e.g. a fine-tune that drew everything, scored on its base's held-out combinations)")
    ap.add_argument("--colours", nargs="+", help="prompts of these colours only (--set fresh)")
    ap.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]", help="apply LoRA adapters")
    args = ap.parse_args()

    pipe = TextToVideo.from_pretrained(args.model)
    for value in args.lora:
        from vdmkit.backbones.lora import parse_lora_argument

        pipe.load_lora(*parse_lora_argument(value))
    cfg = read_run_config(args.data_from or args.model).data
    palette = tuple(dict.fromkeys([*COLOURS, *cfg.colours]))  # the detector's choices: the default palette + the data's
    if args.colours:  # prompts of these colours only (e.g. a colour a LoRA taught)
        cfg = dataclasses.replace(cfg, colours=tuple(args.colours), holdout=())
    out = Path(args.out)
    rows, results, seconds = [], [], []
    chosen = prompts(cfg, args.set, args.n, args.prompt_seed)
    pipe([chosen[0][0]], steps=2, sampler=args.sampler, guidance=args.guidance, seed=0, precision=args.precision)
    for i, (caption, attributes) in enumerate(tqdm(chosen, desc="videos", unit="video")):
        t0 = time.perf_counter()
        video = pipe([caption], steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=i,
                     precision=args.precision)[0]
        seconds.append(time.perf_counter() - t0)
        score = score_video(video, attributes, background=cfg.background, directions=cfg.directions,
                            colours=palette)
        results.append({"prompt": caption, "truth": attributes["shape"], **score})
        u8 = to_uint8(video)
        rows.append(np.concatenate(list(u8[::2]), axis=1))
        write_video(out / f"{i:02d}.mp4", upscale(u8, 4))
    write_video(out / "grid.png", upscale(np.concatenate(rows, axis=0)[None], 3))
    summary = {
        "model": str(args.model), "lora": args.lora, "colours": args.colours, "set": args.set, "sampler": args.sampler, "steps": args.steps,
        "guidance": args.guidance, "precision": args.precision, "n": args.n,
        "seconds_per_video": round(float(np.median(seconds)), 3), "torch_threads": torch.get_num_threads(),
        "single_object_frames": round(float(np.mean([r["single_object_rate"] for r in results])), 3),
        "colour": rate(results, "colour_ok"), "shape": rate(results, "shape_ok"),
        "direction": rate(results, "direction_ok"),
        "shape_by_class": {s: rate([r for r in results if r["truth"] == s], "shape_ok")
                           for s in cfg.shapes if any(r["truth"] == s for r in results)},
        "date": time.strftime("%Y-%m-%d"),
    }
    (out / "results.json").write_text(json.dumps({"summary": summary, "videos": results}, indent=2))
    for r in results:
        print(f"{r['prompt']:40s} -> {r['colour']} {r['shape']} {r['direction']} single={r['single_object_rate']:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
