"""The GPU rows of issues 21 and 22, in one run on one CUDA device. ``--tiny --device cpu`` runs every row at small
sizes on the CPU (the CUDA-graph rows run eager there) to check the script before a GPU is lent.

    python bench/bench_gpu.py --json $OUT/gpu.jsonl            # on the GPU (bench/gpu/session.sh runs it)
    python bench/bench_gpu.py --tiny --device cpu              # the dry run

Rows, each a JSON line (stdout, and --json):
- ``peak``: bf16 and fp32 (TF32 off) matmul rates, 8192^3 (1024^3 with --tiny), measured first in the same run.
- ``unet``: ModelScope T2V's UNet (diffusers' UNet3DConditionModel with its default config, which is ModelScope's;
  random weights, zero-initialised layers drawn too) and vdmkit's UNet3D holding the same weights (interop), bf16,
  forward on the CFG batch at 16x32x32 and 16x64x64 latents: diffusers, vdmkit eager, vdmkit replayed from a CUDA
  graph; the largest difference between the libraries; peak memory.
- ``kernels``: kernel launches per forward at 16x32x32 and which attention kernels ran (flash, memory-efficient,
  cuDNN, math), per library (torch.profiler).
- ``loop``: 25 DDIM steps with guidance 9 at 16x32x32 (issue 21 measured diffusers 3.44 s, vdmkit 3.69 s on an H200):
  diffusers' UNet with its DDIMScheduler, vdmkit's sampler eager and with CUDA graphs.
- ``dit``: video DiT-XL (2x2 patches, 4 x 16 x 32 x 32 latents, 77 text tokens), bf16 autocast, a training step
  (forward, backward, AdamW) at batch 8 and 2, and at batch 8 with its blocks compiled (``train.compile``: one block
  compiled, its first step's seconds recorded): model FLOPs utilisation against the bf16 peak above.
- ``shapes``: the bundled default model, 16 frames, DPM-Solver++ 20 steps, guidance as shipped, 4 prompts: seconds
  per video in fp32, pure bf16, and bf16 with CUDA graphs; the largest difference to fp32 (issue 22's "seconds per
  sampled video").
- ``e2e`` (only when asked: ``--only e2e``): a ModelScope T2V folder of the real configs, built on the device, prompt
  to 16 frames of 256 x 256 with 25 DDIM steps: diffusers bf16 against vdmkit fp32, bf16 and bf16 with CUDA graphs,
  seconds per video and PSNR against vdmkit's fp32 video (issue 21's end-to-end acceptance).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_modelscope's configs

from bench_modelscope import MODELSCOPE_DDIM, SMALL_UNET

from vdmkit.backbones.regional import RegionalCompile
from vdmkit.conditioning.condition import Condition
from vdmkit.conditioning.text import TextCondition
from vdmkit.pipelines.graphed import GraphedBackbone

ROWS = ("peak", "unet", "kernels", "loop", "dit", "shapes", "e2e")
DEFAULT_ROWS = ("peak", "unet", "kernels", "loop", "dit", "shapes")  # e2e builds a 7 GB folder: its own device call
RESULTS: list[dict] = []
PROMPTS = ["a fast red circle moving left", "a slow blue square moving up", "a green triangle moving right",
           "a fast yellow circle moving down"]


def record(json_path: Path | None, **fields) -> None:
    row = {**fields, "date": time.strftime("%Y-%m-%d"), "device": DEVICE_NAME, "torch": torch.__version__}
    RESULTS.append(row)
    print(json.dumps(row), flush=True)
    if json_path is not None:
        with json_path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, list[float]]:
    """(median seconds, all) of ``fn()`` after one warm-up call, the device synchronised around each call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), [round(t, 5) for t in times]


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """``out["peak_gib"]``: the device's peak allocated memory inside the block (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def matmul_peak(device: torch.device, size: int, repeats: int) -> dict[str, float]:
    rates = {}
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
            seconds, _ = timed(lambda: a @ b, device, repeats)
            rates[name] = 2 * size ** 3 / seconds / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return rates


def modelscope_unets(device: torch.device, tiny: bool):
    """(diffusers' UNet3DConditionModel, vdmkit's UNet3D with the same weights), bf16, eval, on ``device``."""
    import diffusers

    from vdmkit.backbones.unet3d import UNet3D
    from vdmkit.interop.diffusers_unet import from_diffusers, unet3d_config

    torch.manual_seed(0)
    with torch.device(device):
        theirs = diffusers.UNet3DConditionModel(**(SMALL_UNET if tiny else {"sample_size": 32}))
    with torch.no_grad():  # the zero-initialised temporal outputs too: every layer does work
        for p in theirs.parameters():
            if not p.abs().sum():
                p.normal_(std=0.02)
    cfg = unet3d_config(dict(theirs.config))
    with torch.device(device):
        ours = UNet3D(cfg)
    ours.load_state_dict(from_diffusers(theirs.state_dict(), cfg, ours.state_dict()))
    return theirs.to(torch.bfloat16).eval(), ours.to(torch.bfloat16).eval(), cfg


def unet_inputs(device, cfg, frames: int, size: int, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, frames, size, size, generator=g).to(device, torch.bfloat16)
    ctx = torch.randn(batch, 77, cfg.text_dim, generator=g).to(device, torch.bfloat16)
    t = torch.full((batch,), 500, device=device)
    return x, ctx, t, TextCondition(ctx, torch.ones(batch, 77, dtype=torch.bool, device=device), ctx[:, 0])


@torch.no_grad()
def unet_rows(device, theirs, ours, cfg, tiny: bool, peak: float, json_path, repeats: int) -> None:
    graphed = GraphedBackbone(ours, log=lambda m: None)
    sizes = ((4, 16),) if tiny else ((16, 32), (16, 64))
    for frames, size in sizes:
        x, ctx, t, text = unet_inputs(device, cfg, frames, size)
        runs = {"diffusers": lambda: theirs(x, t, encoder_hidden_states=ctx).sample,
                "vdmkit eager": lambda: ours(x, t, text)}
        if device.type == "cuda":
            runs["vdmkit CUDA graph"] = lambda: graphed(x, t, text)
        gap = (runs["vdmkit eager"]().float() - runs["diffusers"]().float()).abs().max().item()
        seconds = {}
        for lib, run in runs.items():
            memory = {}
            with peak_memory(device, memory):
                seconds[lib], samples = timed(run, device, repeats)
            record(json_path, row="unet", model="ModelScope T2V UNet" + (" (small)" if tiny else ""),
                   input=list(x.shape), dtype="bf16", lib=lib, ms=round(seconds[lib] * 1e3, 2), samples=samples,
                   **memory)
        record(json_path, row="unet summary", input=list(x.shape), max_abs_difference_bf16=round(gap, 4),
               eager_speedup=round(seconds["diffusers"] / seconds["vdmkit eager"], 3),
               graph_speedup=round(seconds["diffusers"] / seconds["vdmkit CUDA graph"], 3)
               if "vdmkit CUDA graph" in seconds else None, graph_stats=dict(graphed.stats), bf16_peak_gflops=peak)


def kernel_rows(device, theirs, ours, cfg, json_path) -> None:
    """Kernel launches and attention kernels of one forward per library (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    x, ctx, t, text = unet_inputs(device, cfg, 16 if device.type == "cuda" else 4, 32 if device.type == "cuda" else 16)
    activity = ProfilerActivity.CUDA if device.type == "cuda" else ProfilerActivity.CPU
    runs = {"diffusers": lambda: theirs(x, t, encoder_hidden_states=ctx), "vdmkit": lambda: ours(x, t, text)}
    for lib, run in runs.items():
        run()
        sync(device)
        with torch.no_grad(), profile(activities=[activity]) as prof:
            run()
            sync(device)
        events = [e for e in prof.events() if (e.device_type.name == "CUDA") == (device.type == "cuda")]
        names = [e.name for e in events]
        kinds = {"flash": "flash", "memory-efficient": "fmha_cutlass", "cudnn attention": "_sdpa", "math softmax":
                 "softmax"}
        record(json_path, row="kernels", lib=lib, input=list(x.shape), kernels=len(names),
               attention={k: sum(pattern in n.lower() for n in names) for k, pattern in kinds.items()},
               layout_copies=sum("nchwToNhwc" in n or "nhwcToNchw" in n for n in names))


def loop_rows(device, theirs, ours, cfg, tiny: bool, json_path, steps: int = 25, guidance: float = 9.0) -> None:
    """25 DDIM steps with classifier-free guidance on one 16x32x32 latent video (the CFG batch of 2 per call)."""
    import diffusers

    from vdmkit.diffusion.denoiser import Denoiser
    from vdmkit.interop.diffusers_pipeline import scheduler_config
    from vdmkit.sampling.generate import generate
    from vdmkit.sampling.timesteps import make_timesteps

    frames, size = (4, 16) if tiny else (16, 32)
    x, ctx, _, _ = unet_inputs(device, cfg, frames, size, batch=1)
    empty = torch.zeros_like(ctx)
    both = torch.cat([empty, ctx])
    scheduler = diffusers.DDIMScheduler(**MODELSCOPE_DDIM)

    def theirs_loop():
        scheduler.set_timesteps(steps)
        latents = x
        for t in scheduler.timesteps:
            eps = theirs(torch.cat([latents] * 2), t, encoder_hidden_states=both).sample
            uncond, cond = eps.chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
        return latents

    diffusion, sampling = scheduler_config({"_class_name": "DDIMScheduler", **MODELSCOPE_DDIM})
    process = diffusion.build_process()
    ts = make_timesteps(process, steps, sampling["spacing"], offset=sampling["offset"], final=sampling["final"],
                        previous=sampling["previous"])
    mask = torch.ones(1, 77, dtype=torch.bool, device=device)
    cond = Condition(text=TextCondition(ctx, mask, ctx[:, 0]))
    uncond = Condition(text=TextCondition(empty, mask, empty[:, 0]))
    graphed = GraphedBackbone(ours, log=lambda m: None)

    def ours_loop(model):
        denoiser = Denoiser(model, process, diffusion.prediction)
        return generate(denoiser, x.float(), ts, cond, uncond, sampler="ddim", guidance=guidance, process=process)

    runs = {"diffusers UNet + DDIMScheduler": theirs_loop, "vdmkit eager": lambda: ours_loop(ours)}
    if device.type == "cuda":
        runs["vdmkit CUDA graph"] = lambda: ours_loop(graphed)
    outs, seconds = {}, {}
    with torch.no_grad():
        for lib, run in runs.items():
            outs[lib] = run().float()
            seconds[lib], samples = timed(run, device, 2)
            record(json_path, row="loop", steps=steps, guidance=guidance, latents=list(x.shape), dtype="bf16",
                   lib=lib, seconds=round(seconds[lib], 3), samples=samples)
    reference = outs["diffusers UNet + DDIMScheduler"]
    record(json_path, row="loop summary", **{f"speedup {lib}": round(seconds["diffusers UNet + DDIMScheduler"] / s, 3)
                                             for lib, s in seconds.items()},
           max_abs_difference_to_diffusers={lib: round((o - reference).abs().max().item(), 4)
                                            for lib, o in outs.items()}, graph_stats=dict(graphed.stats))


def dit_rows(device, tiny: bool, peak: float, json_path, repeats: int) -> None:
    from vdmkit.backbones import VideoDiT
    from vdmkit.backbones.dit import DiTConfig, DiTXLConfig
    from vdmkit.backbones.flops import backbone_flops

    preset = DiTConfig if tiny else DiTXLConfig
    cfg = preset(in_channels=4, out_channels=4, text_dim=1024)
    frames, size = (4, 16) if tiny else (16, 32)
    with torch.device(device):
        model = VideoDiT(cfg)
    with torch.device("meta"):
        twin = VideoDiT(cfg)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    regions = RegionalCompile(model)  # train.compile: each kind of block compiled once (one for a DiT)
    for mode, batch in (("eager", 8), ("eager", 2), ("regional compile", 8)):
        flops = backbone_flops(twin, (batch, 4, frames, size, size), backward=True, text_tokens=77)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 4, frames, size, size, generator=g).to(device)
        t = torch.randint(0, 1000, (batch,), generator=g).to(device)
        ctx = torch.randn(batch, 77, 1024, generator=g).to(device)
        text = TextCondition(ctx, torch.ones(batch, 77, dtype=torch.bool, device=device), ctx[:, 0])
        compiled = mode != "eager"

        def step():
            with autocast, regions.active() if compiled else contextlib.nullcontext():
                loss = (model(x, t, text).float() - x).square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        compile_s = None
        if compiled:  # the first step compiles the block (forward and backward)
            start = time.perf_counter()
            step()
            sync(device)
            compile_s = round(time.perf_counter() - start, 1)
        memory = {}
        with peak_memory(device, memory):
            seconds, samples = timed(step, device, repeats)
        achieved = flops / seconds / 1e9
        record(json_path, row="dit", model="VideoDiT-XL" if not tiny else "VideoDiT tiny", params=params,
               input=[batch, 4, frames, size, size], what="training step (fwd + bwd + AdamW), bf16 autocast",
               mode=mode, first_step_s=compile_s, ms=round(seconds * 1e3, 1), samples=samples,
               gflop_per_step=round(flops / 1e9), achieved_gflops=round(achieved), mfu=f"{achieved / peak:.1%}",
               bf16_peak_gflops=round(peak), **memory)


@torch.no_grad()
def shapes_rows(device, tiny: bool, json_path) -> None:
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines.default import DEFAULT_MODEL

    steps = 4 if tiny else 20
    reference, results = None, {}
    for name, dtype, precision, graphs in (("fp32", "fp32", "fp32", False), ("pure bf16", "bf16", "bf16", False),
                                           ("bf16 + CUDA graphs", "bf16", "bf16", True)):
        if graphs and device.type != "cuda":
            continue
        pipe = TextToVideo.from_pretrained(DEFAULT_MODEL, device=device, dtype=dtype)
        stats = pipe.cuda_graphs(log=lambda m: None).stats if graphs else None
        videos, times = [], []
        pipe(PROMPTS[:1], steps=steps, seed=99, precision=precision)  # warm-up (and the capture)
        for i, prompt in enumerate(PROMPTS):
            sync(device)
            t0 = time.perf_counter()
            videos.append(pipe([prompt], steps=steps, seed=i, precision=precision, sampler="dpmpp_2m").float().cpu())
            sync(device)
            times.append(time.perf_counter() - t0)
        video = torch.cat(videos)
        reference = video if reference is None else reference
        results[name] = statistics.median(times)
        record(json_path, row="shapes", model="bundled default", frames=video.shape[2], steps=steps, path=name,
               s_per_video=round(results[name], 4), samples=[round(t, 4) for t in times],
               max_abs_difference_to_fp32=round((video - reference).abs().max().item(), 4),
               graph_stats=dict(stats) if stats else None)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two videos in [-1, 1] (peak-to-peak 2); None for identical ones."""
    mse = (a.float() - b.float()).square().mean().item()
    return None if mse == 0 else round(10 * math.log10(4 / mse), 2)


def e2e_rows(device, tiny: bool, json_path, repeats: int, steps: int = 25) -> None:
    """Issue 21's end-to-end acceptance: a ModelScope T2V pipeline folder (random weights, the real configs; built on
    the device, saved by diffusers), prompt to 16 frames of 256 x 256 with DDIM and guidance as the folder says,
    in diffusers (bf16) and vdmkit (fp32, bf16, bf16 with CUDA graphs) on the same given latents: seconds per video
    and PSNR against vdmkit's own fp32 video."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="vdmkit-e2e-"))
    try:
        _e2e(root / "modelscope", device, tiny, json_path, repeats, steps)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # 7 GB at full size


def _e2e(folder: Path, device, tiny: bool, json_path, repeats: int, steps: int) -> None:
    import diffusers
    from bench_modelscope import build

    from vdmkit.pipelines import TextToVideo

    start = time.perf_counter()
    with torch.device(device):  # random weights drawn on the device: seconds, not minutes
        build(folder, "small" if tiny else "full")
    record(json_path, row="e2e build", folder=str(folder), seconds=round(time.perf_counter() - start, 1))
    if tiny:
        steps = 2
    latents = torch.randn(1, 4, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    prompt = ["a panda playing the guitar on a sunny beach"]
    seconds, videos = {}, {}
    with torch.no_grad():
        for name, dtype, graphs in (("vdmkit fp32", "fp32", False), ("vdmkit bf16", "bf16", False),
                                    ("vdmkit bf16 + CUDA graphs", "bf16", True)):
            if graphs and device.type != "cuda":
                continue
            pipe = TextToVideo.from_pretrained(folder, device=device, dtype=dtype)
            stats = pipe.cuda_graphs(log=lambda m: None).stats if graphs else None
            out = {}

            def run(pipe=pipe, dtype=dtype, out=out):
                out["video"] = pipe(prompt, steps=steps, frames=16, latents=latents, precision=dtype)

            seconds[name], samples = timed(run, device, repeats)
            videos[name] = out["video"].float().cpu()
            record(json_path, row="e2e", lib=name, steps=steps, frames=16, size=256,
                   s_per_video=round(seconds[name], 3), samples=samples, psnr_to_vdmkit_fp32_db=psnr(videos[name], videos["vdmkit fp32"]),
                   graph_stats=dict(stats) if stats else None)
            del pipe
            if device.type == "cuda":
                torch.cuda.empty_cache()
        theirs = diffusers.TextToVideoSDPipeline.from_pretrained(str(folder), torch_dtype=torch.bfloat16).to(device)
        theirs.set_progress_bar_config(disable=True)
        seconds["diffusers bf16"], samples = timed(
            lambda: theirs(prompt, num_inference_steps=steps, num_frames=16, output_type="pt",
                           latents=latents.to(device, torch.bfloat16)).frames, device, repeats)
        record(json_path, row="e2e", lib="diffusers bf16", steps=steps, frames=16, size=256,
               s_per_video=round(seconds["diffusers bf16"], 3), samples=samples)
    record(json_path, row="e2e summary", **{f"speedup over diffusers bf16: {name}":
                                            round(seconds["diffusers bf16"] / s, 3) for name, s in seconds.items()})


def main() -> None:
    global DEVICE_NAME
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small sizes: the dry run of the script")
    ap.add_argument("--only", default=",".join(DEFAULT_ROWS), help=f"comma-separated rows ({', '.join(ROWS)}; "
                    f"default: all but e2e)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="append the rows to this file (JSON lines)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --tiny --device cpu for the dry run")
    DEVICE_NAME = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                   f"cpu ({torch.get_num_threads()} threads)")
    rows = set(args.only.split(","))
    if unknown := rows - set(ROWS):
        raise SystemExit(f"unknown rows {sorted(unknown)}; valid: {', '.join(ROWS)}")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 throughout
    peak = matmul_peak(device, 1024 if args.tiny else 8192, 3 if args.tiny else 10)
    record(args.json, row="peak", size=1024 if args.tiny else 8192, gflops={k: round(v) for k, v in peak.items()})
    if rows & {"unet", "kernels", "loop"}:
        try:
            models = modelscope_unets(device, args.tiny)
        except ImportError as err:
            record(args.json, row="unet", skipped=f"diffusers is not installed ({err})")
        else:
            for name, fn in (("unet", lambda: unet_rows(device, *models, args.tiny, round(peak["bf16"]), args.json,
                                                         args.repeats)),
                             ("kernels", lambda: kernel_rows(device, *models, args.json)),
                             ("loop", lambda: loop_rows(device, *models, args.tiny, args.json))):
                if name in rows:
                    guarded(name, fn, args.json)
            del models
    if "shapes" in rows:
        guarded("shapes", lambda: shapes_rows(device, args.tiny, args.json), args.json)
    if "dit" in rows:  # last: its compiled training step compiles first, and a timeout then loses no other row
        guarded("dit", lambda: dit_rows(device, args.tiny, peak["bf16"], args.json, args.repeats), args.json)
    if "e2e" in rows:
        guarded("e2e", lambda: e2e_rows(device, args.tiny, args.json, min(args.repeats, 2)), args.json)


def guarded(name: str, fn, json_path) -> None:
    """Run one row group; a failure (out of memory, a missing kernel) is recorded and the next group runs: one GPU
    lease, every row that can be measured."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - recorded, with its type and message
        import traceback

        traceback.print_exc()
        record(json_path, row=name, failed=f"{type(err).__name__}: {str(err)[:300]}")
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


DEVICE_NAME = ""

if __name__ == "__main__":
    main()
