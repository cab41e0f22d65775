"""Freed memory kept (``vdmkit.device.keep_freed_memory``): the same work in fresh processes with glibc's default
allocation and with the setting the command line applies, alternating, so that drift on a shared machine falls on
both sides alike.

    python bench/bench_malloc.py       # DiT-S, small UNet (bf16), the default model's video (bf16, fp32): 3 rounds
    python bench/bench_malloc.py --work modelscope --rounds 2   # ModelScope's 1.4B UNet step, bf16 (~6 min)

Each child reports the median seconds of its repeats (after a warm-up), the page faults (minor, from getrusage)
per repeat and its peak resident memory; the parent prints one JSON line per child and a summary per workload:
the median over rounds of each side and their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

WORKS = ("dit", "unet", "shapes", "shapes-fp32")


def workload(name: str):
    """(function, repeats) for one workload, built before timing."""
    if name in ("dit", "unet"):  # this script's folder is on sys.path: parent and children run it as a script
        from bench_speed import bf16_inputs, small_backbones

        model = dict(small_backbones())["VideoDiT-S" if name == "dit" else "UNet3D small"].eval().bfloat16()
        x, t, cond = bf16_inputs(model)
        return (lambda: model(x, t, cond)), 7
    if name in ("shapes", "shapes-fp32"):
        from vdmkit.pipelines import TextToVideo
        from vdmkit.pipelines.default import DEFAULT_MODEL

        precision = "fp32" if name == "shapes-fp32" else "bf16"
        pipe = TextToVideo.from_pretrained(DEFAULT_MODEL, dtype=precision)
        return (lambda: pipe(["a red circle moving left"], seed=0, precision=precision)), 3
    if name == "modelscope":
        from vdmkit.backbones import ModelScopeT2VConfig, UNet3D
        from vdmkit.conditioning.text import TextCondition
        from vdmkit.io.checkpoint import skipped_init

        with skipped_init():
            model = UNet3D(ModelScopeT2VConfig()).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(std=0.02)
        model = model.bfloat16()
        g = torch.Generator().manual_seed(0)
        x, ctx = torch.randn(2, 4, 16, 32, 32, generator=g).bfloat16(), torch.randn(2, 77, 1024, generator=g).bfloat16()
        text = TextCondition(ctx, torch.ones(2, 77, dtype=torch.bool), ctx[:, 0])
        return (lambda: model(x, torch.tensor([500, 500]), text)), 2
    raise ValueError(f"unknown workload {name!r}")


def child(name: str, keep: bool) -> None:
    from vdmkit.device import keep_freed_memory

    torch.set_num_threads(2)
    applied = keep_freed_memory() if keep else False
    fn, repeats = workload(name)
    seconds, faults = [], []
    with torch.no_grad():
        fn()
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"work": name, "keep_freed_memory": applied, "seconds": round(statistics.median(seconds), 4),
                      "page_faults_per_repeat": int(statistics.median(faults)),
                      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=",".join(WORKS),
                    help=f"comma-separated: {', '.join(WORKS)}, modelscope (default: all but modelscope)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--keep", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, bool(args.keep))
    from bench_precision import cpu_description

    for name in args.work.split(","):
        rows = {0: [], 1: []}
        for _ in range(args.rounds):
            for keep in (0, 1):
                out = subprocess.run([sys.executable, __file__, "--child", name, "--keep", str(keep)], check=True,
                                     capture_output=True, text=True).stdout
                rows[keep].append(json.loads(out.strip().splitlines()[-1]))
                print(json.dumps(rows[keep][-1]), flush=True)
        default, kept = (statistics.median(r["seconds"] for r in rows[k]) for k in (0, 1))
        print(json.dumps({"summary": name, "date": time.strftime("%Y-%m-%d"), "machine": cpu_description(),
                          "default_s": default, "kept_s": kept, "speedup": round(default / kept, 3),
                          "faults": [rows[0][0]["page_faults_per_repeat"], rows[1][0]["page_faults_per_repeat"]],
                          "peak_rss_gib": [max(r["peak_rss_gib"] for r in rows[k]) for k in (0, 1)]}), flush=True)


if __name__ == "__main__":
    main()
