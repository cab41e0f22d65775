"""CUDA-graph replay of the backbone (pipelines/graphed.py). On the CPU the capture is stood in for by a recorder that
does what a CUDA graph replay does with its recorded kernels: it runs the captured call again on the same static input
buffers and writes the same output storage. Inputs left uncopied, an output handed out without a copy, a graph reused
for another signature, or a call that should run eager would all show here; the graphs themselves are checked on a
GPU by tests/test_gpu.py."""

import pytest
import torch

from vdmkit import cli
from vdmkit.backbones.layers import self_attention_hook
from vdmkit.errors import ConfigError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.graphed import GraphedBackbone
from vdmkit.sampling.broadcast import COMPILED_REFUSAL, AttentionBroadcast
from tests.test_compiled import CONFIGS, random_pipe  # random weights: zero-init outputs would hide a bad replay

PROMPTS = ["a red circle", "a blue square"]


class RecordedOnCpu(GraphedBackbone):
    """A GraphedBackbone whose "graph" replays the captured call on its static buffers, on the CPU."""

    devices = ("cpu",)

    def _record(self, call, device):
        out = call()

        def replay():
            out.copy_(call())  # the same output storage every time, as a graph's

        return replay, out


def graphed(pipe: TextToVideo, **options) -> RecordedOnCpu:
    from vdmkit.memory import text_tokens

    runner = RecordedOnCpu(pipe.backbone, text_length=text_tokens(pipe.config), log=options.pop("log", lambda m: None),
                           **options)
    object.__setattr__(pipe, "compiled", runner)
    return runner


@pytest.mark.parametrize("backbone", sorted(CONFIGS))
def test_replayed_sampling_equals_eager(backbone):
    pipe = random_pipe(backbone)
    eager = pipe(PROMPTS, steps=3, seed=0)
    messages = []
    runner = graphed(pipe, log=messages.append)
    replayed = pipe(PROMPTS, steps=3, seed=0)
    assert runner.stats["captured"] == 1 and runner.stats["replayed_calls"] == 3 and runner.stats["eager_calls"] == 0
    assert any("captured a CUDA graph" in m for m in messages)
    assert (replayed - eager).abs().max() < 1e-5
    # other prompts (another length, padded alike) and another seed: the same graph, eager's videos
    other = ["a green triangle moving down quickly", "a red circle"]
    again = pipe(other, steps=2, seed=5)
    assert runner.stats["captured"] == 1
    object.__setattr__(pipe, "compiled", None)
    assert (again - pipe(other, steps=2, seed=5)).abs().max() < 1e-5


def test_each_call_copies_its_inputs_in_and_its_output_out():
    pipe = random_pipe("unet3d")
    runner = graphed(pipe)
    cond = pipe.encode(PROMPTS)
    x1, x2, t = torch.randn(2, 3, 4, 16, 16), torch.randn(2, 3, 4, 16, 16), torch.full((2,), 300.0)
    with torch.no_grad():
        first = runner(x1, t, cond)
        kept = first.clone()
        second = runner(x2, t, cond)
        assert torch.equal(first, kept)  # the second replay did not overwrite what the first call returned
        assert (second - pipe.backbone(x2, t, cond)).abs().max() < 1e-5
        assert (runner(x1, torch.full((2,), 900.0), cond) - pipe.backbone(x1, torch.full((2,), 900.0), cond)
                ).abs().max() < 1e-5  # the timestep is an input too
    assert runner.stats["captured"] == 1 and runner.stats["replayed_calls"] == 3


def test_one_graph_per_signature_and_the_oldest_dropped():
    pipe = random_pipe("unet3d")
    runner = graphed(pipe, max_graphs=1)
    cond1, cond2 = pipe.encode(PROMPTS[:1]), pipe.encode(PROMPTS)
    t1, t2 = torch.full((1,), 300.0), torch.full((2,), 300.0)
    with torch.no_grad():
        small = runner(torch.randn(1, 3, 4, 16, 16), t1, cond1)
        runner(torch.randn(2, 3, 4, 16, 16), t2, cond2)  # another batch: its own graph, the first dropped
        runner(torch.randn(1, 3, 4, 16, 16), t1, cond1)
    assert small.shape == (1, 3, 4, 16, 16)
    assert runner.stats["captured"] == 3 and len(runner._graphs) == 1
    runner.reset()
    assert not runner._graphs


def test_calls_a_graph_cannot_serve_run_eager():
    pipe = random_pipe("unet3d")
    runner = graphed(pipe)
    cond, x, t = pipe.encode(PROMPTS), torch.randn(2, 3, 4, 16, 16), torch.full((2,), 300.0)
    runner(x, t, cond)  # a gradient may be taken
    with torch.no_grad():
        images = type(cond)(text=cond.text, is_image=torch.tensor([True, False]))
        runner(x, t, images)  # image frames: split by value
        with self_attention_hook(pipe.backbone, lambda q, k: (q, k)):  # editing's attention reuse
            runner(x, t, cond)
    assert runner.stats == {**runner.stats, "eager_calls": 3, "captured": 0, "replayed_calls": 0}


def test_a_failed_capture_runs_eager_and_is_not_tried_again():
    pipe = random_pipe("unet3d")
    messages = []
    runner = graphed(pipe, log=messages.append)
    tries = []

    def fail(call, device):
        tries.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    runner._record = fail
    cond, x, t = pipe.encode(PROMPTS), torch.randn(2, 3, 4, 16, 16), torch.full((2,), 300.0)
    with torch.no_grad():
        out = [runner(x, t, cond) for _ in range(3)]
        expected = pipe.backbone(x, t, cond)
    assert len(tries) == 1 and runner.stats["eager_calls"] == 3
    assert any("could not capture" in m and "running it eager" in m for m in messages)
    assert all((o - expected).abs().max() < 1e-5 for o in out)  # eager on the padded prompt


def test_cuda_graphs_refuses_what_it_cannot_run(monkeypatch):
    pipe = random_pipe("unet3d")
    with pytest.raises(ConfigError, match="CUDA device; it is on cpu"):
        pipe.cuda_graphs()
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedBackbone(pipe.backbone, max_graphs=0)
    with monkeypatch.context() as patch:  # as if on a GPU: a model in training mode is refused next
        patch.setattr(TextToVideo, "device", property(lambda self: torch.device("cuda")))
        pipe.train()
        with pytest.raises(ConfigError, match="eval"):
            pipe.cuda_graphs()
        pipe.eval()
    runner = graphed(pipe)
    with pytest.raises(ConfigError, match="not both"):
        pipe.compile()
    with pytest.raises(ConfigError, match="CUDA graph"):  # attention broadcast's hooks would never run in a replay
        AttentionBroadcast(runner, (2, 2, 2), 1000.0)
    assert "CUDA" in COMPILED_REFUSAL


def test_cli_refuses_cuda_graphs_before_loading(tmp_path, capsys):
    out = tmp_path / "video.mp4"
    assert cli.main(["sample", "--prompt", "a red circle", "--cuda-graphs", "--device", "cpu", "--out", str(out)]) == 2
    assert "--cuda-graphs needs a CUDA device" in capsys.readouterr().err
    assert cli.main(["sample", "--prompt", "a red circle", "--cuda-graphs", "--compile", "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "first.png")
    assert cli.main(["sample", "--image", str(tmp_path / "first.png"), "--prompt", "a red circle", "--cuda-graphs",
                     "--out", str(out)]) == 2  # image-to-video: the same refusal
    assert "--cuda-graphs needs a CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_eval_refuses_cuda_graphs_off_a_cuda_device(tmp_path, capsys):
    report = tmp_path / "report.json"
    assert cli.main(["eval", "--real", "shapes", "--fake", "shapes", "--protocol", "shapes", "--cuda-graphs",
                     "--device", "cpu", "--out", str(report), "--no-progress"]) == 2
    assert "CUDA device" in capsys.readouterr().err and not report.exists()
