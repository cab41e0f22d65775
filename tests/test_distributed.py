"""Multi-process training, sampling and evaluation on the CPU (gloo), with 2 processes started by torchrun.

What holds, and how exactly (see README "Multi-process training"):
- DDP over 2 processes with micro-batch b equals, bit for bit, one process accumulating 2 micro-batches of b
  (losses, gradient norms, EMA and raw weights, optimizer state): averaging two gradients over the ranks is the
  same floating-point sum as accumulating two halves.
- One batch of 2b (no accumulation) and FSDP compute the same maths in another order: losses, gradient norms and
  the model's predictions agree to 1e-6; the raw weights agree to 1e-6 but for a few elements whose gradient is
  rounding noise (biases just before a normalisation), which AdamW divides by its own RMS into steps of up to lr.
- A 2-process checkpoint resumed on 1 process continues bit for bit (grad_accum 2) or to 1e-6 (batch 2b).
- Sharded evaluation and sampling give the numbers one process gives (here: identical).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY
from vdmkit import cli
from vdmkit.data.captions import CaptionError, read_prompt_file
from vdmkit.distributed import (
    World,
    collectives,
    launched,
    rank_device,
    torchrun_command,
)
from vdmkit.errors import ConfigError, DeviceError, DistributedError
from vdmkit.evaluation import evaluate
from vdmkit.io.video import read_video
from vdmkit.pipelines import TextToVideo
from vdmkit.training import load_config, train
from vdmkit.training.parallel import batch_layout, parallel_mode
from vdmkit.training.randomness import choose_scheme, per_sample_draws

SRC = Path(__file__).resolve().parents[1] / "src"
LR, STEPS = 5e-4, 4
RUN = TINY + ["train.steps=4", "train.checkpoint_every=2", "train.sample_every=4", "train.batch_size=4",
              "train.cond_dropout=0.5", "train.image_ratio=0.5"]  # every random draw of a step is exercised


def torchrun(*args, script=None, timeout=120, env=None):
    """``torchrun --standalone --nproc-per-node 2 -m vdmkit ARGS`` (or SCRIPT ARGS) with this checkout's sources."""
    command = torchrun_command(2, list(args))
    if script is not None:
        command[command.index("-m", 3):command.index("-m", 3) + 2] = [str(script)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}),
                   "PYTHONPATH": os.pathsep.join([str(SRC), str(SRC.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout, check=False)


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensors(run, step: int) -> dict[str, torch.Tensor]:
    d = run / "checkpoints" / f"step_{step:07d}"
    return {**{f"ema.{k}": v for k, v in load_file(str(d / "model.safetensors")).items()},
            **load_file(str(d / "training_state.safetensors"))}


def assert_bitwise(a, b, step: int = STEPS, *, same_rng: bool = True) -> None:
    """Every tensor of checkpoint ``step`` equal; ``same_rng=False``: but for the torch RNG (model dropout), which
    each rank of a multi-process run reseeds on its own after the model is built, and one process does not."""
    ta, tb = tensors(a, step), tensors(b, step)
    ranks = re.compile(r"rng\.torch\.\d+")  # the other ranks' RNG states: only a 2-process run has them
    assert {k for k in ta if not ranks.fullmatch(k)} == {k for k in tb if not ranks.fullmatch(k)}
    for k in tb:
        assert k == "rng.torch" and not same_rng or torch.equal(ta[k], tb[k]), k
    assert [(r["loss"], r["grad_norm"]) for r in metrics(a)] == [(r["loss"], r["grad_norm"]) for r in metrics(b)]


def predictions(checkpoint: Path) -> torch.Tensor:
    pipe = TextToVideo.from_pretrained(checkpoint)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 16, 16, generator=g)
    with torch.no_grad():
        return pipe.backbone(x, torch.tensor([100.0, 700.0]), pipe.encode(["a slow red circle moving right", ""]))


def assert_same_maths(a, b, step: int = STEPS) -> None:
    """Losses, gradient norms and predictions to 1e-6; weights to 1e-6 but for AdamW-normalised rounding noise: on
    RUN's 4 steps only. Another summation order's rounding compounds step by step (configs/tiny.yaml under FSDP: step
    1 bit-identical, step 4 63.5% of the EMA weights off by > 1e-6, the loss of step 6 by 1.5e-4, relative 3e-4)."""
    ma, mb = metrics(a), metrics(b)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    for ra, rb in zip(ma, mb):
        assert abs(ra["loss"] - rb["loss"]) < 1e-6 and abs(ra["grad_norm"] - rb["grad_norm"]) < 1e-6, (ra, rb)
    ckpt = f"checkpoints/step_{step:07d}"
    assert (predictions(a / ckpt) - predictions(b / ckpt)).abs().max() < 1e-6
    ta, tb = tensors(a, step), tensors(b, step)
    weights = [k for k in ta if k.startswith(("ema.", "model."))]
    diff = torch.cat([(ta[k] - tb[k]).abs().flatten() for k in weights])
    assert diff.max() <= 2 * LR * step  # AdamW moves an element at most ~lr per step
    assert (diff > 1e-6).float().mean() < 1e-3  # measured on RUN: 0.03% of the elements, all with ~0 gradient


# ---- layout, schemes and bad inputs (no processes) ---------------------------------------------------------------

def test_the_global_batch_splits_into_disjoint_positions_and_bad_splits_name_the_valid_counts(tiny_cfg):
    tc = tiny_cfg("train.batch_size=8", "train.grad_accum=2").train
    seen = []
    for rank in range(2):
        layout = batch_layout(tc, World(rank, 2))
        assert layout.micro == 2 and layout.global_batch == 8
        seen += [p for m in range(2) for p in layout.positions(m)]
        assert layout.first_sample(3, 1) == 3 * 8 + layout.positions(1).start
    assert sorted(seen) == list(range(8))
    with pytest.raises(ConfigError, match=r"batch_size=6 .* over 4 processes .* Valid process counts with "
                                          r"grad_accum=1: 1, 2, 3, 6; or set train.batch_size to a multiple of 4"):
        batch_layout(tiny_cfg("train.batch_size=6").train, World(0, 4))


@pytest.mark.parametrize("override, match", [
    ("train.grad_accum=3", r"grad_accum=3 does not divide train.batch_size=2 .* valid grad_accum values: 1, 2"),
    ("train.grad_accum=0", "grad_accum must be >= 1"),
    ("train.parallel=zero", "train.parallel='zero' unknown; valid: none, ddp, fsdp"),
    ("train.randomness=fresh", "valid: auto, stream, per_sample"),
    ("train.timeout=0", "positive number of seconds"),
    ("train.timeout=1e15", "at most 604800"),  # an OverflowError in every rank before 2026-12-06
])
def test_bad_multi_process_options_are_refused_when_the_config_is_read(tiny_cfg, override, match):
    with pytest.raises(ConfigError, match=match):
        tiny_cfg(override)


def test_fsdp_refuses_what_it_cannot_shard_and_one_process_needs_no_wrapper(tiny_cfg, monkeypatch):
    import vdmkit.device as devices

    cpu = torch.device("cpu")
    assert parallel_mode(tiny_cfg("train.parallel=fsdp").train, World(), cpu) == "none"
    assert parallel_mode(tiny_cfg().train, World(0, 2), cpu) == "ddp"  # none under several processes: replicated
    monkeypatch.setattr(devices, "low_precision_dtype", lambda device: torch.float16)  # a GPU without bf16
    with pytest.raises(ConfigError, match="fsdp cannot shard the fp16 loss scaler .* train.parallel=ddp"):
        parallel_mode(tiny_cfg("train.parallel=fsdp", "train.precision=bf16").train, World(0, 2), cpu)


def test_the_stream_scheme_cannot_be_split_and_auto_follows_the_checkpoint():
    assert choose_scheme("auto", False, None) == "stream"  # one process: as runs always drew
    assert choose_scheme("auto", True, None) == "per_sample"
    assert choose_scheme("auto", False, "per_sample") == "per_sample"  # a 2-process run resumed on 1
    with pytest.raises(ConfigError, match="stream .* cannot be split over processes or micro-batches"):
        choose_scheme("stream", True, None)


def test_per_sample_draws_do_not_depend_on_how_the_batch_is_split(tiny_cfg):
    tc = tiny_cfg("train.cond_dropout=0.5", "train.image_ratio=0.5").train
    process = TextToVideo(tiny_cfg().pipeline()).process
    shape = (4, 3, 4, 16, 16)

    def draws(positions):
        return per_sample_draws((len(positions), *shape[1:]), tc, process, "uniform", 7, positions, 4, "cpu")

    whole, halves = draws(range(4)), [draws(range(2)), draws(range(2, 4))]
    for name in ("drop", "is_image", "t", "eps"):
        assert torch.equal(getattr(whole, name), torch.cat([getattr(h, name) for h in halves])), name
    assert not torch.equal(whole.eps, draws(range(4, 8)).eps)  # positions, not slots, decide


def test_launch_environment_devices_and_nproc_are_checked(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DistributedError, match="RANK='x' is not a non-negative integer"):
        launched()
    with pytest.raises(DeviceError, match="cuda:LOCAL_RANK; use --device cuda"):
        rank_device(torch.device("cuda", 1), World(0, 2))
    with pytest.raises(DeviceError, match="cannot share the 'mps' device"):
        rank_device(torch.device("mps"), World(0, 2))
    monkeypatch.delenv("WORLD_SIZE")
    for n in ("0", "-2"):
        assert cli.main(["train", "configs/tiny.yaml", "--nproc", n]) == 2
        assert "--nproc must be an integer >= 1" in capsys.readouterr().err
    # what every process would refuse is said once, before torchrun starts them (each printed it, then torchrun its
    # traceback, exit 1, before 2026-12-06)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("torchrun was started"))
    for argv, message in ((["--device", "cuda"], "no CUDA"), (["train.batch_size=6"], "cannot be split over 4"),
                          (["train.nope=1"], "unknown key"),
                          # found by each rank, then torchrun's traceback (a review, 2026-12-06)
                          ([f"train.init_from={tmp_path / 'nowhere'}", "train.batch_size=4"], "does not exist"),
                          (["train.init_from=default", "train.lora.rank=2", "train.lora.targets=[conv]",
                            "train.batch_size=4", "--config-dit"], "match no layer")):
        config = "configs/tiny_dit.yaml" if "--config-dit" in argv else "configs/tiny.yaml"
        argv = [a for a in argv if a != "--config-dit"]
        assert cli.main(["train", config, *argv, "--nproc", "4"]) == 2
        assert message in capsys.readouterr().err, argv
    assert cli.main(["train", "missing.yaml", "--nproc", "2"]) == 2 and "not found" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints" / "step_0000002").mkdir(parents=True)  # the run folder, as open_run checks it
    for argv, message in (([f"train.out_dir={tmp_path / 'run'}"], "already holds checkpoints; pass --resume"),
                          ([f"train.out_dir={tmp_path / 'new'}", "--resume"], "no complete checkpoint under")):
        assert cli.main(["train", "configs/tiny.yaml", *argv, "--nproc", "2"]) == 2
        assert message in capsys.readouterr().err
    command = torchrun_command(3, ["train", "c.yaml", "--resume"])
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3", "-m", "vdmkit",
                           "train", "c.yaml", "--resume"]


def test_commands_that_do_not_split_refuse_several_processes(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["train-vae", "configs/vae_frame.yaml"]) == 2
    assert "rank 1: `vdmkit train-vae` runs in one process, but torchrun started 2" in capsys.readouterr().err
    assert cli.main(["sample", "--model", "runs/x", "--prompt", "a red circle"]) == 2
    assert "give --prompts FILE --out-dir DIR" in capsys.readouterr().err
    assert cli.main(["train", "configs/tiny.yaml", "--nproc", "2"]) == 2
    assert "drop --nproc when launching with torchrun" in capsys.readouterr().err
    # eval's other actions do not split: each rank trained the classifier into one file (before 2026-12-06)
    for argv in (["train-classifier", "--train-steps", "2"], ["compare", "a.json", "b.json"]):
        assert cli.main(["eval", *argv]) == 2
        assert f"`vdmkit eval {argv[0]}` runs in one process" in capsys.readouterr().err


def test_a_failed_collective_names_the_rank_and_says_to_resume():
    peer = r"rank 1 of 2: a collective failed during step 3 \(.*Connection reset by peer\).* --resume"
    with pytest.raises(DistributedError, match=peer), collectives(World(1, 2), lambda: "step 3", "Rerun with --resume"):
        raise RuntimeError("[gloo] Read error: Connection reset by peer")
    with pytest.raises(RuntimeError, match="shape mismatch"), collectives(World(1, 2), "step 3", ""):
        raise RuntimeError("shape mismatch")  # not a collective: left alone


def test_a_collective_failing_before_the_loop_or_in_a_checkpoint_write_names_what_it_was_doing(tiny_cfg, tmp_path,
                                                                                                 monkeypatch):
    """Before 2026-12-06 a collective failing before the loop (open_run's barriers, DDP's parameter check, FSDP's
    optimizer state) was a raw gloo RuntimeError (exit 1), and one failing while rank 0 wrote checkpoint 4 of a
    4-step run said "training step 5". Here one process plays rank 1 of 2 and its collectives fail as gloo's do."""
    train_module = sys.modules["vdmkit.training.train"]  # the package's `train` is the function
    real_collectives, real_parallelize = train_module.collectives, train_module.parallelize
    monkeypatch.setattr(train_module, "collectives",
                        lambda world, what, advice: real_collectives(World(1, 2), what, advice))
    peer = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv operation")

    def fails(*args, **kwargs):
        raise peer

    monkeypatch.setattr(train_module, "parallelize", fails)
    with pytest.raises(DistributedError, match=r"^rank 1 of 2: a collective failed during setup \(loading the run, "
                                               r"wrapping the model\) \(.*Timed out.*\).*Rerun the same command"):
        train(tiny_cfg(f"train.out_dir={tmp_path / 'setup'}"), progress=False)
    monkeypatch.setattr(train_module, "parallelize", real_parallelize)
    barriers = []

    def barrier(world):  # the one after each checkpoint and preview write: the second, at step 4, fails
        barriers.append(world)
        if len(barriers) == 2:
            raise peer

    monkeypatch.setattr(train_module, "barrier", barrier)
    with pytest.raises(DistributedError, match=r"rank 1 of 2: a collective failed during writing checkpoint 4 and "
                                               r"its previews \(.*\).*Rerun with --resume"):
        train(tiny_cfg("train.steps=4", "train.checkpoint_every=2", "train.sample_every=4",
                       f"train.out_dir={tmp_path / 'run'}"), progress=False)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002", "step_0000004"]


def test_resume_is_advised_only_once_a_complete_checkpoint_exists(tiny_cfg, tmp_path, monkeypatch):
    """A collective failing before the first checkpoint advised "Rerun with --resume", which then refused: "no
    complete checkpoint" (a review, 2026-12-06). One process plays rank 1 of 2; its step-loss mean fails as gloo's."""
    train_module = sys.modules["vdmkit.training.train"]
    real_collectives, real_mean = train_module.collectives, train_module.mean
    monkeypatch.setattr(train_module, "collectives",
                        lambda world, what, advice: real_collectives(World(1, 2), what, advice))
    fail_at = [1]

    def mean(value, world):  # once per step: fails at step fail_at
        fail_at[0] -= 1
        if fail_at[0] == 0:
            raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:3466")
        return real_mean(value, world)

    monkeypatch.setattr(train_module, "mean", mean)
    cfg = tiny_cfg("train.steps=4", "train.checkpoint_every=2", "train.sample_every=100")
    with pytest.raises(DistributedError, match=r"during training step 1 .*\. Rerun the same command: no checkpoint was "
                                               r"written yet \(--resume needs one\)$"):
        train(cfg, progress=False)
    out = Path(cfg.train.out_dir)
    fail_at[0] = 3  # the same command, as advised
    with pytest.raises(DistributedError, match=rf"during training step 3 .*\. Rerun with --resume: it continues from "
                                               rf"the last complete checkpoint in {re.escape(repr(str(out)))}$"):
        train(cfg, progress=False)
    fail_at[0] = 0  # no failure
    train(cfg, resume=True, progress=False)  # as advised
    assert len(metrics(out)) == 4


def test_a_ddp_model_mismatch_between_processes_is_a_config_error(tiny_cfg, monkeypatch):
    """DDP's check that every rank built the same parameters was a raw RuntimeError traceback on every rank."""
    from torch import nn

    from vdmkit.training import parallel

    def ddp(*args, **kwargs):
        raise RuntimeError("DDP expects same model across all ranks, but Rank 1 has 295 params, while rank 0 has "
                           "inconsistent 293 params.")

    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", ddp)
    cfg = tiny_cfg()
    pipe = TextToVideo(cfg.pipeline())
    with pytest.raises(ConfigError, match=r"^the processes built different models \(DDP expects same model .* 293 "
                                          r"params\.\); start every process with the same config"):
        parallel.parallelize(nn.Identity(), pipe, pipe, "ddp", cfg.train, torch.device("cpu"))


PER_RANK = '''"""Run by torchrun: `vdmkit ARGS`, with RANK1_EXTRA (space-separated) appended to rank 1's arguments
only, as a multi-node launch with differing config files or overrides would do."""
import os
import sys

from vdmkit import cli

if __name__ == "__main__":
    extra = os.environ.get("RANK1_EXTRA", "").split() if os.environ["RANK"] == "1" else []
    sys.exit(cli.main(sys.argv[1:] + extra))
'''


@pytest.mark.distributed
def test_processes_started_with_different_configs_are_refused_naming_the_settings(tmp_path):
    """Before 2026-12-06 another train.lr on rank 1 trained two diverging replicas without a word (rank 0's saved),
    another model was DDP's raw traceback, and another train.steps ended rank 1 blaming a dead peer."""
    script = tmp_path / "per_rank.py"
    script.write_text(PER_RANK)
    done = torchrun("train", "configs/tiny.yaml", f"train.out_dir={tmp_path / 'run'}", "--no-progress", script=script,
                    env={"RANK1_EXTRA": "train.lr=0.01 train.steps=6"})
    assert done.returncode != 0
    for rank in (0, 1):
        assert f"error: rank {rank}: the 2 processes were started with different settings: train.lr (0.0005 on rank " \
               "0, 0.01 on rank 1); train.steps (4 on rank 0, 6 on rank 1); start every process with the same config " \
               "file, overrides and flags" in done.stderr, done.stderr[-3000:]  # (the two ranks' lines may interleave)
    assert re.search(r"exitcode\s*: 2 ", done.stderr) and "[rank" not in done.stderr  # typed, no traceback
    assert not (tmp_path / "run").exists()  # refused before the run folder


@pytest.mark.parametrize("text, match", [("a red circle\n\na blue square\n", "prompts.txt:2: empty line"),
                                         ("a red\x00circle\n", "prompts.txt:1: caption contains control"),
                                         ("\n", "holds no prompt"), ("", "holds no prompt")])
def test_bad_prompt_files_are_refused_naming_the_line(tmp_path, capsys, text, match):
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    assert cli.main(["sample", "--model", str(tmp_path), "--prompts", str(path), "--out-dir", str(tmp_path)]) == 2
    assert re.search(match, capsys.readouterr().err)
    path.write_bytes(b"a red \xff circle\n")

    with pytest.raises(CaptionError, match="not UTF-8"):
        read_prompt_file(path)
    path.write_text("a red circle\na blue square\n\n\n")  # blank lines after the last prompt, as editors leave
    assert read_prompt_file(path) == ["a red circle", "a blue square"]


def test_prompts_and_out_dir_go_together(tmp_path, capsys):
    for argv in (["--prompts", "p.txt"], ["--out-dir", "d"], ["--prompts", "p.txt", "--out-dir", "d", "--prompt", "x"]):
        assert cli.main(["sample", "--model", str(tmp_path), *argv]) == 2
        assert "--prompt" in capsys.readouterr().err


def test_grad_accumulation_computes_the_whole_batch(tiny_cfg, tmp_path):
    whole = train(tiny_cfg(*RUN, "train.randomness=per_sample", f"train.out_dir={tmp_path / 'whole'}"), progress=False)
    accum = train(tiny_cfg(*RUN, "train.grad_accum=2", f"train.out_dir={tmp_path / 'accum'}"), progress=False)
    assert json.loads((accum / "checkpoints/step_0000004/training_state.json").read_text())["randomness"] == "per_sample"
    assert_same_maths(whole, accum)


# ---- 2 processes ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-process DDP run (started with `vdmkit train --nproc 2`) and its 1-process references."""
    root = tmp_path_factory.mktemp("dist")
    torch.set_num_threads(1)
    done = subprocess.run([sys.executable, "-m", "vdmkit", "train", "configs/tiny.yaml", *RUN, "--nproc", "2",
                           f"train.out_dir={root / 'ddp'}", "--no-progress"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to step 4") == 1  # rank 0 reports
    accum = train(load_config("configs/tiny.yaml", [*RUN, "train.grad_accum=2", f"train.out_dir={root / 'accum'}"]),
                  progress=False)
    return root, root / "ddp", accum


@pytest.mark.distributed
def test_ddp_on_two_processes_equals_one_process_accumulating_bit_for_bit(runs):
    _, ddp, accum = runs
    doc = json.loads((ddp / "checkpoints/step_0000004/training_state.json").read_text())
    assert doc["layout"] == {"processes": 2, "grad_accum": 1, "micro_batch": 2, "global_batch": 4, "parallel": "ddp"}
    assert doc["randomness"] == "per_sample" and doc["samples_seen"] == 16
    assert_bitwise(ddp, accum, same_rng=False)
    assert "rng.torch.1" in tensors(ddp, 4) and read_video(ddp / "samples" / "step_0000004.mp4").shape[0] == 4


@pytest.mark.distributed
def test_a_two_process_checkpoint_resumes_on_one_process(runs, tmp_path):
    _, ddp, _ = runs
    for name, extra, check in [("accum", ["train.grad_accum=2"], assert_bitwise), ("whole", [], assert_same_maths)]:
        out = tmp_path / name
        shutil.copytree(ddp, out)
        shutil.rmtree(out / "checkpoints" / "step_0000004")
        train(load_config("configs/tiny.yaml", [*RUN, *extra, f"train.out_dir={out}"]), resume=True, progress=False)
        check(ddp, out)
    other = load_config("configs/tiny.yaml", [*RUN, "model.channels=[32, 64]", f"train.out_dir={tmp_path / 'whole'}"])
    with pytest.raises(ConfigError, match="trained with a different model config"):
        train(other, resume=True, progress=False)  # a checkpoint of another model is refused before any step


@pytest.mark.distributed
def test_fsdp_on_two_processes_computes_what_one_process_does(runs):
    root, _, accum = runs
    # one checkpoint: gathering FSDP's shards is a collective per tensor, slow over gloo with these tiny tensors
    done = torchrun("train", "configs/tiny.yaml", *RUN, "train.parallel=fsdp", "train.checkpoint_every=4",
                    f"train.out_dir={root / 'fsdp'}", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((root / "fsdp/checkpoints/step_0000004/training_state.json").read_text())["layout"][
        "parallel"] == "fsdp"
    assert_same_maths(root / "fsdp", accum)
    TextToVideo.from_pretrained(root / "fsdp")  # the consolidated checkpoint loads in one process


@pytest.mark.distributed
def test_a_killed_rank_ends_the_job_naming_it_and_resume_continues(runs, tmp_path):
    _, ddp, _ = runs
    out = tmp_path / "killed"
    t0 = time.monotonic()
    done = torchrun("train", "configs/tiny.yaml", *RUN, "train.timeout=30", f"train.out_dir={out}", "--no-progress",
                    script=Path(__file__).with_name("rank_killer.py"),
                    env={"FAULT": "kill", "FAULT_RANK": "1", "FAULT_STEP": "3"})
    assert done.returncode != 0 and time.monotonic() - t0 < 30
    text = done.stdout + done.stderr
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", text) and f"exitcode  : -{int(signal.SIGKILL)}" in text
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002"]
    train(load_config("configs/tiny.yaml", [*RUN, "train.grad_accum=2", f"train.out_dir={out}"]), resume=True,
          progress=False)
    assert_bitwise(ddp, out)


@pytest.mark.distributed
def test_fsdp_trains_a_dit_on_image_and_video_samples_as_one_process_does(tmp_path):
    """Each rank draws its own share of image samples, and a DiT runs its sharded blocks once for the stills and once
    for the clips: before 2026-12-06 a rank of stills alone made 1 pass while its peer made 2, and gloo aborted at
    step 1 (SIGABRT, mismatched all-gathers). Both passes now run on every rank, an empty one too."""
    common = ["configs/tiny_dit.yaml", "data.frames=8", "train.precision=fp32", "train.batch_size=4",
              "train.image_ratio=0.5", "train.steps=2", "train.checkpoint_every=2", "train.sample_every=100"]
    done = torchrun("train", *common, "train.parallel=fsdp", f"train.out_dir={tmp_path / 'fsdp'}", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    one = train(load_config(common[0], [*common[1:], "train.grad_accum=2", f"train.out_dir={tmp_path / 'one'}"]),
                progress=False)
    for a, b in zip(metrics(tmp_path / "fsdp"), metrics(one), strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-6 and abs(a["grad_norm"] - b["grad_norm"]) < 1e-6, (a, b)
    ta, tb = tensors(tmp_path / "fsdp", 2), tensors(one, 2)
    diff = torch.cat([(ta[k] - tb[k]).abs().flatten() for k in ta if k.startswith(("ema.", "model."))])
    assert (diff > 1e-6).float().mean() < 1e-3


@pytest.mark.slow
@pytest.mark.distributed
def test_an_fsdp_run_resumes_under_fsdp_exactly(tmp_path):
    """Sharded optimizer state gathered into the checkpoint and sharded again on resume: bit for bit."""
    common = ["train", "configs/tiny.yaml", *RUN, "train.parallel=fsdp", "--no-progress"]
    full = torchrun(*common, f"train.out_dir={tmp_path / 'full'}")
    half = torchrun(*common, "train.steps=2", f"train.out_dir={tmp_path / 'half'}")
    resumed = torchrun(*common, f"train.out_dir={tmp_path / 'half'}", "--resume")
    assert full.returncode == half.returncode == resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bitwise(tmp_path / "full", tmp_path / "half")


@pytest.mark.slow
@pytest.mark.distributed
def test_a_rank_that_hangs_ends_the_job_after_the_timeout(tmp_path):
    t0 = time.monotonic()
    done = torchrun("train", "configs/tiny.yaml", *RUN, "train.timeout=5", f"train.out_dir={tmp_path / 'hung'}",
                    "--no-progress", script=Path(__file__).with_name("rank_killer.py"),
                    env={"FAULT": "hang", "FAULT_RANK": "1", "FAULT_STEP": "3"})
    assert done.returncode != 0 and time.monotonic() - t0 < 60
    assert re.search(r"error: rank 0 of 2: a collective failed during training step 3 \(.*Timed out.*\).*--resume",
                     done.stderr)


HANGS = '''"""Run by torchrun: `vdmkit train` whose rank 1 hangs building its dataset (FAULT=setup), or whose rank 0
hangs writing a checkpoint's weights (FAULT=save)."""
import importlib
import os
import sys
import time

from vdmkit import cli

if __name__ == "__main__":
    train_module = importlib.import_module("vdmkit.training.train")
    checkpoint = importlib.import_module("vdmkit.io.checkpoint")

    def hang(*args, **kwargs):
        time.sleep(3600)

    if os.environ["FAULT"] == "setup" and os.environ["RANK"] == "1":
        train_module.build_dataset = hang
    if os.environ["FAULT"] == "save" and os.environ["RANK"] == "0":
        checkpoint.save_file = hang
    sys.exit(cli.main(sys.argv[1:]))
'''


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("fault, message", [
    ("setup", r"error: rank 0 of 2: a collective failed during setup \(loading the run, wrapping the model\) "
              r"\(.*Timed out.*\).*Rerun the same command"),
    # checkpoint 2, the first, never completed: --resume would refuse the run (it was advised before 2026-12-06)
    ("save", r"error: rank 1 of 2: a collective failed during writing checkpoint 2 \(.*Timed out.*\).* Rerun the "
             r"same command: no checkpoint was written yet")])
def test_a_rank_that_hangs_before_the_loop_or_in_a_checkpoint_write_is_named_with_what_the_others_did(
        tmp_path, fault, message):
    """Before 2026-12-06 a hang before the loop left rank 0 with a raw gloo traceback (exit 1, DDP's parameter check),
    and a hang while rank 0 wrote checkpoint 2 made rank 1 say "training step 3"."""
    script = tmp_path / "hangs.py"
    script.write_text(HANGS)
    done = torchrun("train", "configs/tiny.yaml", *RUN, "train.timeout=5", f"train.out_dir={tmp_path / 'hung'}",
                    "--no-progress", script=script, env={"FAULT": fault})
    assert done.returncode != 0 and re.search(message, done.stderr), done.stderr[-3000:]
    assert re.search(r"exitcode\s*: 2 ", done.stderr)  # the typed error's exit status, not a traceback's 1


FAILS = '''"""Run by torchrun: `vdmkit sample --prompts` whose rank 1 fails writing its video (FAULT=sample), or `vdmkit
eval` whose rank 1 refuses its clips (FAULT=eval); it exits late, so that torchrun does not end rank 0 before it
speaks."""
import importlib
import os
import sys
import time

from vdmkit import cli
from vdmkit.errors import ConstraintError, OutputError

if __name__ == "__main__":
    render = importlib.import_module("vdmkit.pipelines.render")
    evaluate = importlib.import_module("vdmkit.evaluation.run")

    def fails(*args, **kwargs):
        raise (OutputError if os.environ["FAULT"] == "sample" else ConstraintError)("simulated failure")

    if os.environ["RANK"] == "1":
        if os.environ["FAULT"] == "sample":
            render.render_sample = fails
        else:
            evaluate._batches = fails
    status = cli.main(sys.argv[1:])
    if status:
        time.sleep(5)  # rank 0 leaves the group only once this process has ended
    sys.exit(status)
'''


@pytest.mark.distributed
@pytest.mark.parametrize("fault, message", [
    ("sample", r"rank 0 of 2: a collective failed during sampling \(waiting for the other processes' videos\) "
               r"\(.*Connection .* by peer.*\).* rerun into a new --out-dir"),
    ("eval", r"rank 0 of 2: a collective failed during evaluation \(gathering every process's measurements\) "
             r"\(.*Connection .* by peer.*\).* No report was written")])
def test_a_rank_that_fails_in_sharded_sampling_or_evaluation_ends_the_others_with_a_typed_line(tmp_path, fault,
                                                                                              message):
    """The sharded commands called their collectives bare: when rank 1 failed writing a video (or refused a clip),
    rank 0 printed a raw gloo traceback (a review, 2026-12-06). Each rank now says one line."""
    script = tmp_path / "fails.py"
    script.write_text(FAILS)
    if fault == "sample":
        model = train(load_config("configs/tiny.yaml", ["train.steps=1", f"train.out_dir={tmp_path / 'run'}"]),
                      progress=False)
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("a slow red circle moving right\na fast blue square moving up\n")
        argv = ["sample", "--model", str(model), "--prompts", str(prompts), "--steps", "2", "--out-dir",
                str(tmp_path / "out")]
    else:
        argv = ["eval", "--real", "shapes", "--fake", "noise", "--protocol", "shapes", "--metrics", "fvd", "--num-real",
                "4", "--num-fake", "4", "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path / "r.json")]
    done = torchrun(*argv, "--no-progress", script=script, env={"FAULT": fault})
    assert done.returncode != 0 and "error: rank 1: simulated failure" in done.stderr, done.stderr[-3000:]
    assert re.search(f"^error: {message}", done.stderr, re.MULTILINE), done.stderr[-3000:]
    assert "[rank0]:" not in done.stderr  # no traceback
    if fault == "sample":  # rank 0's video is complete, rank 1's absent
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.mp4", "00000.mp4.json"]
    else:
        assert not (tmp_path / "r.json").exists()


@pytest.mark.distributed
def test_sharded_evaluation_equals_one_process(tmp_path):
    argv = ["eval", "--real", "shapes", "--fake", "noise", "--protocol", "shapes", "--metrics",
            "fvd,kvd,is,shapes,psnr,ssim", "--num-real", "10", "--num-fake", "10", "--batch-size", "4",
            "--device", "cpu", "--no-progress"]
    done = torchrun(*argv, "--out", str(tmp_path / "two.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved") == 1  # rank 0 writes the report
    two = json.loads((tmp_path / "two.json").read_text())
    one = evaluate("shapes", "noise", protocol="shapes", metrics="fvd,kvd,is,shapes,psnr,ssim", num_real=10,
                   num_fake=10, batch_size=4, device="cpu", progress=False).report
    for name, value in one["metrics"].items():
        assert abs(value["value"] - two["metrics"][name]["value"]) <= 1e-10, name
    assert one["samples"] == two["samples"] and one["counts"] == two["counts"] == {"real": 10, "fake": 10}


@pytest.mark.distributed
def test_sharded_sampling_writes_what_one_process_writes(runs, tmp_path, capsys):
    _, ddp, _ = runs
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a slow red circle moving right\na fast blue square moving up\na slow green triangle moving left\n")
    common = ["sample", "--model", str(ddp), "--prompts", str(prompts), "--steps", "2", "--seed", "5"]
    done = torchrun(*common, "--out-dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert cli.main([*common, "--out-dir", str(tmp_path / "one")]) == 0
    for i in range(3):
        name = f"{i:05d}.mp4"
        assert np.array_equal(read_video(tmp_path / "one" / name), read_video(tmp_path / "two" / name))
        meta = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert meta["seed"] == 5 + i and meta["prompt"] == prompts.read_text().splitlines()[i]
    assert cli.main(["sample", "--model", str(ddp), "--prompt", "a fast blue square moving up", "--steps", "2",
                     "--seed", "6", "--out", str(tmp_path / "single.mp4")]) == 0  # prompt 1 alone, seed 5 + 1
    assert np.array_equal(read_video(tmp_path / "single.mp4"), read_video(tmp_path / "two" / "00001.mp4"))


@pytest.mark.distributed
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_train_on_a_folder_with_image_batches(parallel, tmp_path):
    """configs/folder_tiny.yaml as shipped (one image batch in four) on 2 processes: a step's micro-batches are all
    video or all images, so both processes run the same layers (before 2026-12-05 one ran an image batch while the
    other ran a video batch, and gloo aborted on mismatched collectives)."""
    from tests.test_data_video import cut_clips

    clips = cut_clips(tmp_path / "clips")
    done = subprocess.run([sys.executable, "-m", "vdmkit", "train", "configs/folder_tiny.yaml", f"data.root={clips}",
                           "data.image_ratio=0.5", f"train.parallel={parallel}", "train.steps=4",
                           f"train.out_dir={tmp_path / 'run'}", "--nproc", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(metrics(tmp_path / "run")) == 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_rank_ends_when_the_launcher_that_started_it_is_killed():
    """A SIGKILL'd `train --nproc` (torchrun's agent cannot pass it on) left its ranks training, writing and pruning
    checkpoints and holding the run folder (a review, 2026-12-06): each rank now ends with its launcher."""
    import signal
    import subprocess
    import time

    rank = ("import time; from vdmkit.distributed import die_with_launcher; die_with_launcher(); print('ready', "
            "flush=True); time.sleep(60)")
    launcher = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                 f"c = subprocess.Popen([sys.executable, '-c', {rank!r}], stdout=subprocess.PIPE, "
                                 "text=True); assert c.stdout.readline().strip() == 'ready'; print(c.pid, flush=True); "
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    child = int(launcher.stdout.readline())
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    def ended(pid: int) -> bool:  # gone, or a zombie its new parent has not reaped (a container's init may not)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return True

    for _ in range(300):  # the kernel signals it at once; a loaded machine may take a moment to run it
        if ended(child):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the rank outlived its launcher")
