"""What `vdmkit eval` and `vdmkit curate` check of their paths before any work, and how they say an output was not
written: an output that is one of the inputs (the same file, through links too), real and fake sets that share video
files, and a write that failed after another output was complete."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vdmkit.errors import ConfigError, OutputError
from vdmkit.io.atomic import same_file

Named = tuple[str, str | os.PathLike | None]  # (the flag that gave it, the path)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_outputs_not_inputs(command: str, outputs: Iterable[Named], files: Iterable[Named] = (),
                             folders: Iterable[Named] = (), video_folders: Iterable[Named] = ()) -> None:
    """OutputError before any work when an output would replace what the command reads: one of ``files``, an existing
    file inside one of ``folders`` (weights, a model), or the caption sidecar (``<video>.json``) of a video inside one
    of ``video_folders``; or when two outputs are one file. None paths are skipped."""
    from vdmkit.io.decode import VIDEO_SUFFIXES

    outputs = [(flag, Path(p)) for flag, p in outputs if p is not None]
    for i, (flag, out) in enumerate(outputs):
        said = f"{command}: {flag} {str(out)!r}"
        for other_flag, other in outputs[:i]:
            if same_file(out, other):
                raise OutputError(f"{said} and {other_flag} {str(other)!r} are one file: give each its own path")
        for in_flag, path in files:
            if path is not None and same_file(out, path):
                raise OutputError(f"{said} would replace the input {in_flag} {str(path)!r} (it is read, then the "
                                  f"output would be written over it): choose another {flag}")
        if not out.is_file():
            continue
        for in_flag, folder in folders:
            if folder is not None and Path(folder).is_dir() and _inside(out, Path(folder)):
                raise OutputError(f"{said} would replace a file of the input {in_flag} {str(folder)!r}: choose "
                                  f"another {flag}")
        video = out.with_name(out.name[:-len(".json")]) if out.name.lower().endswith(".json") else None
        if video is None or video.suffix.lower() not in VIDEO_SUFFIXES or not video.is_file():
            continue
        for in_flag, folder in video_folders:
            if folder is not None and Path(folder).is_dir() and _inside(out, Path(folder)):
                raise OutputError(f"{said} would replace the caption sidecar of the video {str(video)!r} in "
                                  f"{in_flag} {str(folder)!r}: choose another {flag}")


def _identity(path: Path) -> tuple[int, int] | Path:
    """What makes two listed files one: the device and inode (links followed), else the resolved path."""
    try:
        st = path.stat()
        return st.st_dev, st.st_ino
    except OSError:
        return path.resolve()


def _shown(paths: list[Path], root: Path, shown: int = 3) -> str:
    names = [p.relative_to(root).as_posix() for p in paths[:shown]]
    return ", ".join(names) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def check_disjoint_sets(real_src, fake_src, real, fake) -> None:
    """ConfigError when the real and fake sets share video files: ``--fake`` a folder inside ``--real`` (or around
    it), links to one file in both, or a model folder inside ``--real`` (its preview videos): the shared videos would
    be counted in both sets (FVD 301.7 read 176.0 with the fakes in a sub-folder of the real folder, sweep 23).
    Sets of exactly the same files (a folder against itself: a sanity check) are allowed, with a warning."""
    import warnings

    real_files = getattr(real_src, "files", None)
    if real_files is None or getattr(real_src, "kind", None) != "folder":
        return
    real_root, fake_root = Path(real), Path(fake)
    if getattr(fake_src, "kind", None) == "model":
        inside = [p for p in real_files if _inside(p, fake_root)]
        if inside:
            raise ConfigError(f"--real {str(real_root)!r} holds {len(inside)} video file(s) of the model folder --fake "
                              f"{str(fake_root)!r} ({_shown(inside, real_root)}): they would be counted as real "
                              "videos; point --real at a folder without the model's run, or move the run out of it")
        return
    fake_files = getattr(fake_src, "files", None)
    if fake_files is None or getattr(fake_src, "kind", None) != "folder":
        return
    fake_ids = {_identity(p): p for p in fake_files}
    shared = [p for p in real_files if _identity(p) in fake_ids]
    if not shared:
        return
    if len(shared) == len(real_files) == len(fake_files):
        warnings.warn(f"--real {str(real_root)!r} and --fake {str(fake_root)!r} are the same {len(shared)} video "
                      "file(s): the sets are one (a sanity check: FVD 0, PSNR 100)", UserWarning, stacklevel=3)
        return
    if _inside(fake_root, real_root) or _inside(real_root, fake_root):
        inner, outer = (("--fake", fake_root), ("--real", real_root)) if _inside(fake_root, real_root) else \
            (("--real", real_root), ("--fake", fake_root))
        where = f"{inner[0]} {str(inner[1])!r} is inside {outer[0]} {str(outer[1])!r}"
    else:
        where = f"--real {str(real_root)!r} and --fake {str(fake_root)!r} link to the same files"
    raise ConfigError(f"{where}: {len(shared)} video file(s) are in both sets ({_shown(shared, real_root)}) and would "
                      "be counted as real and fake videos; keep the generated videos out of the real folder (or "
                      "point --real at the real videos only)")


def partly_written(err: BaseException, written: list[str], not_written: str) -> OutputError:
    """The OutputError of ``not_written`` failing (``err``) after the outputs ``written`` were completed: which are
    whole, which is not, why, and what to do (the message of a full disk named no written output and advised
    training's --resume, sweep 23)."""
    from vdmkit.io.atomic import REMEDIES, no_room

    cause = err.__cause__ if isinstance(err, OutputError) and err.__cause__ is not None else err
    reason = no_room(cause)
    if reason is not None:
        why = f"{reason} ({cause}); {REMEDIES.get(reason, 'free space (or choose another folder)')}, then rerun"
    else:
        why = str(err).split(" (training: --resume", 1)[0]
    done = (" and ".join(written) + (" were" if len(written) > 1 else " was") + " written in full; ") if written else ""
    return OutputError(f"{done}{not_written} was not written: {why}")
