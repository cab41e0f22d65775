"""ModelScope T2V at full size on this machine: vdmkit against diffusers on identical random weights.

    .venv/bin/python bench/bench_modelscope.py build --out /tmp/modelscope-random      # once: diffusers saves it
    .venv/bin/python bench/bench_modelscope.py step --folder /tmp/modelscope-random --lib diffusers   # then vdmkit
    .venv/bin/python bench/bench_modelscope.py step --lib both --repeats 5     # bf16, both in one process, in turn
    .venv/bin/python bench/bench_modelscope.py e2e --folder ... --lib vdmkit --dtype bf16 --steps 10
    .venv/bin/python bench/bench_modelscope.py build --size small --out /tmp/modelscope-small   # 57M UNet, seconds/step
    .venv/bin/python bench/bench_modelscope.py e2e --folder /tmp/modelscope-small --lib vdmkit --compile /tmp/pkgs

``build`` makes a TextToVideoSDPipeline folder of the real configs (UNet3DConditionModel's defaults are
text-to-video-ms-1.7b's, SD's AutoencoderKL, OpenCLIP ViT-H's text tower; a byte-level tokenizer stands in for the
real vocabulary, the embedding table keeps its 49408 rows) with random weights and saves it with diffusers' own
save_pretrained: never committed. ``step --lib L`` times one denoising step (the UNet on the CFG batch,
2 x 4 x 16 x 32 x 32 latents: 16 frames of 256x256) for one library per process, after a warm-up, in fp32 and bf16
(weights cast, pure; ``--dtypes``), with the achieved TFLOP/s against a matmul peak measured first in the same
process; run it for both libraries back to back on an idle machine. ``e2e`` samples 16 frames at 256x256 end to end
in a fresh process and reports its time and peak resident memory (VmHWM). Every line printed is JSON with the date, the machine and the torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

LATENTS = (2, 4, 16, 32, 32)  # CFG batch of one 16 x 256 x 256 video
OPENCLIP_H_TEXT = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                       max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", projection_dim=1024)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=256)
# --size small: bench_backbones.py's small UNet in ModelScope's layout (diffusers' UNet3DConditionModel, 57M), a small
# SD-style VAE and a 2-layer CLIP text tower, so that whole runs take seconds per step on this CPU
SMALL_UNET = dict(block_out_channels=(64, 128, 256, 256), attention_head_dim=8, cross_attention_dim=256,
                  norm_num_groups=32, sample_size=32)
SMALL_TEXT = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", projection_dim=256)
SMALL_VAE = dict(block_out_channels=(32, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4, norm_num_groups=32,
                 sample_size=256)
MODELSCOPE_DDIM = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                       prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1)


def record(**fields) -> None:
    from bench_precision import cpu_description  # lazily: it imports vdmkit, whose import e2e times in load_s

    print(json.dumps({**fields, "date": time.strftime("%Y-%m-%d"), "machine": cpu_description(),
                      "threads": torch.get_num_threads(), "load_1min": round(os.getloadavg()[0], 2)}), flush=True)


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return float("nan")


def build(out: Path, size: str = "full") -> None:
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(0)
    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    small = size == "small"
    text = CLIPTextModel(CLIPTextConfig(**(SMALL_TEXT if small else OPENCLIP_H_TEXT), bos_token_id=len(vocab) - 2,
                                        eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1))
    unet = diffusers.UNet3DConditionModel(**SMALL_UNET) if small else diffusers.UNet3DConditionModel(sample_size=32)
    with torch.no_grad():  # the zero-initialised temporal outputs too: every layer does work
        for p in unet.parameters():
            if not p.abs().sum():
                p.normal_(std=0.02)
    pipe = diffusers.TextToVideoSDPipeline(vae=diffusers.AutoencoderKL(**(SMALL_VAE if small else SD_VAE)),
                                           text_encoder=text,
                                           tokenizer=tokenizer, unet=unet,
                                           scheduler=diffusers.DDIMScheduler(**MODELSCOPE_DDIM))
    pipe.save_pretrained(str(out), safe_serialization=True)
    record(stage="build", folder=str(out), size=size, unet_params=sum(p.numel() for p in unet.parameters()),
           text_params=sum(p.numel() for p in text.parameters()))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_flops(folder: Path) -> int:
    """FLOPs of one UNet call on the CFG batch (the same maths in both libraries), counted on a meta-device twin."""
    from vdmkit.backbones.flops import count_flops
    from vdmkit.backbones.unet3d import UNet3D
    from vdmkit.conditioning.text import TextCondition
    from vdmkit.interop.diffusers_unet import unet3d_config

    cfg = unet3d_config(json.loads((folder / "unet" / "config.json").read_text()))
    with torch.device("meta"):
        model, x, ctx = UNet3D(cfg), torch.empty(LATENTS), torch.empty(2, 77, cfg.text_dim)
        text = TextCondition(ctx, torch.ones(2, 77, dtype=torch.bool), ctx[:, 0])
        return count_flops(lambda: model(x, torch.tensor([500, 500]), text))


@torch.no_grad()
def interleaved(folder: Path, repeats: int, malloc: str | None = None) -> None:
    """Both UNets in bf16 in one process (2 x 2.8 GB of weights fit beside the activations), called in turn after a
    warm-up each, with the matmul peak re-measured between rounds: the ratio is free of the drift between processes
    on this shared machine (a peak read 2.25 and 2.47 TFLOP/s in two processes a minute apart)."""
    import diffusers
    from bench_backbones import matmul_peak  # this script's folder is on sys.path

    from vdmkit.conditioning.text import TextCondition
    from vdmkit.pipelines import TextToVideo

    malloc = set_malloc(malloc or "keep", "both")  # one process: both libraries run under the same allocation
    flops = step_flops(folder)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(LATENTS, generator=g).bfloat16(), torch.randn(2, 77, 1024, generator=g).bfloat16()
    t = torch.tensor([500, 500])
    theirs = diffusers.UNet3DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=torch.bfloat16).eval()
    ours = TextToVideo.from_pretrained(folder, dtype="bf16").backbone.eval()
    text = TextCondition(ctx, torch.ones(2, 77, dtype=torch.bool), ctx[:, 0])
    runs = {"diffusers": lambda: theirs(x, t, encoder_hidden_states=ctx).sample, "vdmkit": lambda: ours(x, t, text)}
    gap = (runs["vdmkit"]() - runs["diffusers"]()).abs().max().item()  # also the warm-up of each
    times, peaks = {lib: [] for lib in runs}, []
    for _ in range(repeats):
        peaks.append(matmul_peak(2048, 3)["bf16"])
        for lib, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[lib].append(time.perf_counter() - t0)
    peak = statistics.median(peaks)
    for lib, ts in times.items():
        seconds = statistics.median(ts)
        record(stage="unet step, interleaved (CFG batch 2, 16x32x32 latents)", lib=lib, dtype="bf16",
               seconds=round(seconds, 2), all_seconds=[round(v, 2) for v in ts], repeats=repeats,
               gflops=round(flops / seconds / 1e9), bf16_peak_gflops=round(peak),
               of_peak=f"{flops / seconds / 1e9 / peak:.0%}")
    record(stage="interleaved summary", vdmkit_speedup=round(statistics.median(times["diffusers"]) /
                                                             statistics.median(times["vdmkit"]), 3),
           max_abs_difference_bf16=gap, malloc=malloc, peak_rss_gib=peak_rss_gib())


@torch.no_grad()
def step(folder: Path, lib: str, repeats: int, dtypes: list[str]) -> None:
    """One library per process (both UNets in one process would share, and fight over, 24 GiB). The matmul peak is
    measured first in the same process, and each step's achieved TFLOP/s is reported against it."""
    from bench_backbones import matmul_peak  # this script's folder is on sys.path

    peak = matmul_peak(2048, 5)
    flops = step_flops(folder)
    record(stage="matmul peak (2048^3)", gflops={k: round(v) for k, v in peak.items()}, step_tflop=round(flops / 1e12, 2))
    g = torch.Generator().manual_seed(0)
    x, ctx, t = torch.randn(LATENTS, generator=g), torch.randn(2, 77, 1024, generator=g), torch.tensor([500, 500])
    if lib == "diffusers":
        import diffusers

        model = diffusers.UNet3DConditionModel.from_pretrained(str(folder / "unet")).eval()
    else:
        from vdmkit.pipelines import TextToVideo

        model = TextToVideo.from_pretrained(folder).backbone.eval()  # the rest of the pipeline is dropped here
    from vdmkit.conditioning.text import TextCondition

    for name in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        model.to(dtype)
        xd, cd = x.to(dtype), ctx.to(dtype)
        if lib == "diffusers":
            def run():
                return model(xd, t, encoder_hidden_states=cd).sample
        else:
            text = TextCondition(cd, torch.ones(2, 77, dtype=torch.bool), cd[:, 0])

            def run():
                return model(xd, t, text)
        seconds = timed(run, repeats)
        rate = flops / seconds / 1e9
        record(stage="unet step (CFG batch 2, 16x32x32 latents)", lib=lib, dtype=name, seconds=round(seconds, 2),
               repeats=repeats, gflops=round(rate), of_peak=f"{rate / peak[name]:.0%}", peak_rss_gib=peak_rss_gib())


@torch.no_grad()
def set_malloc(choice: str | None, lib: str) -> str:
    """glibc's allocation for this process: ``keep`` (vdmkit.device.keep_freed_memory, what the vdmkit command line
    sets) or ``default``; None: what each library's users get (keep for vdmkit, default for diffusers)."""
    from vdmkit.device import keep_freed_memory

    choice = choice or ("keep" if lib.startswith("vdmkit") else "default")
    return "keep" if choice == "keep" and keep_freed_memory() else "default"


def e2e(folder: Path, lib: str, dtype: str, steps: int, compile_dir: Path | None = None,
        malloc: str | None = None) -> None:
    malloc = set_malloc(malloc, lib)
    latents = torch.randn(1, 4, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    prompt = ["a panda playing the guitar on a sunny beach"]
    t0 = time.perf_counter()
    if lib == "vdmkit":
        from vdmkit.pipelines import TextToVideo

        pipe = TextToVideo.from_pretrained(folder, dtype=dtype)
        stats = pipe.compile(directory=compile_dir).stats if compile_dir is not None else None
        loaded = time.perf_counter()
        video = pipe(prompt, steps=steps, frames=16, latents=latents)
    else:
        import diffusers

        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        pipe = diffusers.TextToVideoSDPipeline.from_pretrained(str(folder), torch_dtype=torch_dtype)
        loaded = time.perf_counter()
        video = pipe(prompt, num_inference_steps=steps, num_frames=16, latents=latents.to(torch_dtype),
                     output_type="pt").frames
    done = time.perf_counter()
    if lib == "vdmkit" and compile_dir is not None:
        lib = f"vdmkit compiled ({stats['compiled']} compiled in {stats['compile_seconds']:.0f} s, {stats['loaded']} loaded)"
    record(stage="end to end, 16 frames 256x256", lib=lib, dtype=dtype, malloc=malloc, steps=steps,
           load_s=round(loaded - t0, 1),
           sample_s=round(done - loaded, 1), per_step_s=round((done - loaded) / steps, 2),
           output_shape=list(video.shape), peak_rss_gib=peak_rss_gib())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("build", "step", "e2e"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/modelscope-random"))
    ap.add_argument("--folder", type=Path, default=Path("/tmp/modelscope-random"))
    ap.add_argument("--lib", choices=("vdmkit", "diffusers", "both"), default="vdmkit",
                    help="step --lib both: both UNets in bf16 in one process, called in turn")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtypes", default="fp32,bf16", help="step: the dtypes to time, comma-separated")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--malloc", choices=("keep", "default"), help="glibc allocation (vdmkit.device.keep_freed_memory):"
                    " e2e default: keep for vdmkit (as its command line), default for diffusers; step --lib both: keep")
    ap.add_argument("--size", choices=("full", "small"), default="full", help="build: the real configs or small ones")
    ap.add_argument("--compile", type=Path, metavar="CACHE", help="e2e --lib vdmkit: compiled packages in CACHE "
                    "(the first run compiles and counts it in sample_s; run again for the cached time)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "build":
        build(args.out, args.size)
    elif args.what == "step" and args.lib == "both":
        interleaved(args.folder, args.repeats, args.malloc)
    elif args.what == "step":
        step(args.folder, args.lib, args.repeats, args.dtypes.split(","))
    else:
        e2e(args.folder, args.lib, args.dtype, args.steps, args.compile, args.malloc)


if __name__ == "__main__":
    main()
