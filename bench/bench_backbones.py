"""Backbone speed on this CPU: our UNet3D and VideoDiT vs diffusers' UNet3DConditionModel, fp32 vs bf16.

    python bench/bench_backbones.py                  # tiny and small, 5 repeats (several minutes)
    python bench/bench_backbones.py --quick          # tiny only, 1 repeat, smaller peak matmul: checks it runs
    python bench/bench_backbones.py --json out.json  # also write the results
    python bench/bench_backbones.py --unet-options --sizes tiny   # every UNet3D temporal_conv x temporal_attention

In one run: the matmul peak (a 2048^3 matmul, fp32 and bf16), then for each model at input 1x4x8x32x32
with 16 text tokens: parameters, forward FLOPs (counted, 2 per multiply-add), and the median time of a
forward (no grad) and a forward + backward, in fp32 and under bf16 autocast, with the achieved GFLOP/s
as a fraction of the peak at that precision. The UNets share a ModelScope-like layout (cross-attention
at every level but the lowest, as diffusers' CrossAttnDownBlock3D x (n-1) + DownBlock3D) and 8-wide heads:

- tiny:  channels (32, 64), 1 block per level, text width 32 (diffusers: 1.3M parameters)
- small: channels (64, 128, 256, 256), 2 blocks per level, text width 256 (diffusers: 57M parameters)

Our UNet3D runs twice: with its default options, and with ModelScope's per-block layers as diffusers has them
(``DIFFUSERS_LAYERS``), the layer-for-layer comparison. The DiTs are the ``dit`` preset (tiny) and DiT-S
(small) with 2x2 patches and divided attention. diffusers is imported only here, lazily; without it its rows
are skipped.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import date
from typing import Callable

import torch
from bench_precision import cpu_description, timed  # median of repeats after a warm-up (this folder is on sys.path)

from vdmkit.backbones import DiTConfig, DiTSConfig, UNet3D, UNet3DConfig, VideoDiT
from vdmkit.backbones.unet3d import TEMPORAL_ATTENTIONS, TEMPORAL_CONVS
from vdmkit.backbones.flops import backbone_flops, backbone_inputs, count_flops, count_params

INPUT = (1, 4, 8, 32, 32)  # the comparison input (B, C, T, H, W)
TEXT_TOKENS = 16
PEAK_SIZE = 2048  # the peak measurement: a 2048^3 matmul
HEAD_DIM = 8  # diffusers' attention_head_dim=8: 8-wide heads at every level (4 heads at 32 channels, 32 at 256)
# channels per level, blocks per level, text width: the diffusers models of the issue (1.3M and 57M)
UNET_SIZES = {"tiny": ((32, 64), 1, 32), "small": ((64, 128, 256, 256), 2, 256)}
DIT_SIZES = {"tiny": DiTConfig, "small": DiTSConfig}
# our UNet3D with the layers diffusers' UNet3DConditionModel (ModelScope) has per block: a GEGLU feed-forward
# after the spatial and the temporal attention, 4 stacked temporal convs (ModelScope's TemporalConvLayer), and
# none of our additions (absolute frame and pixel positions, temporal cross-attention to the prompt)
DIFFUSERS_LAYERS = {"ff_mult": 4, "temporal_conv_layers": 4, "frame_position": "none", "spatial_position": "none",
                    "temporal_text": False}


@dataclass
class Case:
    name: str
    size: str
    params: int
    flops_fwd: int
    flops_fwd_bwd: int
    forward: Callable[[], torch.Tensor]
    parameters: list[torch.nn.Parameter]


def matmul_peak(size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of a size^3 matmul in fp32 and bf16."""
    peak = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        peak[label] = 2 * size ** 3 / timed(lambda: a @ b, repeats) / 1e9
    return peak


def ours(name: str, size: str, model: torch.nn.Module) -> Case:
    """A vdmkit backbone; FLOPs counted on a meta-device twin (nothing allocated)."""
    with torch.device("meta"):
        twin = type(model)(model.cfg)
    x, t, cond = backbone_inputs(model, INPUT, TEXT_TOKENS)
    return Case(name, size, count_params(model), backbone_flops(twin, INPUT),
                backbone_flops(twin, INPUT, backward=True), lambda: model(x, t, cond), list(model.parameters()))


def unet3d(size: str, **options) -> Case:
    channels, blocks, text_dim = UNET_SIZES[size]
    cfg = UNet3DConfig(in_channels=4, out_channels=4, channels=channels, blocks_per_level=blocks,
                       attention_levels=tuple(range(len(channels) - 1)), head_dim=HEAD_DIM,
                       text_dim=text_dim, **options)
    label = f" ({cfg.temporal_conv} conv, {cfg.temporal_attention} attention)" if options else ""
    if options.get("ff_mult"):
        label = f" (ModelScope layers as diffusers: GEGLU x{cfg.ff_mult}, {cfg.temporal_conv_layers} temporal convs)"
    return ours("vdmkit UNet3D" + label, size, UNet3D(cfg))


def unet3d_options(size: str) -> list[Case]:
    """The UNet3D at ``size`` with every model.temporal_conv x model.temporal_attention."""
    return [unet3d(size, temporal_conv=conv, temporal_attention=attention)
            for conv in TEMPORAL_CONVS for attention in TEMPORAL_ATTENTIONS]


def dit(size: str) -> Case:
    _, _, text_dim = UNET_SIZES[size]
    cfg = DIT_SIZES[size](in_channels=4, out_channels=4, text_dim=text_dim)
    return ours(f"vdmkit VideoDiT ({cfg.layout}, {cfg.width}x{cfg.depth})", size, VideoDiT(cfg))


def diffusers_unet3d(size: str) -> Case | None:
    try:
        from diffusers import UNet3DConditionModel
    except ImportError:
        return None
    channels, blocks, text_dim = UNET_SIZES[size]
    n = len(channels)
    model = UNet3DConditionModel(
        block_out_channels=channels, layers_per_block=blocks, cross_attention_dim=text_dim,
        attention_head_dim=HEAD_DIM, in_channels=4, out_channels=4, sample_size=INPUT[-1],
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1))
    x, t = torch.randn(INPUT), torch.full((INPUT[0],), 500.0)
    context = torch.randn(INPUT[0], TEXT_TOKENS, text_dim)

    def forward():
        return model(x, t, encoder_hidden_states=context).sample

    def forward_backward():
        forward().sum().backward()
    flops_bwd = count_flops(forward_backward)  # on real tensors: diffusers does not build on meta
    model.zero_grad(set_to_none=True)
    return Case("diffusers UNet3DConditionModel", size, count_params(model), count_flops(forward), flops_bwd,
                forward, list(model.parameters()))


def measure(case: Case, peak: dict[str, float], repeats: int) -> dict:
    row = {"model": case.name, "size": case.size, "params_M": round(case.params / 1e6, 2),
           "gflop_fwd": round(case.flops_fwd / 1e9, 2), "gflop_fwd_bwd": round(case.flops_fwd_bwd / 1e9, 2)}
    for precision in ("fp32", "bf16"):
        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

        def fwd():
            with torch.no_grad(), autocast():
                case.forward()

        def fwd_bwd():
            for p in case.parameters:
                p.grad = None
            with autocast():
                out = case.forward()
            out.float().sum().backward()
        for label, fn, flops in (("fwd", fwd, case.flops_fwd), ("fwd_bwd", fwd_bwd, case.flops_fwd_bwd)):
            seconds = timed(fn, repeats)
            row[f"{label}_ms_{precision}"] = round(seconds * 1e3, 1)
            row[f"{label}_gflops_{precision}"] = round(flops / seconds / 1e9, 1)
            row[f"{label}_peak_frac_{precision}"] = round(flops / seconds / 1e9 / peak[precision], 3)
    return row


def table(rows: list[dict]) -> str:
    head = ("| model | size | params (M) | GFLOP fwd | fwd fp32 ms | fwd bf16 ms | fwd+bwd fp32 ms | "
            "fwd+bwd bf16 ms | GFLOP/s fwd+bwd fp32 (of peak) | GFLOP/s fwd+bwd bf16 (of peak) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['params_M']} | {r['gflop_fwd']} | {r['fwd_ms_fp32']} | "
            f"{r['fwd_ms_bf16']} | {r['fwd_bwd_ms_fp32']} | {r['fwd_bwd_ms_bf16']} | "
            f"{r['fwd_bwd_gflops_fp32']} ({r['fwd_bwd_peak_frac_fp32']:.0%}) | "
            f"{r['fwd_bwd_gflops_bf16']} ({r['fwd_bwd_peak_frac_bf16']:.0%}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(UNET_SIZES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny only, 1 repeat, 1024^3 peak matmul")
    ap.add_argument("--no-diffusers", action="store_true")
    ap.add_argument("--unet-options", action="store_true",
                    help="only our UNet3D, once per temporal_conv x temporal_attention option")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    sizes, repeats, peak_size = (["tiny"], 1, PEAK_SIZE // 2) if args.quick else (args.sizes, args.repeats, PEAK_SIZE)
    torch.manual_seed(0)
    peak = matmul_peak(peak_size, repeats)
    rows = []
    for size in sizes:
        if args.unet_options:
            cases = unet3d_options(size)
        else:
            cases = [unet3d(size), unet3d(size, **DIFFUSERS_LAYERS), dit(size)] + (
                [] if args.no_diffusers else [diffusers_unet3d(size)])
        for case in cases:
            if case is not None:
                rows.append(measure(case, peak, repeats))
                print(json.dumps(rows[-1]), flush=True)
    results = {"date": str(date.today()), "machine": f"{cpu_description()}, "
               f"{torch.get_num_threads()} threads, torch {torch.__version__}", "input": list(INPUT),
               "text_tokens": TEXT_TOKENS, "repeats": repeats, "quick": args.quick,
               f"matmul_{peak_size}_gflops": {k: round(v, 1) for k, v in peak.items()}, "rows": rows}
    print(f"\nmatmul {peak_size}^3 peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
