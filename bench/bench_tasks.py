"""The conditioned tasks on the shapes data, scored against ground truth and simple baselines.

    python bench/bench_tasks.py --conditioned runs/conditioned --upscale runs/upscale --n 32 --out outputs/bench_tasks

Clips come from the shapes generator with a seed no model trained on (``--data-seed``), every attribute combination
allowed. All sampling: ``--sampler`` at ``--steps``, ``--precision``, seed = clip index.

- image-to-video: each clip's first frame and caption -> 16 frames. First-frame PSNR against the given frame (the
  model's own frame 0, not pasted), and the detector on the generated frames 1-15: colour and shape of the given
  object, direction of the caption, single-object rate. Methods: the conditioned model (concat; one-scale CFG on the
  text, and two-scale with ``--image-guidance``), and replacement on the bundled default text-to-video model.
- interpolation x4: frames 0, 4, 8, 12 of each clip -> 13 frames; PSNR / SSIM of the 9 in-between frames against the
  clip, against linear frame blending; track jitter (the detector's jerk: mean |second difference| of the object
  centre, pixels at 32x32) and single-object rate of the 13 frames.
- super-resolution 32 -> 64: 8-frame 64x64 clips, area-downsampled x2 -> the SR model; PSNR / SSIM against the clip,
  against bicubic upsampling (clamped).
- cascade: ``--cascade`` (configs/cascade.yaml) on ``--n`` captions: seconds per video and the detector's scores.

Results: OUT/results.json and one PNG strip per task (given, then the generated frames).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vdmkit.backbones.condition_inputs import upsample
from vdmkit.conditioning.masks import downsample
from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.evaluation import detect_shapes
from vdmkit.evaluation.statistics import psnr_per_frame, ssim_per_frame
from vdmkit.io.video import upscale as nearest, write_video
from vdmkit.pipelines import TextToVideo, default_model
from vdmkit.pipelines.cascade import load_cascade, run_cascade
from vdmkit.pipelines.conditioned import image_to_video, interpolate, upscale
from vdmkit.video import to_uint8


def clips(n: int, seed: int, size: int = 32, frames: int = 16):
    data = ShapesDataset(ShapesConfig(size=size, frames=frames, seed=seed))
    items = [data[i] for i in range(n)]
    return torch.stack([it["video"] for it in items]), [it["caption"] for it in items], \
        [it["attributes"] for it in items]


def detection_scores(videos: torch.Tensor, attributes: list[dict]) -> dict:
    found = [detect_shapes(v) for v in videos]
    n = len(found)
    jerks = [d.jerk_px for d in found if d.jerk_px is not None]
    return {"colour": sum(d.colour == a["colour"] for d, a in zip(found, attributes)) / n,
            "shape": sum(d.shape == a["shape"] for d, a in zip(found, attributes)) / n,
            "direction": sum(d.direction == a["direction"] for d, a in zip(found, attributes)) / n,
            "single_object": float(np.mean([d.single_object_rate for d in found])),
            "jitter_px": float(np.mean(jerks)) if jerks else math.nan}


def one_by_one(fn, inputs, captions, **kwargs):
    """Run ``fn(input, caption, seed=i)`` per clip; (outputs, seconds per clip)."""
    outs, start = [], time.perf_counter()
    for i, (x, caption) in enumerate(zip(inputs, captions)):
        outs.append(fn(x[None], caption, seed=i, **kwargs).float().cpu().clamp(-1, 1))
    return torch.cat(outs), (time.perf_counter() - start) / len(outs)


def strip(path: Path, rows: list[torch.Tensor]) -> None:
    """Rows of frames (C, T, H, W), padded to the longest, as one PNG."""
    t = max(r.shape[1] for r in rows)
    size = max(r.shape[-1] for r in rows)
    tiles = []
    for r in rows:
        if r.shape[-1] != size:
            r = F.interpolate(r.transpose(0, 1), size=(size, size), mode="nearest").transpose(0, 1)
        r = torch.cat([r, -torch.ones(3, t - r.shape[1], size, size)], dim=1)
        tiles.append(torch.cat(list(r.unbind(1)), dim=-1))  # (C, H, T*W)
    image = torch.cat(tiles, dim=-2)[:, None]  # (C, 1, rows*H, T*W)
    write_video(path, nearest(to_uint8(image), max(1, 64 // size)))


def image_to_video_rows(args, sample, out: Path) -> list[dict]:
    videos, captions, attributes = clips(args.n, args.data_seed)
    firsts = videos[:, :, 0]
    methods = [("concat", args.conditioned, {}),
               ("concat, two-scale", args.conditioned, {"image_guidance": args.image_guidance}),
               ("replace (default model)", default_model(), {"mode": "replace"})]
    rows, pictures = [], [videos[0]]
    for name, model, extra in methods:
        pipe = TextToVideo.from_pretrained(model)
        made, seconds = one_by_one(lambda x, c, **k: image_to_video(pipe, x, c, **k), firsts, captions,
                                   **sample, **extra)
        first = psnr_per_frame(made[:, :, :1], videos[:, :, :1])[:, 0]
        rows.append({"task": "image-to-video", "method": name, "first_frame_psnr": float(np.mean(first)),
                     **{k: round(v, 3) for k, v in detection_scores(made[:, :, 1:], attributes).items()},
                     "seconds": round(seconds, 3)})
        pictures.append(made[0])
        print(json.dumps(rows[-1]), flush=True)
    strip(out / "image_to_video.png", pictures)
    return rows


def interpolation_rows(args, sample, out: Path) -> list[dict]:
    videos, captions, attributes = clips(args.n, args.data_seed + 1)
    keys = videos[:, :, 0:13:4]  # frames 0, 4, 8, 12
    truth = videos[:, :, :13]
    between = [i for i in range(13) if i % 4]
    weights = torch.tensor([(i % 4) / 4 for i in range(13)]).view(1, 1, 13, 1, 1)
    left = keys[:, :, [min(i // 4, 3) for i in range(13)]]
    right = keys[:, :, [min(i // 4 + 1, 3) for i in range(13)]]
    blended = (1 - weights) * left + weights * right
    rows, pictures = [], [truth[0]]

    def row(name, made, seconds):
        return {"task": "interpolation x4", "method": name,
                "psnr_between": float(psnr_per_frame(made[:, :, between], truth[:, :, between]).mean()),
                "ssim_between": float(ssim_per_frame(made[:, :, between], truth[:, :, between]).mean()),
                **{k: round(v, 3) for k, v in detection_scores(made, attributes).items()},
                "seconds": round(seconds, 3)}

    rows.append(row("linear blending", blended, 0.0))
    rows.append(row("ground truth", truth, 0.0))
    pictures.append(blended[0])
    for name, model, extra in [("concat", args.conditioned, {}),
                               ("replace (default model)", default_model(), {"mode": "replace"})]:
        pipe = TextToVideo.from_pretrained(model)
        made, seconds = one_by_one(lambda x, c, **k: interpolate(pipe, x, c, factor=4, **k), keys, captions,
                                   keep_known=False, **sample, **extra)
        rows.append(row(name, made, seconds))
        pictures.append(made[0])
        print(json.dumps(rows[-1]), flush=True)
    strip(out / "interpolation.png", pictures)
    return rows


def upscale_rows(args, sample, out: Path) -> list[dict]:
    videos, captions, attributes = clips(args.n, args.data_seed + 2, size=64, frames=8)
    small = downsample(videos, 2)
    bicubic = upsample(small, tuple(videos.shape[3:])).clamp(-1, 1)  # what the SR models are conditioned on

    def row(name, made, seconds):
        return {"task": "super-resolution 32->64", "method": name,
                "psnr": float(psnr_per_frame(made, videos).mean()), "ssim": float(ssim_per_frame(made, videos).mean()),
                "seconds": round(seconds, 3)}

    rows, pictures = [row("bicubic", bicubic, 0.0)], [videos[0], bicubic[0]]
    pipe = TextToVideo.from_pretrained(args.upscale)
    for level in args.noise_levels:
        made, seconds = one_by_one(lambda x, c, **k: upscale(pipe, x, c, **k), small, captions,
                                   noise_level=level, **sample)
        rows.append(row(f"SR model, noise level {level}", made, seconds))
        pictures.append(made[0])
        print(json.dumps(rows[-1]), flush=True)
    strip(out / "upscale.png", pictures)
    return rows


def cascade_rows(args, out: Path) -> list[dict]:
    _, captions, attributes = clips(args.n, args.data_seed + 3)
    cfg = load_cascade(args.cascade)
    made, seconds, stage_seconds = [], [], []
    for i, caption in enumerate(captions):
        start = time.perf_counter()
        video, stages = run_cascade(cfg, caption, seed=100 * i, precision=args.precision)
        seconds.append(time.perf_counter() - start)
        stage_seconds.append([s["seconds"] for s in stages])
        made.append(video)
    made = torch.cat(made)
    strip(out / "cascade.png", [made[0]])
    row = {"task": "cascade", "method": str(args.cascade), "size": list(made.shape[2:]),
           **{k: round(v, 3) for k, v in detection_scores(made, attributes).items()},
           "seconds": round(float(np.mean(seconds)), 3),
           "stage_seconds": [round(float(s), 3) for s in np.mean(stage_seconds, axis=0)]}
    print(json.dumps(row), flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditioned", default="runs/conditioned")
    parser.add_argument("--upscale", default="runs/upscale")
    parser.add_argument("--cascade", default="configs/cascade.yaml")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampler", default="dpmpp_2m")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--guidance", type=float, help="CFG on the text (default: each model's own)")
    parser.add_argument("--image-guidance", type=float, default=2.0)
    parser.add_argument("--noise-levels", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--data-seed", type=int, default=4242)
    parser.add_argument("--tasks", nargs="+", default=["image_to_video", "interpolation", "upscale", "cascade"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="outputs/bench_tasks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sample = {"steps": args.steps, "sampler": args.sampler, "precision": args.precision, "guidance": args.guidance}
    rows = []
    for task in args.tasks:
        if task == "image_to_video":
            rows += image_to_video_rows(args, sample, out)
        elif task == "interpolation":
            rows += interpolation_rows(args, sample, out)
        elif task == "upscale":
            rows += upscale_rows(args, sample, out)
        elif task == "cascade":
            rows += cascade_rows(args, out)
    record = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "n": args.n, **sample, "rows": rows}
    previous = out / "results.json"
    if previous.exists():  # tasks run separately accumulate
        old = json.loads(previous.read_text())
        done = {r["task"] for r in rows}
        record["rows"] = [r for r in old.get("rows", []) if r["task"] not in done] + rows
    previous.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
