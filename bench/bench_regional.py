"""Regional compilation on this machine, in one run: what each way of running a backbone costs to compile and how
fast it then runs, for sampling (bf16 forwards) and training (fwd + bwd + AdamW under bf16 autocast).

    python bench/bench_regional.py                      # all models, sampling and training (about 15 min on 2 cores)
    python bench/bench_regional.py --models dit_s --package
    python bench/bench_regional.py --json out.json

Models: the bundled default (the shapes UNet, its sampling batch 2 x 3 x 16 x 32 x 32), bench_backbones' small
UNet3D and VideoDiT-S (2 x 4 x 16 x 32 x 32 latents). Modes: eager; regional (``compile(regional=True)`` /
``train.compile``: each kind of block compiled once, reused); with ``--package`` also the ahead-of-time package
(``compile()``, sampling only; its compile is not cached between runs here: a fresh folder). Per mode: the first
call's seconds (compiling included), then the median ms of ``--repeats`` calls, and for regional the number of
graphs compiled against the number of blocks. Inductor's own on-disk kernel cache is redirected to a fresh folder
so every compile is counted cold; ``--warm-cache`` keeps the user's, as a second process would find it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_precision import cpu_description

MODELS = ("shapes", "unet_small", "dit_s")


def median_ms(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1e3, 1)


def first_s(fn) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 1)


def build(name: str):
    """(backbone in eval mode, (x, t, cond) for one bf16 sampling call)."""
    import torch
    from bench_backbones import TEXT_TOKENS
    from bench_speed import bf16_inputs, small_backbones

    from vdmkit.backbones.flops import backbone_inputs
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines.default import DEFAULT_MODEL

    if name == "shapes":
        pipe = TextToVideo.from_pretrained(DEFAULT_MODEL, dtype="bf16")
        model = pipe.backbone.eval()
        x, t, cond = backbone_inputs(model, (2, 3, 16, 32, 32), TEXT_TOKENS)
        if cond.text is not None:
            cond.text = type(cond.text)(cond.text.tokens.bfloat16(), cond.text.mask, cond.text.pooled.bfloat16())
        return model, (x.bfloat16(), t, cond)
    model = dict(small_backbones())["UNet3D small" if name == "unet_small" else "VideoDiT-S"]
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised output layers would hide any difference
            p.normal_(0, 0.02)
    model = model.eval().to(torch.bfloat16)
    return model, bf16_inputs(model)


def sampling_rows(name: str, args) -> list[dict]:
    import torch

    from vdmkit.backbones.regional import RegionalCompile
    from vdmkit.pipelines.compiled import CompiledBackbone

    model, (x, t, cond) = build(name)
    rows = []
    with torch.no_grad():
        eager = model(x, t, cond).float()
        rows.append({"model": name, "what": "sampling call (bf16)", "input": list(x.shape), "mode": "eager",
                     "first_call_s": None, "ms": median_ms(lambda: model(x, t, cond), args.repeats)})
        regions = RegionalCompile(model)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        with regions.active():
            seconds = first_s(lambda: model(x, t, cond))
            ms = median_ms(lambda: model(x, t, cond), args.repeats)
            out = model(x, t, cond).float()
        rows.append({"model": name, "what": "sampling call (bf16)", "input": list(x.shape), "mode": "regional",
                     "first_call_s": seconds, "ms": ms, "blocks": len(regions.units), "kinds": regions.kinds(),
                     "graphs_compiled": torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs,
                     "max_abs_diff_to_eager": round((out - eager).abs().max().item(), 4)})
        if args.package:
            runner = CompiledBackbone(model, directory=tempfile.mkdtemp(prefix="vdmkit-bench-pkg-"),
                                      log=lambda m: None)
            seconds = first_s(lambda: runner(x, t, cond))
            out = runner(x, t, cond).float()
            rows.append({"model": name, "what": "sampling call (bf16)", "input": list(x.shape), "mode": "package",
                         "first_call_s": seconds, "ms": median_ms(lambda: runner(x, t, cond), args.repeats),
                         "max_abs_diff_to_eager": round((out - eager).abs().max().item(), 4)})
    return rows


def training_rows(name: str, args) -> list[dict]:
    import torch

    from vdmkit.backbones.regional import RegionalCompile

    model, (x, t, cond) = build(name)
    model = model.float().train()
    x = x.float()
    if cond.text is not None:
        cond.text = type(cond.text)(cond.text.tokens.float(), cond.text.mask, cond.text.pooled.float())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    regions = RegionalCompile(model)
    rows = []
    for mode in ("eager", "regional"):
        def step(compiled=mode == "regional"):
            with torch.autocast("cpu", dtype=torch.bfloat16), \
                    regions.active() if compiled else contextlib.nullcontext():
                loss = (model(x, t, cond).float() - x).square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        seconds = first_s(step)
        rows.append({"model": name, "what": "training step (fwd + bwd + AdamW, bf16 autocast)", "input": list(x.shape),
                     "mode": mode, "first_call_s": seconds, "ms": median_ms(step, args.repeats)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    ap.add_argument("--no-training", action="store_true")
    ap.add_argument("--package", action="store_true", help="also the ahead-of-time package (sampling; slow)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warm-cache", action="store_true", help="keep Inductor's on-disk cache (default: a fresh one)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.warm_cache:  # before torch is imported: every compile counted cold
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="vdmkit-bench-inductor-")
    import torch
    from bench_backbones import matmul_peak

    from vdmkit.device import keep_freed_memory

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    result = {"date": str(date.today()), "machine": f"{cpu_description()}, {args.threads} threads, torch "
              f"{torch.__version__}", "load_1min": round(os.getloadavg()[0], 2),
              "inductor_cache": "warm" if args.warm_cache else "cold", "peak_gflops": matmul_peak(2048, 5), "rows": []}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
        for row in sampling_rows(name, args) + ([] if args.no_training else training_rows(name, args)):
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
