"""LoRA fine-tuning against full fine-tuning on the default model, and what a LoRA teaches.

1. Cost: trainable parameters, peak resident memory of the training process (``os.wait4``'s ru_maxrss) and
   steps/s for a few steps of full fine-tuning and of LoRA fine-tuning from the same base, same batch.
2. Effect: a rank-r LoRA trained on the base recipe with nothing held out (so the combinations the base never saw,
   e.g. every "orange triangle", are now drawn), scored by bench/eval_shapes_model.py on the base's held-out
   combinations and on fresh prompts (forgetting), base against base + adapter.

3. A new concept (``--new-colour purple``): the base never saw the colour (nor its word, which its frozen word
   encoder reads as <unk>); a rank-r LoRA trained on the base recipe with the colour added to the palette, scored on
   prompts of the new colour (base against base + adapter) and on fresh prompts of the base's colours (forgetting).

    .venv/bin/python bench/bench_lora.py --base runs/default --steps 300 --rank 8 --out runs/lora_holdout
    .venv/bin/python bench/bench_lora.py --base runs/default --steps 400 --new-colour purple --skip cost \
        --out runs/lora_purple
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "default.yaml"
# the base's word encoder reads a new colour's word as <unk> and says so for every prompt: expected here
QUIET_VOCABULARY = {**os.environ, "PYTHONWARNINGS": "ignore:prompt"}


def train_process(overrides: list[str], threads: int) -> dict:
    """Run `vdmkit train` in a child; its peak RSS and the steps/s of its last logged step."""
    out = Path(next(o for o in overrides if o.startswith("train.out_dir=")).split("=", 1)[1])
    command = [sys.executable, "-m", "vdmkit", "train", str(CONFIG), *overrides, f"train.threads={threads}",
               "--no-progress"]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{child.stderr.read()[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024), "steps_per_s": round(rows[-1]["steps_per_s"], 3),
            "wall_s": round(wall, 1), "threads": threads}


def trainable(base: str, rank: int, targets: list[str]) -> dict:
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(base)
    full = sum(p.numel() for p in pipe.backbone.parameters()) + sum(p.numel() for p in pipe.text_encoder.parameters())
    lora.add_lora(pipe.backbone, lora.LoRAConfig(rank=rank, targets=targets))
    adapters = sum(p.numel() for p in lora.lora_parameters(pipe.backbone))
    return {"full_finetune_params": full, "lora_params": adapters, "lora_fraction": round(adapters / full, 4)}


def evaluate(model: str, lora_path: str | None, which: str, n: int, data_from: str, sampler: str, steps: int,
             out: Path, colours: list[str] = ()) -> dict:
    command = [sys.executable, str(ROOT / "bench" / "eval_shapes_model.py"), "--model", model, "--set", which,
               "--n", str(n), "--sampler", sampler, "--steps", str(steps), "--data-from", data_from,
               "--out", str(out)]
    if lora_path:
        command += ["--lora", lora_path]
    if colours:
        command += ["--colours", *colours]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=QUIET_VOCABULARY)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="runs/default")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--targets", nargs="+", default=["attn", "temporal"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--cost-steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--out", default="runs/lora_holdout")
    ap.add_argument("--new-colour", help="teach the base a colour it never saw (vdmkit.data.shapes.EXTRA_COLOURS)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["cost", "train", "eval"])
    args = ap.parse_args()
    out = Path(args.out)
    stamp = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "base": args.base}
    lora_cfg = [f"train.lora.rank={args.rank}", f"train.lora.targets=[{', '.join(args.targets)}]"]
    common = [f"train.init_from={args.base}", "data.holdout=[]", "train.sample_every=100000"]
    if args.new_colour:  # the base recipe (its held-out combinations too) with one colour more; the base's vocabulary
        from vdmkit.data.shapes import COLOURS
        from vdmkit.io.checkpoint import open_checkpoint

        vocab = open_checkpoint(args.base).read_json("config.json")["text"]["vocab"]
        common = [f"train.init_from={args.base}", f"data.colours=[{', '.join([*COLOURS, args.new_colour])}]",
                  f"text.vocab=[{', '.join(vocab)}]", "train.sample_every=100000"]
    if "cost" not in args.skip:
        print(json.dumps({"trainable": trainable(args.base, args.rank, args.targets), **stamp}), flush=True)
        for name, extra in (("full fine-tune", []), (f"LoRA r={args.rank}", lora_cfg)):
            run = out.with_name(out.name + f"_cost_{'lora' if extra else 'full'}")
            result = train_process([*common, *extra, f"train.steps={args.cost_steps}", "train.log_every=1",
                                    "train.checkpoint_every=100000", f"train.out_dir={run}"], args.threads)
            print(json.dumps({"cost": name, **result, **stamp}), flush=True)
    if "train" not in args.skip:
        resume = ["--resume"] if (out / "checkpoints").is_dir() else []
        command = [sys.executable, "-m", "vdmkit", "train", str(CONFIG), *common, *lora_cfg, f"train.lr={args.lr}",
                   "train.warmup_steps=20", f"train.steps={args.steps}", "train.checkpoint_every=100",
                   f"train.out_dir={out}", f"train.threads={args.threads}", "--no-progress", *resume]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, env=QUIET_VOCABULARY)
        print(json.dumps({"lora_training_s": round(time.perf_counter() - t0, 1), "steps": args.steps, **stamp}),
              flush=True)
    if "eval" not in args.skip:
        adapter = str(sorted((out / "checkpoints").iterdir())[-1] / "adapter.safetensors")
        # the new colour's prompts (in the LoRA run's recipe) and fresh prompts of the base's colours; or the base's
        # held-out combinations and fresh prompts
        sets = [("new colour", "fresh", str(out), [args.new_colour]), ("fresh", "fresh", args.base, [])] \
            if args.new_colour else [("holdout", "holdout", args.base, []), ("fresh", "fresh", args.base, [])]
        for name, which, data_from, colours in sets:
            for label, lora_path in (("base", None), ("base + LoRA", adapter)):
                tag = f"{name.replace(' ', '_')}_{'lora' if lora_path else 'base'}"
                summary = evaluate(args.base, lora_path, which, args.n, data_from, args.sampler, args.sample_steps,
                                   out.with_name(out.name + f"_eval_{tag}"), colours)
                print(json.dumps({"eval": name, "model": label, **summary}), flush=True)


if __name__ == "__main__":
    main()
