"""Before / after in one process: a bf16 CPU inference change switched off and on in turn, on the same weights and
inputs. ``--change fused`` (the default): oneDNN's fused linear (``layers.fused_linear``) and channels-last convolution
weights (``layers.channels_last_weights``); ``--change softmax``: short attention's fp32 softmax
(``layers.FP32_SOFTMAX``).

    python bench/bench_fused.py --models shapes,small --rounds 9
    python bench/bench_fused.py --models modelscope --rounds 4 --folder /tmp/modelscope-random  # bench_modelscope build
    python bench/bench_fused.py --change softmax --models shapes,small --rounds 15

Each round times one call with the change off, then one with it on (medians reported), after a warm-up of each; the
matmul peak is measured before and after. "off" is aten's linear and the weights in their standard layout; "on" what
``from_pretrained`` gives a bf16 model on CPU. The largest difference between the two outputs is bf16 rounding.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backbones import matmul_peak  # noqa: E402
from bench_speed import bf16_inputs, small_backbones  # noqa: E402

import vdmkit.backbones.layers as layers  # noqa: E402
from vdmkit.conditioning.text import TextCondition  # noqa: E402
from vdmkit.device import keep_freed_memory  # noqa: E402
from vdmkit.pipelines import TextToVideo  # noqa: E402
from vdmkit.pipelines.default import DEFAULT_MODEL  # noqa: E402

FUSED = layers._onednn_bf16


def switch(model: torch.nn.Module, on: bool, change: str = "fused") -> None:
    if change == "softmax":
        layers.FP32_SOFTMAX = on
        return
    layers._onednn_bf16 = FUSED if on else (lambda: False)
    layout = torch.channels_last_3d if on else torch.contiguous_format
    for m in model.modules():
        if isinstance(m, (layers.FrameConv, layers.TemporalConv)):
            m.weight.data = m.weight.data.contiguous(memory_format=layout)


def cases(names: list[str], folder: Path):
    if "modelscope" in names:
        g = torch.Generator().manual_seed(0)
        unet = TextToVideo.from_pretrained(folder, dtype="bf16").backbone.eval()
        x, ctx = torch.randn(2, 4, 16, 32, 32, generator=g).bfloat16(), torch.randn(2, 77, 1024, generator=g).bfloat16()
        text = TextCondition(ctx, torch.ones(2, 77, dtype=torch.bool), ctx[:, 0])
        yield "ModelScope UNet step (2 x 4 x 16 x 32 x 32)", unet, (x, torch.tensor([500, 500]), text)
    if "shapes" in names:
        pipe = TextToVideo.from_pretrained(DEFAULT_MODEL, dtype="bf16")
        cond = pipe.encode(["a red circle moving left", ""])
        x = torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0)).bfloat16()
        yield "shapes model call (2 x 3 x 16 x 32 x 32)", pipe.backbone, (x, torch.tensor([500, 500]), cond)
    if "small" in names:
        for name, model in small_backbones():
            model = model.eval().to(torch.bfloat16)
            yield f"{name} forward (1 x 4 x 8 x 32 x 32)", model, bf16_inputs(model)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="shapes,small", help="comma-separated: shapes, small, modelscope")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--change", choices=["fused", "softmax"], default="fused")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/modelscope-random"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    print(f"bf16 peak {matmul_peak(2048, 5)['bf16']:.0f} GFLOP/s, load {os.getloadavg()[0]:.2f}", flush=True)
    for name, model, inputs in cases(args.models.split(","), args.folder):
        times, outs = {False: [], True: []}, {}
        for on in (False, True):
            switch(model, on, args.change)
            outs[on] = model(*inputs)
        for _ in range(args.rounds):
            for on in (False, True):
                switch(model, on, args.change)
                start = time.perf_counter()
                model(*inputs)
                times[on].append(time.perf_counter() - start)
        off, on = statistics.median(times[False]) * 1e3, statistics.median(times[True]) * 1e3
        gap = (outs[True].float() - outs[False].float()).abs().max().item()
        print(f"{name}: off {off:.1f} ms, on {on:.1f} ms, {off / on:.3f}x; largest difference {gap:.3g}", flush=True)
    print(f"bf16 peak {matmul_peak(2048, 5)['bf16']:.0f} GFLOP/s, load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
