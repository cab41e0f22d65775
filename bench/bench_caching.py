"""Step caching on the bundled default model: backbone calls saved against the quality lost.

    python bench/bench_caching.py --threads 1                  # 8 prompts, dpmpp_2m 20 and ddim 50, about 20 minutes
    python bench/bench_caching.py --threads 1 --probe          # per-step input/output changes, seconds

The same 8 fresh shapes captions and starting noise go through each sampler uncached, then cached at each setting.
Reported per setting: guided model calls computed / reused (one call = the conditional and unconditional passes in
one batch), the speedup in calls, ``psnr_vs_uncached`` (dB, decoded videos in [-1, 1], mean over the videos) and
``psnr_vs_ref`` for the cached and the uncached video against a 100-step DPM-Solver++(2M) sample of the same noise
(the ODE solution the few-step samplers approximate): the difference is the quality the caching costs.
``pab[:S,T,C]`` settings (attention broadcast, broadcast.py) count attention-layer calls instead of model calls;
their saving is in ``wall_speedup`` (seconds against the uncached run of the same process).
Also the reuse variants (eps / x0 / residual / extrapolate) at one threshold, and the per-step relative L1 changes of
the input x_t and of the output x0_hat that motivate the rescaled indicator (caching.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.io.checkpoint import load_tensors, save_tensors
from vdmkit.pipelines import TextToVideo, default_model
from vdmkit.sampling.caching import check_cache
from vdmkit.training.config import read_run_config

REFERENCE = ("dpmpp_2m", 100)
SETTINGS = {  # sampler, steps -> cache settings
    ("dpmpp_2m", 20): ["teacache:0.05", "teacache:0.1", "teacache:0.2", "every:2"],
    ("ddim", 50): ["teacache:0.05", "teacache:0.1", "teacache:0.2", "every:2"],
}
REUSE_AT = ("dpmpp_2m", 20, "teacache:0.1")


def settings_list(text: str) -> list[str]:
    """'teacache:0.01,pab:3,6,9,every:2' -> ['teacache:0.01', 'pab:3,6,9', 'every:2'] (pab's ranges keep their
    commas)."""
    out = []
    for part in text.split(","):
        if part.isdigit() and out and out[-1].startswith("pab:"):
            out[-1] += "," + part
        else:
            out.append(part)
    return out


def captions(model, n: int, seed: int) -> list[str]:
    """``n`` captions of a fresh draw of the model's training data (dataset ``seed``)."""
    cfg = read_run_config(model).data
    data = ShapesDataset(ShapesConfig(**{**cfg.__dict__, "seed": seed}))
    return [data[i]["caption"] for i in range(n)]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-video PSNR in dB of videos (B, C, T, H, W) in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3, 4))
    return 10 * torch.log10(4.0 / mse)


def reference(pipe, prompts: list[str], seed: int, path: Path) -> torch.Tensor:
    """The 100-step DPM-Solver++(2M) videos of ``prompts`` from ``seed``'s noise, kept in ``path`` (what they are in
    ``path``.json) so that the schedule-search benchmark reuses them."""
    key = {"prompts": prompts, "seed": seed, "sampler": list(REFERENCE), "model": pipe.model_sha256}
    about = path.with_suffix(".json")
    if path.is_file() and about.is_file() and json.loads(about.read_text()) == key:
        return load_tensors(path)["videos"]
    videos = pipe(prompts, sampler=REFERENCE[0], steps=REFERENCE[1], seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {"videos": videos})
    about.write_text(json.dumps(key))
    return videos


def probe(pipe, steps: int = 20) -> None:
    """Per step of an uncached dpmpp_2m run on 2 prompts: the relative L1 change of the input x_t and of the guided
    output x0_hat (what the cache wrapper sees) since the previous call, and their ratio (teacache's rate k)."""
    from vdmkit.registry import SAMPLERS
    from vdmkit.sampling.guidance import guided

    request = pipe.request(["a fast blue square moving up", "a slow red circle moving left"], sampler="dpmpp_2m",
                           steps=steps, seed=0)
    cond, uncond = pipe.conditions(request.prompts, ["", ""])
    x, generator = pipe.starting_noise(request)
    fn, calls = guided(pipe.denoiser(), cond, uncond, request.guidance), []

    def recorded(x_t, t):
        calls.append((x_t, fn(x_t, t)))
        return calls[-1][1]

    def rel(new, old):
        return ((new - old).abs().mean() / old.abs().mean()).item()

    SAMPLERS["dpmpp_2m"].build(recorded, x, request.ts, pipe.process, generator=generator)
    for i in range(1, len(calls)):
        d_in, d_out = rel(calls[i][0], calls[i - 1][0]), rel(calls[i][1], calls[i - 1][1])
        print(f"step {i:2d} t={int(request.ts[i]):4d}  rel-L1 x_t {d_in:.4f}  x0_hat {d_out:.4f}  "
              f"ratio {d_out / d_in:.2f}")


def timing(pipe, prompts: list[str], sampler: str, steps: int, settings: list[str], repeats: int) -> None:
    """Seconds per run of the ``prompts`` batch, plain and with each cache setting, interleaved ``repeats`` times after
    an untimed warm-up, so that neither side gets the cold first run."""
    pipe.run(pipe.request(prompts[:2], sampler=sampler, steps=2, seed=0))
    seconds: dict[str, list[float]] = {}
    for _ in range(repeats):
        for setting in ["none", *settings]:
            start = time.perf_counter()
            pipe.run(pipe.request(prompts, sampler=sampler, steps=steps, seed=0,
                                  cache=None if setting == "none" else setting))
            seconds.setdefault(setting, []).append(round(time.perf_counter() - start, 2))
    plain = sum(seconds["none"]) / repeats
    for setting, values in seconds.items():
        mean = sum(values) / repeats
        print(json.dumps({"sampler": sampler, "steps": steps, "cache": setting, "seconds": values,
                          "mean": round(mean, 2), "speedup": round(plain / mean, 3),
                          "threads": torch.get_num_threads()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="default: the bundled default model")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="outputs/bench_caching")
    ap.add_argument("--run", metavar="SAMPLER:STEPS", help="only this sampler and step count (default: both)")
    ap.add_argument("--settings", help="comma-separated cache settings for --run, e.g. teacache:0.01,teacache:0.02")
    ap.add_argument("--plain", help="comma-separated SAMPLER:STEPS to run uncached only (fewer steps instead of "
                    "caching, at the same number of calls), e.g. ddim:24,dpmpp_2m:10")
    ap.add_argument("--reuse", help="comma-separated reuse variants for every setting (default: eps, and all of them "
                    "at dpmpp_2m 20 teacache:0.1), e.g. eps,extrapolate")
    ap.add_argument("--time", metavar="SAMPLER:STEPS", help="only time plain sampling against each of --settings, "
                    "interleaved, --repeats times after a warm-up (what the pab rows' seconds come from)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--probe", action="store_true",
                    help="only print the per-step changes that motivate teacache's rate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model or default_model()
    pipe = TextToVideo.from_pretrained(model)
    if args.probe:
        return probe(pipe)
    prompts = captions(model, args.prompts, seed=1)
    if args.time:
        sampler, steps = args.time.split(":")
        return timing(pipe, prompts, sampler, int(steps), settings_list(args.settings or "pab"), args.repeats)
    out = Path(args.out)
    ref = reference(pipe, prompts, args.seed, out.parent / "reference_dpmpp_2m_100.safetensors")
    rows, runs = [], SETTINGS
    if args.plain:
        runs = {(sampler, int(steps)): [] for sampler, steps in (item.split(":") for item in args.plain.split(","))}
    if args.run:
        sampler, steps = args.run.split(":")
        runs = {(sampler, int(steps)): settings_list(args.settings) if args.settings else
                SETTINGS[(sampler, int(steps))]}

    def run(sampler, steps, cache):
        record, start = {}, time.perf_counter()
        videos = pipe.run(pipe.request(prompts, sampler=sampler, steps=steps, seed=args.seed, cache=cache),
                          record=record)
        return videos, record.get("cache"), time.perf_counter() - start

    for (sampler, steps), settings in runs.items():
        plain, _, plain_s = run(sampler, steps, None)
        base = {"sampler": sampler, "steps": steps}
        rows.append({**base, "cache": "none", "computed": steps, "reused": 0, "speedup": 1.0,
                     "psnr_vs_uncached": float("inf"), "psnr_vs_ref": psnr(plain, ref).mean().item(),
                     "seconds": round(plain_s, 1)})
        print(json.dumps(rows[-1]), flush=True)
        reuses = ("eps", "x0", "residual", "extrapolate") if (sampler, steps) == REUSE_AT[:2] else ("eps",)
        for setting in settings:
            pab = setting.startswith("pab")
            for reuse in [None] if pab else args.reuse.split(",") if args.reuse else \
                    reuses if setting == REUSE_AT[2] else ("eps",):
                spec = check_cache(setting).as_dict()
                videos, stats, seconds = run(sampler, steps, spec if pab else {**spec, "reuse": reuse})
                counts = ("attention_computed", "attention_reused") if pab else ("calls_computed", "calls_reused")
                rows.append({**base, "cache": setting, "reuse": reuse, "computed": stats[counts[0]],
                             "reused": stats[counts[1]], "speedup": stats.get("speedup"),
                             "wall_speedup": round(plain_s / seconds, 2),
                             "psnr_vs_uncached": round(psnr(videos, plain).mean().item(), 2),
                             "psnr_vs_ref": round(psnr(videos, ref).mean().item(), 2),
                             "uncached_psnr_vs_ref": round(psnr(plain, ref).mean().item(), 2),
                             "seconds": round(seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
    summary = {"date": time.strftime("%Y-%m-%d"), "model": str(model), "prompts": prompts, "seed": args.seed,
               "threads": torch.get_num_threads(), "guidance": pipe.config.sampling.guidance,
               "reference": list(REFERENCE), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
