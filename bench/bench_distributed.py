"""Training throughput in 1 and 2 processes (torchrun, gloo on the CPU / NCCL on CUDA) at the same global batch,
and sharded sampling (`vdmkit sample --prompts`) in 1 and 2 processes. One JSON line per setting.

Training: steps/s over the steps after a warm-up (from metrics.jsonl), and samples/s = steps/s x global batch.
Settings: 1 process with 1 and with 2 torch threads, 2 processes x 1 thread under DDP and under FSDP (the same
global batch, so the same training). Sampling: wall-clock videos/s of the whole command, start-up included.

``--memory``: memory per rank of large presets under DDP and FSDP for 8-64 GPUs, from their parameter counts and
FSDP units (built on the meta device) and activation bytes measured on the CPU: the tensors autograd saves for
the backward pass (bf16 autocast, batch 1) at two small latent sizes, whose difference gives bytes per latent
voxel (T x H x W); activations grow linearly in it (no attention matrix is stored). Needs ~9 GiB of RAM.

    .venv/bin/python bench/bench_distributed.py [--config configs/shapes.yaml] [--steps 20] [--device cpu]
    .venv/bin/python bench/bench_distributed.py --memory [--presets modelscope_t2v dit_xl] [--latent 16x32x32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vdmkit.distributed import torchrun_command

SRC = Path(__file__).resolve().parents[1] / "src"
WARM = 3  # steps left out of the timing: allocation, FSDP's lazy initialisation
PROMPTS = ["a slow red circle moving right", "a fast blue square moving up", "a slow green triangle moving left",
           "a fast yellow circle moving down", "a slow white square moving left", "a fast cyan triangle moving up",
           "a slow magenta circle moving down", "a fast orange square moving right"]


def run(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def training(config: str, steps: int, device: str, nproc: int, threads: int, parallel: str, out: Path) -> dict:
    argv = ["train", config, f"train.steps={WARM + steps}", "train.log_every=1", "train.sample_every=100000",
            "train.checkpoint_every=100000", f"train.threads={threads}", f"train.parallel={parallel}",
            f"train.device={device}", f"train.out_dir={out}", "--no-progress"]
    command = torchrun_command(nproc, argv) if nproc > 1 else [sys.executable, "-m", "vdmkit", *argv]
    wall = run(command, threads)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rate = steps / (rows[-1]["time"] - rows[WARM - 1]["time"])
    return {"steps_per_s": round(rate, 3), "samples_per_s": round(rate * rows[-1]["global_batch"], 2),
            "global_batch": rows[-1]["global_batch"], "wall_s": round(wall, 1)}


def sampling(model: Path, prompts: Path, steps: int, device: str, nproc: int, out: Path) -> dict:
    argv = ["sample", "--model", str(model), "--prompts", str(prompts), "--out-dir", str(out), "--steps", str(steps),
            "--device", device]
    command = torchrun_command(nproc, argv) if nproc > 1 else [sys.executable, "-m", "vdmkit", *argv]
    wall = run(command, 1 if nproc > 1 else 2)
    return {"videos": len(PROMPTS), "videos_per_s": round(len(PROMPTS) / wall, 3), "wall_s": round(wall, 1)}


GIB = 2**30
# bytes per parameter of the model states: fp32 weights 4 + fp32 gradients 4 + AdamW moments 8 + fp32 EMA 4;
# DDP also keeps its gradient buckets (4: gradient_as_bucket_view is off) and autocast's bf16 weight copies (2)
STATE_BYTES, DDP_BUCKET_BYTES, BF16, FP32 = 20, 4, 2, 4


def saved_bytes(model, shape: tuple[int, int, int]) -> int:
    """Bytes of the tensors autograd saves in one bf16-autocast forward of a batch of 1 at latent ``shape``, the
    fp32 weights left out (autocast's bf16 weight copies stay in: they cancel between two sizes)."""
    import torch

    from vdmkit.conditioning.condition import Condition
    from vdmkit.conditioning.text import TextCondition

    cfg, tokens = model.cfg, 77  # a CLIP-length prompt
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen, total = set(), [0]

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen and key not in weights:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    text = TextCondition(tokens=torch.randn(1, tokens, cfg.text_dim), mask=torch.ones(1, tokens, dtype=torch.bool),
                         pooled=torch.randn(1, cfg.text_dim))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(1, cfg.in_channels, *shape), torch.tensor([500.0]), Condition(text=text))
    return total[0]


def memory(presets: list[str], latent: tuple[int, int, int], ranks: list[int]) -> None:
    import math

    import torch

    from vdmkit.registry import BACKBONES

    for name in presets:
        entry = BACKBONES[name]
        with torch.device("meta"):  # counts without memory
            meta = entry.build(entry.config())
        params = sum(p.numel() for p in meta.parameters())
        units = [sum(p.numel() for p in u.parameters()) for u in meta.shard_units()]
        root = params - sum(units)  # the backbone's own parameters outside the blocks: gathered for the whole step
        del meta
        torch.manual_seed(0)
        model = entry.build(entry.config()).train()
        small, large = (2, 16, 16), (4, 16, 16)
        per_voxel = (saved_bytes(model, large) - saved_bytes(model, small)) / (math.prod(large) - math.prod(small))
        del model
        activations = per_voxel * math.prod(latent)
        ddp = params * (STATE_BYTES + DDP_BUCKET_BYTES + BF16)
        # FSDP: sharded states; two blocks gathered in bf16 at a time (the running one, the prefetched one), the
        # running block's fp32 gradient before its reduce-scatter, and the root parameters gathered throughout
        working = 2 * max(units) * BF16 + max(units) * FP32 + root * (BF16 + FP32)
        row = {"preset": name, "params_M": round(params / 1e6, 2), "fsdp_units": len(units),
               "largest_unit_M": round(max(units) / 1e6, 2), "root_M": round(root / 1e6, 2),
               "activation_KiB_per_latent_voxel": round(per_voxel / 1024, 1), "latent": "x".join(map(str, latent)),
               "activations_GiB_per_sample": round(activations / GIB, 2), "ddp_states_GiB": round(ddp / GIB, 2),
               "fsdp_states_GiB": {n: round((params * STATE_BYTES / n + working) / GIB, 2) for n in ranks}}
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory", action="store_true", help="memory per rank of --presets under DDP and FSDP")
    ap.add_argument("--presets", nargs="+", default=["modelscope_t2v", "dit_xl"])
    ap.add_argument("--latent", default="16x32x32", help="latent T x H x W of a sample (256 px, 8x VAE: 16x32x32)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--config", default="configs/shapes.yaml")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps (after 3 warm-up steps)")
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", type=int, nargs="+", help="run these settings only: 0-3 training (1 process x 1 "
                    "thread, 1 x 2 threads, 2 x 1 ddp, 2 x 1 fsdp), 4-5 sampling (1, 2 processes)")
    args = ap.parse_args()
    if args.memory:
        memory(args.presets, tuple(int(v) for v in args.latent.split("x")), args.ranks)
        return
    meta = {"config": args.config, "device": args.device, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
    settings = [("1 process, 1 thread", 1, 1, "none"), ("1 process, 2 threads", 1, 2, "none"),
                ("2 processes x 1 thread, ddp", 2, 1, "ddp"), ("2 processes x 1 thread, fsdp", 2, 1, "fsdp")]
    wanted = set(args.only) if args.only else set(range(len(settings) + 2))  # training settings, then sampling
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, (name, nproc, threads, parallel) in enumerate(settings):
            if i in wanted:
                out = root / f"run_{i}"
                print(json.dumps({"training": name, **training(args.config, args.steps, args.device, nproc,
                                                               threads, parallel, out), **meta}), flush=True)
        if not wanted & {len(settings), len(settings) + 1}:
            return
        model = root / "model"  # sampling speed does not depend on the weights: a 1-step run will do
        run([sys.executable, "-m", "vdmkit", "train", args.config, "train.steps=1", f"train.out_dir={model}",
             "--no-progress"], 2)
        prompts = root / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        for nproc in (1, 2):
            if len(settings) + nproc - 1 in wanted:
                result = sampling(model, prompts, args.sample_steps, args.device, nproc, root / f"videos_{nproc}")
                print(json.dumps({"sampling": f"{nproc} process(es)", "steps": args.sample_steps, **result,
                                  **meta}), flush=True)


if __name__ == "__main__":
    main()
