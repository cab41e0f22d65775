"""Sweep 23 (findings_H 2, 10, 13): an output of sample / the task commands / cascade that would replace one of the
command's inputs (the model's files, a --lora adapter, --latents, --image, --video), a --strip PNG named by the
lower-cased suffix in one place and the exact one in another, and the messages for a missing or special input."""

import hashlib
import os
import shutil

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.errors import ConfigError
from vdmkit.io.video import write_video
from vdmkit.pipelines import default_model


def md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A copy of the bundled default model (m/), its consistency adapter as a file of its own (l.safetensors) with
    a link to it, a 32x32 image and a 16-frame clip."""
    from PIL import Image

    if default_model() is None:
        pytest.skip("no bundled default model")
    root = tmp_path_factory.mktemp("outs")
    shutil.copytree(default_model(), root / "m")
    shutil.copyfile(root / "m" / "lcm_lora.safetensors", root / "l.safetensors")
    (root / "link.safetensors").symlink_to(root / "l.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "s.png")
    write_video(root / "v.mp4", rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), fps=8)
    return root


def run(capsys, *argv) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv] + ["--no-progress"])
    return rc, capsys.readouterr().err


def test_an_output_replacing_the_model_or_an_adapter_is_refused_before_any_work(files, capsys):
    m, lora = files / "m", files / "l.safetensors"
    weights, adapter = md5(m / "model.safetensors"), md5(lora)
    base = ["sample", "--model", m, "--prompt", "x", "--steps", "2"]
    # the latents output over the model's own weights: the model was destroyed, exit 0 (before 2026-12-07)
    rc, err = run(capsys, *base, "--out", m / "model.safetensors")
    assert rc == 2 and "would replace a file of the --model folder" in err
    rc, err = run(capsys, *base, "--out", m / "config.mp4", "--strip")  # its strip would be the model's config?
    assert rc == 0 and (m / "config.mp4").is_file(), err  # no: config.json is not config.mp4's sidecar
    rc, err = run(capsys, *base, "--out", m / "config.mp4")  # an earlier output in the folder is the user's
    assert rc == 0, err
    for name in ("config.mp4", "config.mp4.json", "config.png"):
        (m / name).unlink()
    # the --lora adapter it reads, by its name or through a link either way
    for given, out in ((lora, lora), (lora, files / "link.safetensors"), (files / "link.safetensors", lora)):
        rc, err = run(capsys, *base, "--lora", given, "--out", out)
        assert rc == 2 and "would replace the input --lora adapter" in err, (given, out)
    rc, err = run(capsys, *base, "--latents", lora, "--out", lora)  # --latents, as before
    assert rc == 2 and "would replace the input --latents" in err
    assert md5(m / "model.safetensors") == weights and md5(lora) == adapter
    assert sorted(p.name for p in m.iterdir()) == sorted(p.name for p in default_model().iterdir())
    # the task commands and cascade take the same check: the input clip or image, the cascade's config
    video = files / "v.mp4"
    for argv in (["edit", "--model", m, "--video", video, "--prompt", "y", "--out", video],
                 ["interpolate", "--model", m, "--video", video, "--out", video],
                 ["extend", "--model", m, "--video", video, "--frames", "20", "--out", video]):
        rc, err = run(capsys, *argv, "--steps", "2")
        assert rc == 2 and "would replace the input --video" in err, argv
    rc, err = run(capsys, "sample", "--model", m, "--image", files / "s.png", "--prompt", "x", "--out", files / "s.png",
                  "--steps", "2")
    assert rc == 2 and "would replace the input --image" in err
    (files / "c.yaml").write_text(f"fps: 8\nstages:\n  - {{task: text_to_video, model: {str(m)!r}, steps: 2}}\n")
    (files / "weights.mp4").symlink_to(m / "model.safetensors")  # a video name, through a link, for the weights
    rc, err = run(capsys, "cascade", files / "c.yaml", "--prompt", "x", "--out", files / "weights.mp4")
    assert rc == 2 and "would replace a file of the model folder" in err, err
    assert sorted(p.name for p in m.iterdir()) == sorted(p.name for p in default_model().iterdir())
    assert not any(p.suffix in (".mp4", ".gif") and p.name not in ("v.mp4", "weights.mp4") for p in files.iterdir())


def test_the_strip_of_an_upper_case_png_output_is_that_output(files, capsys, tmp_path):
    """`--out s.PNG --strip` wrote the strip twice, to s.PNG and s.png: over the --image s.png it read (before
    2026-12-07); the checks and the writers now take their strip path from one function."""
    image = tmp_path / "s.png"
    shutil.copyfile(files / "s.png", image)
    before = md5(image)
    rc = cli.main(["sample", "--model", str(files / "m"), "--image", str(image), "--prompt", "x", "--steps", "2",
                   "--out", str(tmp_path / "s.PNG"), "--strip", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and md5(image) == before
    assert f"saved {tmp_path / 's.PNG'}" in out and f"saved {image}" not in out
    # cascade's writer: one strip, the output itself
    (tmp_path / "c.yaml").write_text(f"fps: 8\nstages:\n  - {{task: text_to_video, model: {str(files / 'm')!r}, "
                                     "steps: 2}\n")
    assert cli.main(["cascade", str(tmp_path / "c.yaml"), "--prompt", "x", "--out", str(tmp_path / "c.PNG"),
                     "--strip", "--no-progress"]) == 0
    assert not (tmp_path / "c.png").exists() and (tmp_path / "c.PNG").is_file()
    # a strip (lower-case) that is the input image: refused, as before, and through an upper-case video name too
    rc, err = run(capsys, "sample", "--model", files / "m", "--image", image, "--prompt", "x", "--steps", "2",
                  "--out", tmp_path / "s.MP4", "--strip")
    assert rc == 2 and f"(its file {str(image)!r}) would replace the input --image" in err
    assert md5(image) == before
    from vdmkit.cli_common import strip_path, written_files

    assert strip_path("s.PNG") is None and strip_path("s.png") is None and strip_path("x.safetensors") is None
    assert strip_path("a.MP4") == strip_path("a.mp4").with_name("a.png")
    assert [p.name for p in written_files("a.gif", True)] == ["a.gif", "a.gif.json", "a.png", "a.png.json"]


def test_a_missing_or_special_input_is_named_precisely(files, capsys, tmp_path):
    """A missing --video said "not a file"; a --latents /dev/null or FIFO "weights file ... not found" (before
    2026-12-07)."""
    m = files / "m"
    missing = tmp_path / "nonexist.mp4"
    for argv in (["edit", "--model", m, "--prompt", "y", "--video", missing],
                 ["interpolate", "--model", m, "--video", missing],
                 ["sample", "--model", m, "--prompt", "y", "--image", tmp_path / "nonexist.png"]):
        rc, err = run(capsys, *argv, "--steps", "2", "--out", tmp_path / "o.mp4")
        assert rc == 2 and f"--{argv[-2].lstrip('-')} " in err and "does not exist" in err, (argv, err)
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    for noise, said in ((os.devnull, "is a character device, not a regular file"),
                        (fifo, "is a FIFO (named pipe), not a regular file"),
                        (tmp_path / "none.safetensors", "does not exist")):
        rc, err = run(capsys, "sample", "--model", m, "--prompt", "y", "--steps", "2", "--latents", noise,
                      "--out", tmp_path / "o.mp4")
        assert rc == 2 and f"--latents {str(noise)!r} {said}" in err and "weights file" not in err, err
    assert not (tmp_path / "o.mp4").exists()
    from vdmkit.cli_common import check_input_file

    (tmp_path / "dangling").symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(ConfigError, match="does not exist .a symbolic link to the missing"):
        check_input_file(tmp_path / "dangling", "--video")
    with pytest.raises(ConfigError, match="is a folder"):
        check_input_file(tmp_path, "--video")
    assert check_input_file(files / "v.mp4", "--video") == files / "v.mp4"
