"""Narrow attention heads on CPU: ``backbones.layers.attention`` with its zero-padding of heads narrower than
``PADDED_HEAD`` and without it (``PADDED_HEAD = 0``), in one process, alternating, on the same inputs.

    python bench/bench_attention.py                  # attention alone, then the small UNet forward (bf16), ~3 min
    python bench/bench_attention.py --json out.json

Attention alone: 8 heads x ``batch`` clips of ``tokens`` tokens, each head width, fp32 and bf16, inference (no grad)
and training (forward + backward); ms are medians of 5 after a warm-up. The small UNet (bench_backbones.py's
"small": 8-wide heads, 1024 tokens at its top level) runs a bf16 forward per round, padding off then on, with the
bf16 matmul peak measured in the same run, so its fraction of the peak is comparable with bench_speed.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from datetime import date
from pathlib import Path

import torch

from bench_backbones import INPUT, matmul_peak
from bench_precision import cpu_description, timed
from bench_speed import bf16_inputs, small_backbones

from vdmkit.backbones import layers
from vdmkit.backbones.flops import backbone_flops
from vdmkit.device import keep_freed_memory

HEADS = 8
PAIRS = 1 << 22  # query x key pairs per call, summed over the clips: about 34 ms per 8-wide call here


def with_padding(on: bool, fn):
    """``fn`` run with the padding on (the library's ``PADDED_HEAD``) or off (0: no head is narrower)."""
    def run():
        saved = layers.PADDED_HEAD
        layers.PADDED_HEAD = saved if on else 0
        try:
            return fn()
        finally:
            layers.PADDED_HEAD = saved
    return run


def attention_rows(widths, lengths, repeats: int) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for width in widths:
            for tokens in lengths:
                batch = max(1, PAIRS // (tokens * tokens))
                q, k, v = (torch.randn(batch, HEADS, tokens, width, dtype=dtype) for _ in range(3))
                grad = torch.randn_like(q)
                leaves = [a.clone().requires_grad_() for a in (q, k, v)]

                def infer(q=q, k=k, v=v):
                    with torch.no_grad():
                        layers.attention(q, k, v)

                def train(leaves=leaves, grad=grad):
                    layers.attention(*leaves).backward(grad)

                row = {"dtype": str(dtype).removeprefix("torch."), "head_width": width, "tokens": tokens,
                       "clips": batch}
                for mode, fn in (("inference", infer), ("training", train)):
                    off = timed(with_padding(False, fn), repeats) * 1e3
                    on = timed(with_padding(True, fn), repeats) * 1e3
                    row[mode] = {"unpadded_ms": round(off, 1), "padded_ms": round(on, 1), "speedup": round(off / on, 2),
                                 # bf16 training is never padded: both columns then time the same code
                                 "padded": not (mode == "training" and dtype == torch.bfloat16)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def unet_rows(rounds: int) -> dict:
    _, model = small_backbones()[0]
    with torch.device("meta"):
        flops = backbone_flops(type(model)(model.cfg), INPUT)
    model = model.eval().bfloat16()
    x, t, cond = bf16_inputs(model)
    peak = matmul_peak(2048, 5)["bf16"]
    times = {False: [], True: []}
    with torch.no_grad():
        for _ in range(rounds):
            for on in (False, True):
                times[on].append(timed(with_padding(on, lambda: model(x, t, cond)), 5))
    result = {"input": list(INPUT), "gflop_fwd": round(flops / 1e9, 2), "bf16_peak_gflops": round(peak, 1)}
    for on, label in ((False, "unpadded"), (True, "padded")):
        seconds = statistics.median(times[on])
        result[label] = {"fwd_ms": round(seconds * 1e3, 1), "rounds_ms": [round(s * 1e3) for s in times[on]],
                         "of_bf16_peak": f"{flops / seconds / 1e9 / peak:.1%}"}
    result["speedup"] = round(statistics.median(times[False]) / statistics.median(times[True]), 2)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 8, 12])
    ap.add_argument("--tokens", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--rounds", type=int, default=3, help="small UNet rounds, each padding off then on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    result = {"date": str(date.today()), "machine": f"{cpu_description()}, {args.threads} threads, torch "
              f"{torch.__version__}", "load_1min": round(os.getloadavg()[0], 2)}
    result["attention"] = attention_rows(args.widths, args.tokens, repeats=5)
    result["unet_small"] = unet_rows(args.rounds)
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
