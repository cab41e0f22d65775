import json
import os

import pytest
import torch

from vdmkit.errors import CheckpointMismatchError, CorruptCheckpointError, UnsafeFormatError, VdmkitError
from vdmkit.io.checkpoint import CheckpointSkippedWarning, latest_checkpoint, load_tensors, open_checkpoint
from vdmkit.io.checkpoint import read_manifest, save_checkpoint
from vdmkit.io.checkpoint import load_strict
from vdmkit.pipelines import TextToVideo
from vdmkit.training import train


@pytest.fixture
def trained(tiny_cfg):
    cfg = tiny_cfg("train.steps=2", "train.checkpoint_every=2", "train.sample_every=2")
    return cfg, train(cfg, progress=False)


def test_save_load_gives_identical_outputs(trained):
    cfg, run = trained
    weights = run / "checkpoints" / "step_0000002" / "model.safetensors"
    assert weights.stat().st_mode == (weights.parent / "config.json").stat().st_mode  # not safetensors' 0600
    pipe = TextToVideo.from_pretrained(run)
    again = TextToVideo.from_pretrained(run / "checkpoints" / "step_0000002")
    a = pipe(["a red circle moving left"], steps=3, seed=5)
    b = again(["a red circle moving left"], steps=3, seed=5)
    assert a.shape == (1, 3, 4, 16, 16) and torch.equal(a, b)
    assert len(pipe.model_sha256) == 64


def test_corrupt_weights_are_refused_with_reasons(trained, tmp_path):
    _, run = trained
    ckpt = run / "checkpoints" / "step_0000002"
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "html": b"<!DOCTYPE html><html><body>404</body></html>",
        "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
        "pickle": b"\x80\x04\x95" + b"\x00" * 40,
    }
    messages = {"truncated": "truncated", "empty": "empty", "html": "HTML", "lfs": "LFS", "pickle": "pickle"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        error = UnsafeFormatError if name == "pickle" else CorruptCheckpointError
        with pytest.raises(error, match=messages[name]):
            load_tensors(path)
    with pytest.raises(UnsafeFormatError, match="pickle"):
        (tmp_path / "w.pt").write_bytes(b"x")
        load_tensors(tmp_path / "w.pt")
    # the manifest catches a truncated file inside a checkpoint, with sizes
    weights.write_bytes(data[:-100])
    with pytest.raises(CorruptCheckpointError, match=f"{len(data) - 100} bytes, the manifest says {len(data)}"):
        TextToVideo.from_pretrained(ckpt)


def test_safetensors_whose_header_length_starts_like_a_pickle_loads(tmp_path):
    """A safetensors file begins with its header length (u64 LE); a low byte of 0x80 is the pickle opcode.

    This once made about one checkpoint in 256 unloadable (found on a probe run's final checkpoint)."""
    from safetensors.torch import save_file

    for pad in range(64):
        path = tmp_path / "w.safetensors"
        save_file({"w": torch.arange(3.0)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    assert torch.equal(load_tensors(path)["w"], torch.arange(3.0))
    path.write_bytes(path.read_bytes()[:20])  # still recognised as safetensors, and as truncated
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_tensors(path)


def test_latest_checkpoint_skips_incomplete(trained):
    _, run = trained
    half = run / "checkpoints" / "step_0000009"  # killed mid-save: no manifest
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.warns(CheckpointSkippedWarning, match="using step_0000002; skipped the newer step_0000009 .*manifest"):
        assert latest_checkpoint(run).name == "step_0000002"
    (run / "checkpoints" / "step_0000002" / "manifest.json").unlink()
    with pytest.raises(CorruptCheckpointError, match="no complete checkpoint.*no manifest"):
        latest_checkpoint(run)


def test_other_architecture_lists_mismatched_keys(trained, tiny_cfg):
    _, run = trained
    other = TextToVideo(tiny_cfg("model.channels=[32, 64]").pipeline())
    state = load_tensors(run / "checkpoints" / "step_0000002" / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch.*checkpoint .* vs model"):
        load_strict(other, state, run)
    del state["backbone.conv_in.weight"]
    state["extra.weight"] = torch.zeros(1)
    pipe = TextToVideo(json_cfg(run))
    with pytest.raises(CheckpointMismatchError, match="missing backbone.conv_in.weight; unexpected extra.weight"):
        load_strict(pipe, state, run)


def json_cfg(run):
    from vdmkit.pipelines import pipeline_config
    return pipeline_config(json.loads((run / "checkpoints" / "step_0000002" / "config.json").read_text()))


def test_checkpoint_is_never_overwritten_and_tmp_is_cleaned(tmp_path):
    save_checkpoint(tmp_path / "c", {"w": {"a": torch.ones(2)}}, {"doc": {"x": 1}})
    assert read_manifest(tmp_path / "c")["files"]["w.safetensors"]["bytes"] > 0
    with pytest.raises(VdmkitError, match="already exists; refusing to overwrite it"):  # typed (a builtin before)
        save_checkpoint(tmp_path / "c", {"w": {"a": torch.zeros(2)}}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_skipped_init_draws_nothing_and_restores_torch_init():
    from vdmkit.io.checkpoint import init_skipped, skipped_init

    original = torch.nn.init.kaiming_uniform_
    with pytest.raises(RuntimeError, match="inside"):
        with skipped_init():
            assert init_skipped()
            layer = torch.nn.Linear(4, 4)
            with torch.no_grad():
                layer.weight.fill_(7.0)
                torch.nn.init.normal_(layer.weight)  # a no-op inside
            assert torch.all(layer.weight == 7.0)
            raise RuntimeError("inside")
    assert torch.nn.init.kaiming_uniform_ is original and not init_skipped()
    assert torch.nn.Linear(64, 64).weight.std() > 0.01  # drawn again outside


def test_empty_parameters_give_target_dtype_storage_that_a_strict_load_fills():
    from vdmkit.io.checkpoint import empty_parameters

    source = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight  # tied, as a text encoder's embeddings and head can be
    model.register_buffer("steps", torch.arange(3))  # not a parameter: left alone
    empty_parameters(model, torch.device("cpu"), torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model[1].weight is model[0].weight and model.steps.dtype == torch.int64
    state = {k: v for k, v in source.state_dict().items()}
    state["1.weight"] = state["0.weight"]
    load_strict(model, {**state, "steps": torch.arange(3)}, "source")
    assert torch.equal(model[0].bias, source[0].bias.bfloat16())
    assert torch.equal(model[1].weight, source[0].weight.bfloat16())


def test_large_file_hashes_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    from vdmkit.io import checkpoint
    from vdmkit.io.checkpoint import HASH_CACHE, cached_sha256, sha256_file

    monkeypatch.setenv("VDMKIT_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "unet.safetensors"
    weights.write_bytes(b"a" * 1000)
    calls = []
    monkeypatch.setattr(checkpoint, "sha256_file", lambda p: calls.append(p) or sha256_file(p))
    first = cached_sha256(weights)
    assert first == sha256_file(weights) and cached_sha256(weights) == first and len(calls) == 1
    weights.write_bytes(b"b" * 1000)  # same size, new content and mtime: hashed again
    os.utime(weights, ns=(1, 1))
    assert cached_sha256(weights) == sha256_file(weights) != first and len(calls) == 2
    (tmp_path / "cache" / HASH_CACHE).write_text("{not json")  # a damaged cache only costs the hash
    assert cached_sha256(weights) == sha256_file(weights) and len(calls) == 3
    (tmp_path / "cache" / HASH_CACHE).unlink()
    (tmp_path / "cache").chmod(0o500)  # unwritable: still the right hash
    try:
        assert cached_sha256(weights) == sha256_file(weights)
    finally:
        (tmp_path / "cache").chmod(0o700)


def test_a_state_in_parts_loads_part_by_part_and_reports_what_no_part_gave():
    from vdmkit.io.checkpoint import load_strict

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    state = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    parts = [{k: v for k, v in state.items() if k.startswith("0.")}, {k: v for k, v in state.items() if k.startswith("1.")}]
    load_strict(model, iter(parts), "parts")
    assert all(torch.all(v == 0.5) for v in model.state_dict().values())
    with pytest.raises(CheckpointMismatchError, match="missing 1.bias, 1.weight"):
        load_strict(model, iter(parts[:1]), "parts")
    with pytest.raises(CheckpointMismatchError, match="unexpected 2.weight"):
        load_strict(model, iter([parts[0], {"2.weight": torch.zeros(1)}]), "parts")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch 1.bias"):
        load_strict(model, iter([parts[0], {**parts[1], "1.bias": torch.zeros(2)}]), "parts")


def test_a_weights_file_opens_its_checkpoint_only_when_it_is_one_of_its_files(trained, tmp_path):
    _, run = trained
    step = run / "checkpoints" / "step_0000002"
    assert open_checkpoint(step / "model.safetensors").directory == step
    (step / "adapter.safetensors").write_bytes((step / "model.safetensors").read_bytes()[:64])  # e.g. a LoRA beside it
    with pytest.raises(CorruptCheckpointError, match="not its checkpoint's model weights.*load_lora"):
        open_checkpoint(step / "adapter.safetensors")
    # a file the manifest lists is still not the model: a LoRA run's adapter, its training state (they opened the
    # merged model.safetensors beside them before 2026-12-06)
    with pytest.raises(CorruptCheckpointError, match="not its checkpoint's model weights"):
        open_checkpoint(step / "training_state.safetensors")  # listed in the manifest
    assert open_checkpoint(step / "manifest.json").directory == step
    loose = tmp_path / "loose.safetensors"
    loose.write_bytes((step / "model.safetensors").read_bytes())
    with pytest.raises(CorruptCheckpointError, match="loose weights file"):
        open_checkpoint(loose)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    from tests.conftest import TINY
    from vdmkit.training import load_config

    out = tmp_path_factory.mktemp("two") / "run"
    return train(load_config(None, TINY + [f"train.out_dir={out}", "train.steps=4", "train.checkpoint_every=2"]),
                 progress=False)


@pytest.mark.parametrize("manifest, words", [
    ([], "a JSON list, not an object"),
    ({"format": "vdmkit-checkpoint", "format_version": 1}, "no 'files' object"),
    ({"format": "vdmkit-checkpoint", "format_version": 1, "files": {"config.json": {}}}, "lacks an integer 'bytes'"),
    ({"format": "vdmkit-checkpoint", "format_version": 1,
      "files": {"../../x.json": {"bytes": 1, "sha256": "0"}}}, "is not a path inside the checkpoint"),
])
def test_a_manifest_of_the_wrong_shape_is_a_corrupt_checkpoint_that_latest_checkpoint_skips(two_checkpoints,
                                                                                           tmp_path, manifest, words):
    """A manifest that was valid JSON of another shape crashed --resume, `vdmkit sample` and the web app's model list
    with AttributeError or KeyError (before 2026-12-06)."""
    import shutil
    import warnings

    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    newest = sorted((run / "checkpoints").iterdir())[-1]
    (newest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptCheckpointError, match=words.replace("(", r"\(")):
        open_checkpoint(newest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        older = latest_checkpoint(run)
    assert older.directory != newest and any(words in str(w.message) for w in caught)
