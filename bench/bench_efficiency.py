"""Steps, quality and latency in one table: every way vdmkit has to sample faster, on the shapes task.

    python bench/bench_efficiency.py quality --rows default:ddim:50 default:dpmpp_2m:8 runs/distill_default:lcm:4
    python bench/bench_efficiency.py timing --rows ... --videos 6 --threads 2
    python bench/bench_efficiency.py table                      # the markdown table of every row measured

A row is ``MODEL:SAMPLER:STEPS[:key=value,...]``: a model folder (``default`` = the bundled model, ``default+fast``
the same with its consistency adapter, as `vdmkit sample --fast`), a sampler, a step
count and any further keyword of ``pipe(...)`` (``guidance=1``, ``timesteps=auto``, ``cache={...}``: YAML values).
Guidance defaults to the model's own (3 for the teacher, 1 for a distilled student).

``quality`` samples the shapes protocol's prompts (the captions of ``ShapesDataset(seed=1234)``, the first ``--n``)
in batches of 8 seeded 1000 + batch index (so every row starts from the same noise), writes the videos with their
captions, and measures against the protocol's real set (``--n`` clips): FVD and KVD on the shapes classifier's
features, the deterministic detector's colour / shape / direction, and the PSNR of each video to the reference row's
video of the same prompt and noise (``--reference``, DDIM-50 by default). ``timing`` samples ``--videos`` single
videos per row at a fixed thread count and keeps the median seconds and the backbone calls, machine otherwise idle.
Each row's results go to ``OUT/rows/<row>.json``; ``table`` prints them all.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from pathlib import Path

import torch
import yaml

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.evaluation import evaluate
from vdmkit.evaluation.statistics import psnr
from vdmkit.io.video import write_video
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.default import default_model
from vdmkit.video import to_uint8

PROTOCOL_SEED = 1234  # the shapes protocol's real set: its captions are the prompts
BATCH = 8
REFERENCE = "default:ddim:50"
PRECISION = ["bf16"]  # --precision: every row's, unless the row says otherwise


def parse_row(row: str) -> tuple[str, str, int, dict]:
    parts = row.split(":", 3)
    if len(parts) < 3:
        raise SystemExit(f"row {row!r}: want MODEL:SAMPLER:STEPS[:key=value,...]")
    model, sampler, steps = parts[0], parts[1], int(parts[2])
    extra = {}
    if len(parts) == 4:
        for item in re.split(r",(?![^{]*})", parts[3]):  # commas outside {...}
            key, value = item.split("=", 1)
            extra[key] = yaml.safe_load(value)
    return model, sampler, steps, extra


def row_name(row: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", row).strip("_")


def load(model: str, cache: dict) -> TextToVideo:
    """``default`` is the bundled model; ``default+fast`` the same with its consistency adapter (``--fast``)."""
    if model not in cache:
        base = model.removesuffix("+fast")
        cache[model] = TextToVideo.from_pretrained(default_model() if base == "default" else base)
        if model.endswith("+fast"):
            from vdmkit.pipelines.default import DEFAULT_LCM

            cache[model].load_lora(str(DEFAULT_LCM))
    return cache[model]


def shapes_prompts(n: int) -> list[str]:
    data = ShapesDataset(ShapesConfig(seed=PROTOCOL_SEED))
    return [data[i]["caption"] for i in range(n)]


def sample(pipe: TextToVideo, prompts: list[str], sampler: str, steps: int, extra: dict, seed: int) -> torch.Tensor:
    return pipe(prompts, sampler=sampler, steps=steps, seed=seed, **{"precision": PRECISION[0], **extra})


def quality(args) -> None:
    out = Path(args.out)
    prompts = shapes_prompts(args.n)
    models: dict = {}
    reference = out / "videos" / row_name(args.reference) / "videos.pt"
    for row in args.rows:
        model, sampler, steps, extra = parse_row(row)
        pipe = load(model, models)
        folder = out / "videos" / row_name(row)
        folder.mkdir(parents=True, exist_ok=True)
        videos = []
        for b in range(0, len(prompts), BATCH):
            videos.append(sample(pipe, prompts[b:b + BATCH], sampler, steps, extra, 1000 + b // BATCH).clamp(-1, 1))
        videos = torch.cat(videos)
        torch.save(videos, folder / "videos.pt")
        for i, (video, prompt) in enumerate(zip(videos, prompts)):
            path = folder / f"{i:04d}.mp4"
            write_video(path, to_uint8(video))
            path.with_name(path.name + ".json").write_text(json.dumps({"prompt": prompt}))
        ev = evaluate("shapes", str(folder), protocol="shapes", num_real=args.n, num_fake=args.n, progress=False,
                      device="cpu")
        metrics = ev.report["metrics"]
        result = {"row": row, "model": model, "sampler": sampler, "steps": steps, **extra, "n": args.n,
                  "precision": extra.get("precision", args.precision),
                  "fvd": metrics["fvd"]["value"] if isinstance(metrics["fvd"], dict) else metrics["fvd"],
                  "kvd": metrics["kvd"]["value"] if isinstance(metrics["kvd"], dict) else metrics["kvd"],
                  "shapes": metrics.get("shapes"), "date": time.strftime("%Y-%m-%d")}
        if reference.is_file():
            result["psnr_to_reference"] = round(psnr(videos, torch.load(reference)), 2)
            result["reference"] = args.reference
        save_row(out, row, "quality", result)
        print(json.dumps(result))


def timing(args) -> None:
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    prompts = shapes_prompts(args.videos)
    models, counters = {}, {}
    for row in args.rows:
        model, sampler, steps, extra = parse_row(row)
        pipe = load(model, models)
        if model not in counters:  # one hook per loaded model
            counters[model] = count_calls(pipe)
        calls = counters[model]
        sample(pipe, prompts[:1], sampler, steps, extra, 0)  # warm-up
        seconds, calls[0] = [], 0
        for i, prompt in enumerate(prompts):
            t0 = time.perf_counter()
            sample(pipe, [prompt], sampler, steps, extra, i)
            seconds.append(time.perf_counter() - t0)
        result = {"row": row, "precision": extra.get("precision", args.precision),
                  "seconds_per_video": round(statistics.median(seconds), 3),
                  "backbone_calls_per_video": calls[0] / len(prompts), "threads": torch.get_num_threads(),
                  "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "date": time.strftime("%Y-%m-%d")}
        save_row(out, row, "timing", result)
        print(json.dumps(result))


def count_calls(pipe: TextToVideo) -> list[int]:
    """A counter of backbone forward calls (a CFG pair batched as one call counts once)."""
    calls = [0]
    pipe.backbone.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def save_row(out: Path, row: str, part: str, result: dict) -> None:
    path = out / "rows" / f"{row_name(row)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc[part] = result
    path.write_text(json.dumps(doc, indent=2))


def table(args) -> None:
    out = Path(args.out)
    reference = out / "videos" / row_name(args.reference) / "videos.pt"
    for path in sorted((out / "rows").glob("*.json")):  # rows measured before the reference existed
        q = json.loads(path.read_text()).get("quality", {})
        mine = out / "videos" / path.stem / "videos.pt"
        if q and "psnr_to_reference" not in q and reference.is_file() and mine.is_file():
            q.update(psnr_to_reference=round(psnr(torch.load(mine), torch.load(reference)), 2), reference=args.reference)
            save_row(out, q["row"], "quality", q)
    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    print("| row | calls | s/video | FVD | KVD | colour | shape | direction | PSNR to ref (dB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for doc in sorted(rows, key=lambda d: -(d.get("timing", {}).get("seconds_per_video") or 0)):
        q, t = doc.get("quality", {}), doc.get("timing", {})
        s = q.get("shapes") or {}
        cells = [q.get("row") or t.get("row"), t.get("backbone_calls_per_video", "-"), t.get("seconds_per_video", "-"),
                 fmt(q.get("fvd")), fmt(q.get("kvd")), fmt(s.get("colour_ok")), fmt(s.get("shape_ok")),
                 fmt(s.get("direction_ok")), q.get("psnr_to_reference", "-")]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) and abs(value) < 10 else \
        f"{value:.1f}" if isinstance(value, float) else str(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=("quality", "timing", "table"))
    ap.add_argument("--rows", nargs="*", default=[REFERENCE])
    ap.add_argument("--reference", default=REFERENCE)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--out", default="outputs/bench_efficiency")
    args = ap.parse_args()
    PRECISION[0] = args.precision
    if args.part != "timing":
        torch.set_num_threads(args.threads)
    {"quality": quality, "timing": timing, "table": table}[args.part](args)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
