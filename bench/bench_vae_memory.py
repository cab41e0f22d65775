"""Peak memory and time of decoding a 64-frame 256x256 video: untiled vs chunked vs tiled+chunked.

Each mode runs in a fresh subprocess; peak memory is the highest resident set size seen during the decode
(sampled from /proc/self/statm every 2 ms by a thread) minus the resident set just before it, so the
model and the latents are not counted. The
tiled output is compared with the untiled one (max abs difference, PSNR).

    python bench/bench_vae_memory.py [--model runs/vae_frame] [--video-model runs/vae_video] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, sys, threading, time, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
if args["model"]:
    from vdmkit.autoencoders.load import load_autoencoder
    vae = load_autoencoder(args["model"])
else:
    from vdmkit.autoencoders.load import build_autoencoder
    from vdmkit.training import AERunConfig, load_config
    cfg = load_config(args["config"], [], cls=AERunConfig)
    vae = build_autoencoder(cfg.autoencoder, cfg.model).eval()
frames = vae.latent_frames(args["frames"])
s = vae.spatial_compression
z = torch.randn(1, vae.latent_channels, frames, args["size"] // s, args["size"] // s)
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
before, peak, done = rss(), [0], [False]
def watch():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
thread = threading.Thread(target=watch, daemon=True)
thread.start()
t = time.perf_counter()
with torch.no_grad():
    x = vae.decode(z, **args["memory"])
seconds = time.perf_counter() - t
done[0] = True
thread.join()
peak = max(peak[0], rss()) - before
if args["save"]:
    torch.save(x, args["save"])
print(json.dumps({"peak_mib": peak / 2**20, "seconds": seconds, "shape": list(x.shape)}))
"""

CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # from any working folder


def run(config, model, frames, size, memory, threads, save=None):
    payload = json.dumps({"config": config, "model": model, "frames": frames, "size": size, "memory": memory,
                          "threads": threads, "save": save})
    out = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True)
    if out.returncode:  # the child's own error (check=True showed the child's source and hid its stderr)
        raise SystemExit(f"{config} ({memory or 'untiled'}): the decode failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="trained frame VAE (default: random weights of configs/vae_frame.yaml)")
    ap.add_argument("--video-model", help="trained video VAE (default: random weights of configs/vae_video.yaml)")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import tempfile

    import torch

    rows = []
    autoencoders = [("frame_vae", str(CONFIGS / "vae_frame.yaml"), args.model, args.frames),
                    ("video_vae", str(CONFIGS / "vae_video.yaml"), args.video_model, args.frames + 1)]
    for name, config, model, frames in autoencoders:
        with tempfile.TemporaryDirectory() as tmp:
            full_path = f"{tmp}/full.pt"
            modes = [("untiled", {}, full_path), ("frame chunks of 4", {"frame_chunk": 4}, f"{tmp}/chunk.pt"),
                     ("tiles 32 (overlap 8) + chunks of 4", {"frame_chunk": 4, "tile": 32, "overlap": 8}, f"{tmp}/tile.pt")]
            for label, memory, save in modes:
                r = run(config, model, frames, args.size, memory, args.threads, save)
                if save != full_path:
                    a, b = torch.load(full_path), torch.load(save)
                    mse = float((a.clamp(-1, 1) - b.clamp(-1, 1)).div(2).square().mean())
                    r["max_abs_diff"] = float((a - b).abs().max())
                    r["psnr_vs_untiled"] = 10 * torch.log10(torch.tensor(1 / max(mse, 1e-20))).item()
                rows.append({"autoencoder": name, "mode": label, **r})
                print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"| autoencoder | decode of {args.frames} frames at {args.size}x{args.size} | peak memory (MiB) | time (s) | "
          "max abs diff vs untiled | PSNR vs untiled (dB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "-"
        p = f"{r['psnr_vs_untiled']:.1f}" if "psnr_vs_untiled" in r else "-"
        print(f"| {r['autoencoder']} | {r['mode']} | {r['peak_mib']:.0f} | {r['seconds']:.1f} | {diff} | {p} |")


if __name__ == "__main__":
    main()
