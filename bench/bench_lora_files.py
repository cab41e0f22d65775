"""A diffusers-format LoRA on the full-size AnimateDiff architecture (SD 1.5 + motion modules, 1.31B parameters,
random weights): what reading it costs, and what it costs per denoising step, vdmkit against diffusers in one run.

The file is a rank-r LoRA in diffusers' peft layout (``unet.<layer>.lora_A.weight``) on every attention projection
(spatial and motion modules), the feed-forward layers and the spatial transformers' proj_in / proj_out, as style and
motion LoRAs are trained; random matrices, alpha = r. vdmkit reads it onto its UNet3D (``interop.lora_files.read_lora``:
to_k / to_v stacked onto to_kv) and applies it through hooks or merged into the weights; diffusers loads it with
``UNetMotionModel.load_lora_adapter`` (peft layers), unfused and fused. Each denoising step is one UNet call on the
classifier-free-guidance batch of 2.

    .venv/bin/python bench/bench_lora_files.py --frames 8 --size 256 --rank 32 --dtype bf16
    .venv/bin/python bench/bench_lora_files.py --tiny          # a 2-level toy, for checking the script
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
from bench_precision import cpu_description, timed  # median of repeats after a warm-up (this folder is on sys.path)

SD15 = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
            attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, sample_size=64)
TINY = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
            norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), sample_size=16)
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def lora_file(unet, rank: int, path: Path) -> int:
    """A random rank-``rank`` LoRA of ``unet``'s (diffusers UNetMotionModel) TARGETS layers, saved as diffusers saves
    one; returns its layer count."""
    from safetensors.torch import save_file

    g, tensors = torch.Generator().manual_seed(0), {}
    for name, module in unet.named_modules():
        # not the motion modules' proj_in / proj_out: diffusers calls them with input=..., which peft's layers refuse
        motion_projection = ".motion_modules." in name and name.endswith(("proj_in", "proj_out"))
        if isinstance(module, torch.nn.Linear) and name.endswith(TARGETS) and not motion_projection:
            tensors[f"unet.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.01
            tensors[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.01
    save_file(tensors, str(path))
    return len(tensors) // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="pixels (latents are size / 8)")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers

    from vdmkit.backbones import lora
    from vdmkit.interop.animatediff import inflated_unet
    from vdmkit.interop.lora_files import read_lora

    config = TINY if args.tiny else SD15
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    size = 16 if args.tiny else args.size // 8
    results = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_description(),
               "threads": args.threads, "dtype": args.dtype, "frames": args.frames, "latent": size, "rank": args.rank}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        unet2d = diffusers.UNet2DConditionModel(**config)
        adapter = diffusers.MotionAdapter(block_out_channels=config["block_out_channels"],
                                          motion_layers_per_block=config["layers_per_block"],
                                          motion_norm_num_groups=config.get("norm_num_groups", 32))
        unet2d.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        adapter.save_pretrained(str(tmp / "adapter"), safe_serialization=True)
        reference = diffusers.UNetMotionModel.from_unet2d(unet2d, adapter).eval()
        del unet2d, adapter
        results["layers"] = lora_file(reference, args.rank, tmp / "lora.safetensors")
        results["file_mb"] = round((tmp / "lora.safetensors").stat().st_size / 2**20, 1)
        ours = inflated_unet(tmp / "unet", tmp / "adapter")
        results["parameters"] = sum(p.numel() for p in ours.parameters())

        t0 = time.perf_counter()
        adapter_file = read_lora(tmp / "lora.safetensors", ours)
        lora.load_adapter(ours, adapter_file)
        results["vdmkit_read_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        reference.load_lora_adapter(str(tmp / "lora.safetensors"), prefix="unet", adapter_name="bench")
        results["diffusers_read_s"] = round(time.perf_counter() - t0, 2)
        from vdmkit.conditioning.text import TextCondition

        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 4, args.frames, size, size, generator=g)
        ctx = torch.randn(2, 77, config["cross_attention_dim"], generator=g)
        t = torch.tensor([500, 500])
        with torch.inference_mode():  # parity in fp32, once
            got = ours(x, t, TextCondition(ctx, torch.ones(ctx.shape[:2], dtype=torch.bool), ctx.mean(1)))
            expected = reference(x, t, encoder_hidden_states=ctx.repeat_interleave(args.frames, 0)).sample
            results["fp32_max_abs_difference"] = float((got - expected).abs().max())
            results["fp32_output_mean_abs"] = float(expected.abs().mean())
        ours.to(dtype)
        reference.to(dtype)
        x, ctx = x.to(dtype), ctx.to(dtype)
        text = TextCondition(ctx, torch.ones(ctx.shape[:2], dtype=torch.bool), ctx.mean(1))
        with torch.inference_mode():

            def step_ours():
                ours(x, t, text)

            def step_reference():
                reference(x, t, encoder_hidden_states=ctx.repeat_interleave(args.frames, 0))

            results["vdmkit_hooks_s"] = round(timed(step_ours, args.reps), 3)
            t0 = time.perf_counter()
            lora.merge(ours)  # what pipe.fuse_lora() / --fuse-lora do
            results["vdmkit_merge_s"] = round(time.perf_counter() - t0, 3)
            results["vdmkit_merged_s"] = round(timed(step_ours, args.reps), 3)
            lora.unmerge(ours)
            lora.remove_lora(ours)
            results["vdmkit_plain_s"] = round(timed(step_ours, args.reps), 3)
            results["diffusers_unfused_s"] = round(timed(step_reference, args.reps), 3)
            t0 = time.perf_counter()
            reference.fuse_lora(adapter_names=["bench"])
            results["diffusers_fuse_s"] = round(time.perf_counter() - t0, 3)
            results["diffusers_fused_s"] = round(timed(step_reference, args.reps), 3)
    results["peak_rss_gib"] = round(peak_gib(), 2)
    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
