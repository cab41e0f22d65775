"""The 64x64 latent recipe on one device (issue 22's "a 64x64 latent recipe on the GPU"): the frame VAE of
configs/vae_frame.yaml, then the latent UNet of configs/shapes_latent.yaml on it (latents encoded at every step, no
cache), each trained a few steps after a warm-up, then one video sampled. Training steps/s from metrics.jsonl, seconds
per video; JSON lines.

    python bench/bench_latent_recipe.py --device cuda [--steps 60]     # bench/gpu/session.sh tests runs it
    python bench/bench_latent_recipe.py --device cpu --steps 3         # the dry run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vdmkit.device import resolve_device
from vdmkit.pipelines import TextToVideo
from vdmkit.training import AERunConfig, load_config, train
from vdmkit.training.train_vae import train_autoencoder

WARM = 3  # steps before the timed ones: kernel selection, allocator growth


def steps_per_s(run: Path) -> float:
    rows = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "time" in r]  # steps
    timed = [r for r in rows if r["step"] > WARM]
    return len(timed) / (timed[-1]["time"] - rows[WARM - 1]["time"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=60, help="timed steps of each model")
    args = ap.parse_args()
    device = resolve_device(args.device)
    common = [f"train.device={device}", f"train.steps={WARM + args.steps}", "train.log_every=1",
              "train.checkpoint_every=100000"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        vae = Path(tmp) / "vae"
        cfg = load_config("configs/vae_frame.yaml", [*common, f"train.out_dir={vae}"], cls=AERunConfig)
        start = time.perf_counter()
        train_autoencoder(cfg, progress=False)
        print(json.dumps({"row": "latent recipe", "what": "frame VAE training (configs/vae_frame.yaml, 64x64)",
                          "steps_per_s": round(steps_per_s(vae), 3), "wall_s": round(time.perf_counter() - start, 1),
                          "device": name, "date": time.strftime("%Y-%m-%d")}), flush=True)
        run = Path(tmp) / "latent"
        cfg = load_config("configs/shapes_latent.yaml", [*common, f"train.out_dir={run}", f"latent.autoencoder={vae}",
                                                         "latent.cache=", "train.sample_every=100000"])
        start = time.perf_counter()
        train(cfg, progress=False)
        print(json.dumps({"row": "latent recipe", "what": "latent UNet training (configs/shapes_latent.yaml, 64x64 "
                          "frames as 16x16x4 latents, encoded every step)", "steps_per_s": round(steps_per_s(run), 3),
                          "wall_s": round(time.perf_counter() - start, 1), "device": name,
                          "date": time.strftime("%Y-%m-%d")}), flush=True)
        pipe = TextToVideo.from_pretrained(run, device=device)
        pipe(["a fast red circle moving left"], steps=2, seed=1)  # warm-up
        times = []
        for seed in range(3):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            video = pipe(["a fast red circle moving left"], seed=seed)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"row": "latent recipe", "what": "sampling one 16-frame 64x64 video (the model's defaults)",
                          "s_per_video": round(sorted(times)[1], 3), "samples": [round(t, 3) for t in times],
                          "shape": list(video.shape), "device": name, "date": time.strftime("%Y-%m-%d")}), flush=True)


if __name__ == "__main__":
    main()
