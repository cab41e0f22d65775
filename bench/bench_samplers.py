"""Steps vs quality for every sampler: on a Gaussian-mixture toy with its exact denoiser, and on a trained model.

    python bench/bench_samplers.py --toy                       # VP (cosine) and rectified flow, seconds
    python bench/bench_samplers.py --model runs/shapes --prompts 2   # a trained text-to-video model, minutes

Toy: data is a 4-component Gaussian mixture in 8 dimensions, shaped as (B, 1, 2, 2, 2) videos; the exact
posterior mean E[x0 | x_t] is the denoiser. Reported per sampler and step count:
  ode_err  RMS distance to the same noise carried by DPM-Solver++(2M) with 1000 steps (the probability-flow
           ODE solution; for stochastic samplers this includes their injected noise)
  sw1      sliced Wasserstein-1 distance to fresh data (floor: two independent data sets)
  ms       wall time per sampling call
Model: the same noise and prompt through each sampler; ``ode_err`` is the RMS pixel distance (in [-1, 1]) to
DPM-Solver++(2M)-1000, ``s`` the seconds per video.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vdmkit.diffusion import DiscreteVP, RectifiedFlow
from vdmkit.registry import SAMPLERS
from vdmkit.sampling import make_timesteps, sample_dpmpp_2m
from vdmkit.sampling.generate import default_spacing

STEPS = (4, 8, 16, 25, 50)
REFERENCE_STEPS = 1000


class GaussianMixture:
    """Isotropic components (mean mu_k, std s_k, weight w_k); exact E[x0 | x_t] for x_t = a x0 + s eps."""

    def __init__(self, k: int = 4, dim: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.mu = torch.randn(k, dim, generator=g, dtype=torch.float64)
        self.std = 0.05 + 0.15 * torch.rand(k, generator=g, dtype=torch.float64)
        self.w = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
        self.shape = (1, 2, 2, 2)

    def sample(self, n: int, generator) -> torch.Tensor:
        k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        x = self.mu[k] + self.std[k, None] * torch.randn(n, self.mu.shape[1], generator=generator, dtype=torch.float64)
        return x.reshape(n, *self.shape)

    def denoiser(self, process):
        def denoise(x_t, t):
            a, s = process.alpha_sigma(t[:1], x_t)
            a, s = a.reshape(()), s.reshape(())
            x = x_t.reshape(x_t.shape[0], -1)  # (n, d)
            var = a**2 * self.std**2 + s**2  # (k,)
            d2 = ((x[:, None, :] - a * self.mu[None]) ** 2).sum(-1)  # (n, k)
            logp = torch.log(self.w) - 0.5 * x.shape[1] * torch.log(var) - 0.5 * d2 / var
            r = torch.softmax(logp, dim=1)
            means = self.mu[None] + (a * self.std**2 / var)[None, :, None] * (x[:, None, :] - a * self.mu[None])
            return (r[:, :, None] * means).sum(1).reshape(x_t.shape)
        return denoise


def sliced_w1(a: torch.Tensor, b: torch.Tensor, projections: int = 64, seed: int = 0) -> float:
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    dirs = torch.randn(a.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=a.dtype)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    return (pa - pb).abs().mean().item()


def toy(n: int = 4000) -> list[dict]:
    gmm = GaussianMixture()
    rows = []
    for pname, process in [("vp cosine", DiscreteVP.from_schedule("cosine", 1000)), ("flow", RectifiedFlow(1.0))]:
        den = gmm.denoiser(process)
        noise = torch.randn(n, *gmm.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        data = gmm.sample(n, torch.Generator().manual_seed(2))
        floor = sliced_w1(gmm.sample(n, torch.Generator().manual_seed(3)), data)
        ref = sample_dpmpp_2m(den, noise.clone(), make_timesteps(process, REFERENCE_STEPS, "trailing"), process)
        rows.append({"process": pname, "sampler": "data floor", "steps": 0, "sw1": floor})
        for name, entry in SAMPLERS.items():
            if process.name not in entry.processes:
                continue
            for steps in STEPS:
                ts = make_timesteps(process, steps, default_spacing(entry, process))
                t0 = time.perf_counter()
                out = entry.build(den, noise.clone(), ts, process, generator=torch.Generator().manual_seed(4))
                ms = (time.perf_counter() - t0) * 1000
                rows.append({"process": pname, "sampler": name, "steps": steps, "ms": ms,
                             "ode_err": (out - ref).pow(2).mean().sqrt().item(), "sw1": sliced_w1(out, data)})
    return rows


def model(path: str, prompts: int, precision: str) -> list[dict]:
    from vdmkit.data import ShapesConfig, ShapesDataset
    from vdmkit.pipelines import TextToVideo
    from vdmkit.training.config import read_run_config

    pipe = TextToVideo.from_pretrained(path)
    cfg = read_run_config(path).data
    data = ShapesDataset(ShapesConfig(**{**cfg.__dict__, "seed": 1234}), length=prompts)
    texts = [data[i]["caption"] for i in range(prompts)]
    rows = []
    call = dict(guidance=3.0, seed=0, precision=precision)
    ref = pipe(texts, steps=REFERENCE_STEPS, sampler="dpmpp_2m", **call)
    for name, entry in SAMPLERS.items():
        if pipe.process.name not in entry.processes:
            continue
        for steps in STEPS:
            t0 = time.perf_counter()
            out = pipe(texts, steps=steps, sampler=name, **call)
            s = (time.perf_counter() - t0) / prompts
            rows.append({"sampler": name, "steps": steps, "s": s, "ode_err": (out - ref).pow(2).mean().sqrt().item()})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--out", default="outputs/bench_samplers.json")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    result = {}
    if args.toy:
        result["toy"] = toy()
        print(table(result["toy"], ["process", "sampler", "steps", "ode_err", "sw1", "ms"]))
    if args.model:
        result["model"] = model(args.model, args.prompts, args.precision)
        print(table(result["model"], ["sampler", "steps", "ode_err", "s"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
