"""fp32 vs bf16 autocast on this CPU, for the shipped shapes model: training step, sampling step, numerics.

    python bench/bench_precision.py [--config configs/shapes.yaml] [--repeats 5]

Times the median of ``repeats`` training steps (forward + backward + AdamW, batch from the config) and
denoiser calls (batch 2 = one prompt with classifier-free guidance) at each precision, in one run, and
the relative error of the bf16 prediction against fp32 on the same inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date

import torch

from vdmkit.training import load_config
from vdmkit.data import ShapesDataset
from vdmkit.diffusion import diffusion_loss
from vdmkit.pipelines import TextToVideo


def cpu_description() -> str:
    """The CPU's name and its bf16 matmul units, e.g. "AMD EPYC, avx512_bf16, 2 CPUs": results from machines with AMX
    tiles and from ones without are not comparable (this project's machines have been both)."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    name = caps.get("cpu_name") or platform.processor() or platform.machine()
    units = "AMX" if caps.get("amx_bf16") else "avx512_bf16" if caps.get("avx512_bf16") else "no bf16 units"
    return f"{name}, {units}, {os.cpu_count()} CPUs"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/shapes.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config(args.config)
    torch.manual_seed(0)
    pipe = TextToVideo(cfg.pipeline())
    for p in pipe.parameters():  # trained-like weights: zero-initialised branches would hide bf16 error
        if p.ndim > 1:
            torch.nn.init.normal_(p, std=0.5 / p[0].numel() ** 0.5)
    opt = torch.optim.AdamW(pipe.parameters(), lr=1e-4)
    videos, captions = ShapesDataset(cfg.data).batch(0, cfg.train.batch_size)
    results = {"date": str(date.today()), "machine": f"{cpu_description()}, "
               f"{torch.get_num_threads()} threads, torch {torch.__version__}",
               "params_M": round(sum(p.numel() for p in pipe.backbone.parameters()) / 1e6, 2),
               "input": list(videos.shape)}
    for precision in ("fp32", "bf16"):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = diffusion_loss(pipe.backbone, videos, pipe.encode(captions), pipe.process, "v",
                                      generator=torch.Generator().manual_seed(0))
            opt.zero_grad()
            loss.backward()
            opt.step()

        denoiser = pipe.denoiser(precision)
        pair = captions[:2]  # (a run's batch of 1 gives one)
        x = torch.randn(len(pair), *videos.shape[1:])
        cond = pipe.encode(pair)

        @torch.no_grad()
        def call():
            denoiser(x, torch.full((len(pair),), 500), cond)

        results[f"train_step_s_{precision}"] = round(timed(step, args.repeats), 3)
        results[f"denoise_call_s_{precision}"] = round(timed(call, args.repeats), 3)
    results["train_speedup_bf16"] = round(results["train_step_s_fp32"] / results["train_step_s_bf16"], 2)
    results["denoise_speedup_bf16"] = round(results["denoise_call_s_fp32"] / results["denoise_call_s_bf16"], 2)
    with torch.no_grad():
        four = captions[:4]  # the batch's first four (fewer for a run of a smaller batch: configs/tiny.yaml has 2)
        x = torch.randn(len(four), *videos.shape[1:])
        t = torch.tensor([10, 250, 600, 990])[:len(four)]
        cond = pipe.encode(four)
        ref = pipe.backbone(x, t, cond)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = pipe.backbone(x, t, cond).float()
    results["bf16_relative_error"] = round(float((low - ref).norm() / ref.norm()), 4)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
