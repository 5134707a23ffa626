"""Atomic file writing and hashing: the one way Zoetrope puts a file on disk.

Every file a reader may open while we write it (step PNGs, chain headers, frames, films, sidecars, heartbeats,
cache notes) is written under a unique temp name in its own folder, fsynced, renamed over its final name and
the folder fsynced: a reader sees the whole old file or the whole new one, two writers of one file never
share a temp name, and a crash leaves only a `*.tmp` that the next writer may sweep away.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from zoetrope.base.errors import UserError

TEMP_SUFFIX = ".tmp"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def sha256_file_remembered(path: Path, book: Path) -> str:
    """SHA-256 of a (large) file, remembered in the JSON file `book` while the file's size and mtime hold
    (hashing a few GB of weights takes seconds). A book that cannot be read or written only costs the hash."""
    import json

    path = Path(path).resolve()
    st = path.stat()
    key, stamp = str(path), [st.st_size, st.st_mtime_ns]
    try:
        known = json.loads(Path(book).read_text())
    except (OSError, ValueError):
        known = {}
    if known.get(key, {}).get("stamp") == stamp:
        return known[key]["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    known[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    with contextlib.suppress(OSError):  # a read-only cache only costs the hash again next time
        Path(book).parent.mkdir(parents=True, exist_ok=True)
        write_durable(Path(book), json.dumps(known, indent=1).encode(), sync=False)
    return known[key]["sha256"]


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of our temp names (what an interrupted write leaves behind)."""
    return name.startswith(".") and (name.endswith(TEMP_SUFFIX) or ".partial-" in name)


def temp_name(path: Path, keep_suffix: bool = False) -> Path:
    """A fresh sibling name for writing `path`: hidden, unique per call (pid and 64 random bits).

    `keep_suffix` keeps the extension last (`.f.partial-<id>.mp4`) for tools such as ffmpeg that pick the
    container from it; such names are still recognised by `is_temp_name`.
    """
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    if keep_suffix:
        return path.with_name(f".{path.stem}.partial-{token}{path.suffix}")
    return path.with_name(f".{path.name}.{token}{TEMP_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: the directory entry lives in the folder's own inode)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `data` as `path`, whole or not at all: unique temp name, fsync, rename, fsync of the folder.

    `sync=False` keeps the atomic rename but skips both fsyncs, for caches that a crash may lose but must
    never hold half a file (film frames).
    """
    path = Path(path)
    with atomic_path(path, sync=sync) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def atomic_path(path: Path, sync: bool = True, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a unique temp path to write `path` through (by us or by a subprocess such as ffmpeg); on a clean
    exit it is fsynced and renamed over `path` and the folder fsynced (without the fsyncs when not `sync`);
    on an error it is removed."""
    path = Path(path)
    tmp = temp_name(path, keep_suffix)
    try:
        yield tmp
        replace_durable(tmp, path, sync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_durable(tmp: Path, path: Path, sync: bool = True) -> None:
    """Rename a finished temp file over `path`; with `sync`, the file's bytes and the rename reach the disk."""
    if sync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(Path(path).parent)


def check_writable(path: Path, folder: bool = False) -> None:
    """Raise a one-line UserError (`PATH: cannot write here (reason)`) unless a file (or, with `folder`, a
    folder and the files in it) could be created at `path`. Called before any model loads, so a bad output
    path costs nothing. Probes for real, with a temp file in the deepest folder that exists (permissions,
    read-only or immutable mounts, /proc), and creates nothing that stays."""
    path = Path(path)
    target = path if folder else path.parent
    if not folder and path.is_dir():
        raise UserError(f"{path}: cannot write here (it is a folder; give a file name)")
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{path}: cannot write here ({existing} is a file, not a folder)")
    probe = temp_name(existing / ".zoetrope-write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM) and os.geteuid() == 0:
            reason = "not permitted: an immutable or special folder"
        elif exc.errno == errno.ENOENT:  # the folder exists but takes no new files (/proc, /sys)
            reason = f"{existing} is a special file system that takes no new files"
        raise UserError(f"{path}: cannot write here ({reason})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def check_outputs(out: Path, *sidecars: Path) -> None:
    """The one output check every command that writes a file makes before it reads a frame or loads a model:
    `out` must be writable (check_writable), and each sidecar (the .srt beside a film) must not be a folder and
    be writable too. One UserError line naming the path at fault; nothing is left behind."""
    out = Path(out)
    check_writable(out)
    for sidecar in map(Path, sidecars):
        if sidecar.is_dir():
            raise UserError(f"{sidecar}: cannot write here (it is a folder; {out.name}'s sidecar goes there)")
        if sidecar.parent != out.parent:
            check_writable(sidecar)


_TEMP_FORMS = (re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{16}\.tmp$"),
               re.compile(r"^\.(?P<stem>.+)\.partial-(?P<pid>\d+)-[0-9a-f]{16}(?P<suffix>\.\w+)?$"))


def temp_owner(name: str) -> tuple[int, str] | None:
    """For one of our temp names (`.f.png.<pid>-<hex>.tmp`, `.f.partial-<pid>-<hex>.mp4`): the id of the
    process that wrote it and the name it was meant to get (`f.png`, `f.mp4`); None for any other name."""
    for form in _TEMP_FORMS:
        match = form.match(name)
        if match:
            parts = match.groupdict()
            final = parts.get("name") or parts["stem"] + (parts.get("suffix") or "")
            return int(parts["pid"]), final
    return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_temps(folder: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Remove the temp files that killed writers left in `folder` (only those meant for `names`, when given):
    those whose process is no longer running on this machine. A live writer's temp (another render into a
    shared cache) is never touched. Returns what was removed; a folder that does not exist, or a temp that
    vanished meanwhile, is not an error."""
    wanted = None if names is None else set(names)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        owner = temp_owner(entry.name)
        if owner is None or (wanted is not None and owner[1] not in wanted):
            continue
        if owner[0] == os.getpid() or _running(owner[0]):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):  # a chunk of frames written as one folder (film/engines.py)
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on `folder` itself, for a read-modify-write of a small file in
    it that several processes share (no lock file is left behind; the kernel drops the lock if we die)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
