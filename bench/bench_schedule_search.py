"""Step-schedule search on the bundled default model: the searched 8-step schedule against the default spacing, on
prompts and noise the search never saw.

    python bench/bench_schedule_search.py --threads 1                      # about 15 minutes on one thread
    python bench/bench_schedule_search.py --threads 1 --save src/vdmkit/weights/default/schedules.json

Search: dpmpp_2m, 8 steps, guidance 3, on 3 captions of a fresh draw of the training data (dataset seed 2), noise
seeds 100, 101, 102, against DPM-Solver++(2M) with 100 steps (the objective: the MSE of the final sample, pixels).
Held out: the 8 captions of bench_caching.py (dataset seed 1) with noise seed 0, against their own 100-step sample
(shared with bench_caching.py). Reported per schedule: MSE and PSNR (dB, videos in [-1, 1]) to the reference, and
the shapes detector's colour / shape / direction counts (the reference's too). ``--save`` adds the schedule to a
schedules file (the bundled default ships it) when it beats the default spacing on the held-out set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_caching import captions, psnr, reference

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.evaluation import score_video
from vdmkit.pipelines import TextToVideo, default_model
from vdmkit.sampling.schedule_search import save_schedule, search_schedule
from vdmkit.training.config import read_run_config


def scores(videos: torch.Tensor, attributes: list[dict], data: ShapesConfig) -> dict:
    rows = [score_video(v, a, background=data.background, directions=data.directions)
            for v, a in zip(videos, attributes)]
    return {k: f"{sum(r[f'{k}_ok'] for r in rows)}/{len(rows)}" for k in ("colour", "shape", "direction")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="default: the bundled default model")
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--search-prompts", type=int, default=3)
    ap.add_argument("--held-out", type=int, default=8)
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--search-seed", type=int, default=100, help="search sample k starts from the noise of this + k "
                    "(the held-out batch is drawn from seed 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", help="schedules file to add the searched schedule to, if it wins on the held-out set")
    ap.add_argument("--out", default="outputs/bench_schedule_search")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model or default_model()
    pipe = TextToVideo.from_pretrained(model)
    guidance = pipe.config.sampling.guidance
    fitted = captions(model, args.search_prompts, seed=2)
    start = time.perf_counter()
    result = search_schedule(pipe, args.sampler, args.steps, fitted, seed=args.search_seed, guidance=guidance,
                             reference_steps=100, sweeps=args.sweeps, progress=lambda line: print(line, flush=True))
    search_seconds = time.perf_counter() - start
    print(json.dumps({"timesteps": result.timesteps, "start": result.start, "mse": result.objective,
                      "start_mse": result.start_objective, "evaluations": result.evaluations}), flush=True)

    data = read_run_config(model).data
    held = ShapesDataset(ShapesConfig(**{**data.__dict__, "seed": 1}))
    items = [held[i] for i in range(args.held_out)]
    prompts = [item["caption"] for item in items]
    assert prompts == captions(model, args.held_out, seed=1)
    out = Path(args.out)
    ref = reference(pipe, prompts, 0, out.parent / "reference_dpmpp_2m_100.safetensors")
    rows = {"reference (dpmpp_2m, 100 steps)": {"scores": scores(ref, [i["attributes"] for i in items], data)}}
    for name, ts in (("default spacing", result.start), ("searched", result.timesteps)):
        videos = pipe(prompts, sampler=args.sampler, timesteps=ts, guidance=guidance, seed=0)
        rows[name] = {"timesteps": ts, "mse": ((videos.double() - ref.double()) ** 2).mean().item(),
                      "psnr": psnr(videos, ref).mean().item(),
                      "psnr_per_video": [round(v, 2) for v in psnr(videos, ref).tolist()],
                      "scores": scores(videos, [i["attributes"] for i in items], data)}
        print(name, json.dumps(rows[name]), flush=True)
    wins = rows["searched"]["mse"] < rows["default spacing"]["mse"]
    if args.save and wins:
        key = save_schedule(args.save, args.sampler, args.steps, guidance, result, pipe.model_sha256,
                            {"prompts": fitted, "seed": args.search_seed, "reference": "dpmpp_2m/100",
                             "held_out": {k: {m: v[m] for m in ("mse", "psnr")}
                                          for k, v in rows.items() if "mse" in v}})
        print(f"saved {key} in {args.save}")
    summary = {"date": time.strftime("%Y-%m-%d"), "model": str(model), "sampler": args.sampler, "steps": args.steps,
               "guidance": guidance, "threads": torch.get_num_threads(), "search_prompts": fitted,
               "held_out_prompts": prompts, "search_seconds": round(search_seconds, 1),
               "evaluations": result.evaluations, "search_mse": result.objective,
               "search_start_mse": result.start_objective, "held_out": rows, "saved": bool(args.save and wins)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
