"""Sampling speed on this machine, in one run: the matmul peak, the shapes model end to end in each precision path
(fp32 eager as on 2026-12-04's main, bf16 autocast, pure bf16, pure bf16 compiled), its detector scores and PSNR to the
fp32 videos, and the fraction of the measured peak the small UNet and video DiT forwards reach.

    python bench/bench_speed.py                       # everything (about 15 minutes on 2 cores, cold compile cache)
    python bench/bench_speed.py --n 8 --skip-backbones   # quicker
    python bench/bench_speed.py --json out.json

Per mode: ms per model call (the CFG batch 2 x 3 x 16 x 32 x 32, median of 9 after a warm-up), seconds per video in
one process (load excluded, median of the videos after the first; the first video's extra time is reported apart:
one-off warm-up, and for the compiled mode the package load), the compile time when the package was not cached, and
on ``--n`` fresh prompts (the recipe's captions from another seed) the detector's rates and the PSNR of each video to
the fp32 one of the same seed. The compiled mode uses ``--cache`` (default: a fresh temporary folder, so the compile
is counted once) through ``Pipeline.compile``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_precision import cpu_description  # noqa: E402
from bench_backbones import DIT_SIZES, HEAD_DIM, INPUT, TEXT_TOKENS, UNET_SIZES, matmul_peak  # noqa: E402
from eval_shapes_model import prompts as fresh_prompts  # noqa: E402

from vdmkit.backbones import UNet3D, UNet3DConfig, VideoDiT  # noqa: E402
from vdmkit.backbones.layers import channels_last_weights  # noqa: E402
from vdmkit.backbones.flops import backbone_flops, backbone_inputs, count_params  # noqa: E402
from vdmkit.data import ShapesConfig  # noqa: E402
from vdmkit.device import keep_freed_memory  # noqa: E402
from vdmkit.evaluation import score_video  # noqa: E402
from vdmkit.pipelines import TextToVideo  # noqa: E402
from vdmkit.pipelines.default import DEFAULT_MODEL  # noqa: E402
from vdmkit.training.config import read_run_config  # noqa: E402

MODES = {  # name: (weights dtype, request precision, compiled)
    "fp32 eager (the default)": ("fp32", "fp32", False),
    "bf16 autocast (old --precision bf16)": ("fp32", "bf16", False),
    "bf16 pure (--precision bf16)": ("bf16", "bf16", False),
    "bf16 pure, compiled (--precision bf16 --compile)": ("bf16", "bf16", True),
}


def median_ms(fn, repeats: int = 9) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)  # range [-1, 1]: peak-to-peak 2


def shapes_mode(name: str, model: Path, items, args, reference: list | None, cache: Path) -> tuple[dict, list]:
    dtype, precision, compiled = MODES[name]
    pipe = TextToVideo.from_pretrained(model, dtype=dtype)
    stats = pipe.compile(directory=cache, log=lambda m: None).stats if compiled else None
    options = dict(steps=args.steps, sampler=args.sampler, precision=precision)
    both = pipe.encode([items[0][0], ""])
    x = torch.randn(2, pipe.config.latent_channels, 16, 32, 32)
    t = torch.full((2,), 500.0)
    den = pipe.denoiser(precision)
    videos, seconds = [], []
    with torch.no_grad():
        for i, (caption, _) in enumerate(items):
            start = time.perf_counter()
            videos.append(pipe([caption], seed=i, **options)[0].float())
            seconds.append(time.perf_counter() - start)
        call = median_ms(lambda: den(x, t, both))
    scores = [score_video(v, attributes) for v, (_, attributes) in zip(videos, items)]
    row = {"mode": name, "ms_per_call": round(call, 1),
           "s_per_video": round(statistics.median(seconds[1:] or seconds), 3),
           "first_video_extra_s": round(seconds[0] - statistics.median(seconds[1:] or seconds), 2),
           "compile_s": round(stats["compile_seconds"], 1) if stats else None,
           "videos": len(videos)}
    row["single_object_frames"] = round(statistics.mean(s["single_object_rate"] for s in scores), 3)
    for key in ("colour", "shape", "direction"):
        row[key] = f"{sum(bool(s[key + '_ok']) for s in scores)}/{len(scores)}"
    if reference is not None:
        row["psnr_to_fp32_db"] = round(statistics.median(psnr(v, r) for v, r in zip(videos, reference)), 1)
    return row, videos


def small_backbones() -> list[tuple[str, torch.nn.Module]]:
    """bench_backbones.py's small UNet3D (ModelScope-like levels, 8-wide heads) and video DiT-S."""
    channels, blocks, text_dim = UNET_SIZES["small"]
    unet = UNet3D(UNet3DConfig(in_channels=4, out_channels=4, channels=channels, blocks_per_level=blocks,
                               attention_levels=tuple(range(len(channels) - 1)), head_dim=HEAD_DIM, text_dim=text_dim))
    dit = VideoDiT(DIT_SIZES["small"](in_channels=4, out_channels=4, text_dim=text_dim))
    return [("UNet3D small", unet), ("VideoDiT-S", dit)]


def bf16_inputs(model: torch.nn.Module):
    """Random (x, t, cond) at INPUT for a bf16 backbone, the latents and text in bf16 as a bf16 pipeline hands them
    over."""
    x, t, cond = backbone_inputs(model, INPUT, TEXT_TOKENS)
    if cond.text is not None:
        cond.text = type(cond.text)(cond.text.tokens.bfloat16(), cond.text.mask, cond.text.pooled.bfloat16())
    return x.bfloat16(), t, cond


def backbone_rows(peak: dict, compile_cache: Path, compile_backbones: bool) -> list[dict]:
    from vdmkit.pipelines.compiled import CompiledBackbone

    rows = []
    for name, model in small_backbones():
        with torch.device("meta"):
            flops = backbone_flops(type(model)(model.cfg), INPUT)
        model = model.eval().to(torch.bfloat16)
        channels_last_weights(model)  # as from_pretrained leaves a model's convolutions
        x, t, cond = bf16_inputs(model)
        for mode in ("bf16 pure", "bf16 compiled") if compile_backbones else ("bf16 pure",):
            run = CompiledBackbone(model, directory=compile_cache, log=lambda m: None) if "compiled" in mode else model
            with torch.no_grad():
                ms = median_ms(lambda: run(x, t, cond), repeats=5)
            gflops = flops / ms / 1e6
            rows.append({"model": name, "mode": mode, "input": list(INPUT), "params_M": round(count_params(model) / 1e6, 2),
                         "gflop_fwd": round(flops / 1e9, 2), "fwd_ms": round(ms, 1), "gflop_per_s": round(gflops, 1),
                         "of_bf16_peak": f"{gflops / peak['bf16']:.0%}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--n", type=int, default=32, help="fresh prompts per mode")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="compiled packages (default: a fresh temporary folder)")
    ap.add_argument("--skip-backbones", action="store_true")
    ap.add_argument("--compile-backbones", action="store_true", help="also the small backbones compiled (slow)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                    help="glibc allocation: keep (vdmkit.device.keep_freed_memory, as the vdmkit command runs) or "
                    "default (as this benchmark ran until 2026-12-05)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kept = args.malloc == "keep" and keep_freed_memory()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="vdmkit-compiled-"))
    result = {"date": str(date.today()), "machine": f"{cpu_description()}, "
              f"{args.threads} threads, torch {torch.__version__}", "load_1min": round(os.getloadavg()[0], 2),
              "malloc": "keep" if kept else "default"}
    result["peak_gflops"] = peak = matmul_peak(2048, 5)
    print(json.dumps({"peak_gflops": peak}), flush=True)
    recipe = read_run_config(args.model).data
    items = fresh_prompts(recipe if isinstance(recipe, ShapesConfig) else ShapesConfig(), "fresh", args.n, 12345)
    rows, reference = [], None
    for name in MODES:
        row, videos = shapes_mode(name, args.model, items, args, reference, cache)
        reference = reference if reference is not None else videos
        rows.append(row)
        print(json.dumps(row), flush=True)
    result["shapes"] = rows
    base = rows[0]["s_per_video"]
    for row in rows:
        row["speedup_vs_fp32_eager"] = round(base / row["s_per_video"], 2)
    if not args.skip_backbones:
        result["backbones"] = backbone_rows(peak, cache, args.compile_backbones)
        for row in result["backbones"]:
            print(json.dumps(row), flush=True)
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
