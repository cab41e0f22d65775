"""Atomic file and folder writes: write to a temporary name beside the target, fsync, then rename."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path

from vdmkit.errors import OutputError

TMP_MARK = ".tmp-"  # atomic_directory's temporary folders: .{name}.tmp-{pid}
TMP_STEM = 32  # atomic_path's temporaries: .{the target's stem, cut to this}.{random}-{pid}.tmp{suffix}


STALE_TEMPORARY_S = 3600  # a temporary without its writer's pid (before 2026-12-07) this old is no live write's
# atomic_path's temporaries and only them: a dot, the stem, mkstemp's 8 random characters, -the writer's pid (absent
# in older ones), .tmp and the suffix (a user's own .notes.tmp or .draft.tmpl beside the outputs is not one)
TEMPORARY_NAME = re.compile(r"\..{0,%d}\.[a-z0-9_]{8}(?:-([0-9]{1,10}))?\.tmp(\.[^/]{0,15})?" % TMP_STEM, re.DOTALL)
# a write that failed for want of room (a full disk, a quota) or a read-only file system, not for what was written
NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EROFS: "the file system is read-only",
           errno.EFBIG: "the file is larger than this file system or a file-size limit (ulimit -f) allows"}
REMEDIES = {NO_ROOM[errno.EROFS]: "choose a folder on a writable file system",
            NO_ROOM[errno.EFBIG]: "raise the limit (ulimit -f) or choose a folder on a file system that takes larger "
                                  "files"}
# safetensors' Rust writer says it as "No space left on device (os error 28)": no errno on the exception
RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = STALE_TEMPORARY_S, *,
                             stems: set[str] | None = None) -> list[Path]:
    """Delete the :func:`atomic_path` temporaries (``.name.random-pid.tmp.ext``) directly in ``folder`` that a killed
    process left there: those whose writer's pid is gone from this machine, and those naming no pid (older vdmkit's)
    last written over ``older_than_s`` seconds ago (a live writer's are newer); ``stems``: only those of targets
    whose name starts with one of them and a dot (``00001`` for 00001.mp4 and 00001.mp4.json). Returns them."""
    removed, now = [], time.time()
    try:
        found = list(Path(folder).glob(".*.tmp*"))
    except OSError:  # an unreadable folder: nothing of ours to find
        return removed
    for path in found:
        if stems is not None and path.name[1:].split(".", 1)[0] not in stems:
            continue
        match = TEMPORARY_NAME.fullmatch(path.name)
        try:
            if match is None or path.is_symlink() or not path.is_file():
                continue
            if writer_gone(int(match.group(1))) if match.group(1) else now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove: left as it is
            continue
    return removed


def writer_gone(pid: int) -> bool:
    """True when no process ``pid`` runs on this machine: the temporaries it named itself in are a killed write's.
    False for this process, a live one, and another user's (which may not be signalled)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path with the target's suffix; on success it replaces ``target`` atomically.

    On any error the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # what a write of this name killed outright (SIGKILL, a crash) left: nothing else removed it (sweep 23 H1)
    remove_stale_temporaries(target.parent, stems={target.name.split(".", 1)[0][:TMP_STEM]})
    # the stem is cut so that the temporary's name stays within the file system's limit wherever the target's does;
    # the pid tells a later write whether its writer is gone
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem[:TMP_STEM]}.", suffix=f"-{os.getpid()}.tmp{target.suffix[:16]}",
                               dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        with no_room_is_output_error(target):
            yield tmp
            # mkstemp makes the file private (0600); give it the mode a plain open() would, or the replaced regular
            # file's: not a symlink's target's (one to /dev/full made a world-writable video; sweep 21B)
            os.chmod(tmp, replaced_mode(target))
            fsync_file(tmp)
            os.replace(tmp, target)
            fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike):
    """Yield a new empty folder beside ``target`` (``.{name}.tmp-{pid}``); on success it is fsynced and renamed to
    ``target``, which must not exist. On any error it is removed: ``target`` appears whole or not at all."""
    target = Path(target)
    if target.is_symlink():  # os.replace cannot put a folder there, which it found only after the work (sweep 23 H6)
        raise OutputError(f"{str(target)!r} is a symbolic link; a new folder is written there whole: remove the link, "
                          "or give the path of a new folder")
    tmp = target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    remove_abandoned_folders(target)
    tmp.mkdir(parents=True)
    try:
        with no_room_is_output_error(target):
            yield tmp
            # every file's bytes, then every folder's entries: a crash after the rename left a folder that looked
            # whole with empty weights (convert --to diffusers wrote files without a sync; a review, 2026-12-06)
            for folder, _, files in os.walk(tmp, topdown=False):
                for name in files:
                    fsync_file(Path(folder) / name)
                fsync_dir(Path(folder))
            os.replace(tmp, target)
            fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_abandoned_folders(target: Path) -> list[Path]:
    """Delete the atomic_directory temporaries of ``target`` (``.{name}.tmp-{pid}``) whose process is gone from this
    machine: a write killed by SIGTERM or SIGKILL left them, and nothing removed them. Return them."""
    removed = []
    for path in target.parent.glob(f".{glob.escape(target.name)}{TMP_MARK}*"):
        pid = path.name[len(f".{target.name}{TMP_MARK}"):]
        if not pid.isdigit() or not path.is_dir() or path.is_symlink() or not writer_gone(int(pid)):
            continue  # a live write (or another user's process of that pid): left alone
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def no_room(err: BaseException) -> str | None:
    """Why ``err`` is a write that found no room (:data:`NO_ROOM`: an OSError's errno, or the "(os error N)" of a
    safetensors SafetensorError), else None."""
    if isinstance(err, OSError):
        return NO_ROOM.get(err.errno)
    match = RUST_OS_ERROR.search(str(err)) if type(err).__name__ == "SafetensorError" else None
    return NO_ROOM.get(int(match.group(1))) if match else None


@contextlib.contextmanager
def no_room_is_output_error(target: Path):
    """Turn a write inside that found no room (a full disk, a quota, a read-only file system) into an OutputError
    naming ``target`` and saying what to do (the atomic writers still remove their temporary: nothing partial). A
    writer nested inside (a file of a folder written whole) named its path in the folder's temporary, gone when the
    message was read (sweep 25F): the outermost ``target`` is named."""
    try:
        yield
    except Exception as err:
        cause = err.__cause__ if isinstance(err, OutputError) else err  # a nested writer's, already turned
        reason = None if cause is None else no_room(cause)
        if reason is None:
            raise
        remedy = REMEDIES.get(reason, "free space (or choose another folder)")  # freeing space lifts no ulimit
        raise OutputError(f"cannot write {str(target)!r}: {reason} ({cause}); {remedy}, then rerun (training: "
                          "--resume continues from the last checkpoint)") from cause


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """``a`` and ``b`` are one file: the same path once links are followed, or the same inode (a hard link). The
    check every command makes before writing over one of its inputs."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where it would be
        return Path(a).resolve() == Path(b).resolve()


def nearest_existing(path: Path) -> Path:
    """``path`` (absolute) if it exists, else its nearest existing parent: where missing folders would be made."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_name_length(path: str | os.PathLike, what: str, extra: str = "") -> None:
    """OutputError if ``path``'s file name, with ``extra`` appended (a sidecar's ".json"), is longer than its file
    system allows (255 bytes on most), checked before any work rather than failing at the write."""
    path = Path(path)
    name = os.fsencode(path.name + extra)
    try:
        limit = os.pathconf(nearest_existing(path.absolute().parent), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(name) > limit:
        raise OutputError(f"{what}: the file name {path.name[:40]!r}... is {len(name)} bytes with {extra or 'nothing'} "
                          f"appended; this file system allows {limit}: choose a shorter name")


def check_writable_folder(folder: str | os.PathLike, what: str) -> None:
    """OutputError unless files can be created in ``folder`` (or in the nearest existing folder above it, where
    the missing ones would be made): not below a regular file, and writable by this process (probed, since
    permission bits say nothing for root or read-only mounts)."""
    folder = Path(folder).absolute()
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{what}: {str(existing)!r} is a file, not a folder; choose a path in a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OutputError(f"{what}: cannot write in {str(existing)!r} ({err.strerror or err}); choose a writable "
                          "folder") from err


def check_new_folder(folder: str | os.PathLike, what: str, writes: str, *, empty_ok: bool = False) -> Path:
    """OutputError when ``folder`` exists (unless ``empty_ok`` and it is an empty folder) or cannot be made; ``writes``
    names what would have written it ("convert", "save_pretrained"). Returns the folder to write: a symbolic link to
    an empty folder (``empty_ok``) is followed, so the work goes into the folder it names; a link to nothing is
    refused (the folder could not be renamed over it, which failed only after the work, sweep 23 H5/H6)."""
    if str(folder) == "":  # read as "." and said to exist
        raise OutputError(f"{what} is empty; give the path of a new folder")
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise OutputError(f"{what} is a symbolic link to {os.readlink(folder)!r}, which does not exist; {writes} "
                          "writes a new folder: remove the link, or give the path of a new folder")
    if folder.exists() and not (empty_ok and folder.is_dir() and not any(folder.iterdir())):
        kind = "exists and is not an empty folder" if empty_ok else "exists"
        raise OutputError(f"{what} {kind}; {writes} writes a new folder: choose another path, or move it away")
    if folder.is_symlink():  # to an empty folder: written there (the link itself cannot be replaced by a folder)
        folder = folder.resolve()
    check_writable_folder(folder.absolute().parent, what)
    return folder


def replaced_mode(target: Path) -> int:
    """The mode a new file at ``target`` gets: a regular file's there (not followed through a link), else umask's."""
    try:
        st = os.lstat(target)
    except OSError:
        st = None
    return st.st_mode & 0o7777 if st is not None and stat.S_ISREG(st.st_mode) else 0o666 & ~current_umask()


@contextlib.contextmanager
def locked(target: str | os.PathLike):
    """Hold an exclusive lock (flock on ``.{name}.lock`` beside ``target``) around a read-modify-write of ``target``,
    waiting for another writer's: two writers' updates both survive. No lock where the system offers none."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        fcntl = None
    target = Path(target)
    fd = None
    if fcntl is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # an unwritable folder: the write itself will say so
            fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without flock (some NFS): unlocked, as before
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


class HeldSignals:
    """``with HeldSignals() as held: ... held.start() ...``: from ``start()`` to the end of the block, SIGINT and
    SIGTERM (Ctrl-C, a job's kill) are recorded, not acted on, and delivered once the block is left, so that the
    renames of files that belong together (a video and its sidecar) happen all or none: an interrupt between two
    of them left the new video beside the old sidecar, its seed and prompt (sweep 25B D2). The process's own handlers
    are swapped, not its signal mask, so a signal that another thread receives (torch's, PyAV's) waits too; only the
    main thread may swap them, and a write on another thread is not interrupted by SIGINT (its KeyboardInterrupt is
    the main thread's). SIGKILL and power loss cannot be held: the writer orders the renames for them."""

    def __init__(self):
        self.previous, self.caught = {}, []

    def start(self) -> None:
        if self.previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in HELD_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is not None and handler is not signal.SIG_IGN:  # None: set outside Python, cannot be put back
                self.previous[signum] = signal.signal(signum, self._record)

    def _record(self, signum, frame) -> None:
        self.caught.append(signum)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
        _deliver(list(dict.fromkeys(self.caught)))  # each once, in the order they came: the handlers act now


def _deliver(signums: list[int]) -> None:
    """Raise each signal in turn, every one even when a handler raises (Ctrl-C's KeyboardInterrupt lost a SIGTERM
    held with it, a review of session 25): the later handler's exception is raised, the earlier one's its context."""
    if signums:
        try:
            signal.raise_signal(signums[0])
        finally:
            _deliver(signums[1:])


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
