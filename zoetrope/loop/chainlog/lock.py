"""One writer per chain folder: an operating-system lock on `DIR/.writer.lock`, held for the whole life of a
process that appends to the chain (loop, loop --resume, loop --service, a fork into its new folder).

- The lock is the kernel's, not the file's existence: it dies with its holder (kill -9 included), so a stale
  `.writer.lock` left by a killed process blocks nothing. The file holds the holder's pid, for the message a
  second writer gets: `DIR: another process (pid N) is writing this chain`.
- `chain.jsonl` itself is not locked: its header is written by an atomic rename (a new inode).
- Linux: an open-file-description lock (`F_OFD_SETLK`). Unlike a POSIX record lock it is not dropped when the
  same process opens and closes the file elsewhere (`loop --display` probes it from the server thread), and
  `F_OFD_GETLK` lets a reader ask whether a writer holds it without taking it. Elsewhere `flock`.
- Within one process the lock is re-entrant: `lock_chain` on a folder this process already holds returns
  another reference (the CLI holds it for the run; ChainWriter, upgrade and repair take their own).
- Readers (`writer_pid`) never take it and never block.
- The holder that releases the last reference removes the file while still holding the lock (a later
  acquirer checks that the file it locked is still the one at the path), and, when it created the chain
  folder and no header was written, the folder too: a run that fails before its header leaves nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.base.files import check_writable
from zoetrope.loop.chainlog.records import ChainLogError

LOCK_NAME = ".writer.lock"

# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;} with native alignment
# (the trailing 0q pads it to the C size). OFD locks need Linux and a 64-bit off_t.
_FLOCK = "@hhqqi0q"
_OFD = sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK") and struct.calcsize("P") == 8
_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class ChainBusy(ChainLogError):
    """Another process holds the chain's writer lock."""

    def __init__(self, folder: Path | str, pid: int | None):
        self.folder, self.pid = Path(folder), pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"{folder}: another process ({who}) is writing this chain")


@dataclass
class _Held:
    fd: int
    path: Path  # the lock file
    created: list[Path] = field(default_factory=list)  # folders this process made for the chain, deepest first
    count: int = 0


_held: dict[str, _Held] = {}
_guard = threading.RLock()


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def _flock_bytes(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; False when another open file description holds it."""
    try:
        if _OFD:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_bytes(fcntl.F_WRLCK))
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


def _is_locked(fd: int) -> bool:
    """Whether another open file description holds the lock. With OFD locks this only asks; the flock
    fallback has to try a shared lock for an instant (and drops it at once)."""
    if _OFD:
        kind = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock_bytes(fcntl.F_WRLCK)))[0]
        return kind != fcntl.F_UNLCK
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _BUSY:
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _read_pid(path: Path, wait: float = 0.0) -> int | None:
    """The pid the holder wrote into the lock file (it writes it right after locking: `wait` covers that)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            text = path.read_text(encoding="ascii", errors="replace").split("\n", 1)[0].strip()
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


class WriterLock:
    """One reference to this process's writer lock on a chain folder; `release` (or leaving a `with`)
    drops it, and the lock goes when the last reference does."""

    def __init__(self, folder: Path, key: str):
        self.folder, self._key, self.released = Path(folder), key, False

    @property
    def pid(self) -> int:
        return os.getpid()

    def release(self) -> None:
        with _guard:
            if self.released:
                return
            self.released = True
            held = _held.get(self._key)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _held[self._key]
            try:  # while still locked (see the module docstring), and only our own file
                if _same_file(os.fstat(held.fd), held.path):
                    held.path.unlink()
            except OSError:
                pass
            finally:
                os.close(held.fd)
            _remove_empty(held.created)  # only empty folders go: a written header keeps the chain

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(st: os.stat_result, path: Path) -> bool:
    """Whether `path` still names the file `st` describes."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders made for a chain, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _make_folder(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created, deepest first."""
    missing = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def lock_chain(folder: Path | str, create: bool = False) -> WriterLock:
    """Take the writer lock of the chain in `folder` (or another reference to it, when this process holds it
    already). `create`: make the folder first if it is missing (a new chain); it is removed again on release
    if nothing but the lock was put in it. Raises ChainBusy when another process holds the lock."""
    folder = Path(folder)
    with _guard:
        key = _key(folder)
        held = _held.get(key)
        if held is not None:
            held.count += 1
            return WriterLock(folder, key)
        created: list[Path] = []
        if create:
            check_writable(folder, folder=True)  # `PATH: cannot write here (reason)`, as for every output
            try:
                created = _make_folder(folder)
            except OSError as exc:
                raise ChainLogError(f"{folder}: cannot create the chain folder ({exc.strerror or exc})") from None
            key = _key(folder)
        elif not folder.is_dir():
            raise ChainLogError(f"{folder}: no such chain folder")
        path = folder / LOCK_NAME
        try:
            fd = _open_and_lock(folder, path)
        except BaseException:
            _remove_empty(created)
            raise
        if fd is not None:
            _held[key] = _Held(fd, path, created, 1)
            return WriterLock(folder, key)
        _remove_empty(created)
    # Busy: the holder writes its pid right after locking; read it outside the guard (it may take a moment).
    raise ChainBusy(folder, _read_pid(path, wait=1.0))


def _open_and_lock(folder: Path, path: Path) -> int | None:
    """The descriptor holding the lock on `path`, or None when another open file description holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ChainLogError(f"{folder}: cannot write here ({exc.strerror or exc})") from None
        try:
            if not _try_lock(fd):
                os.close(fd)
                return None
            if not _same_file(os.fstat(fd), path):
                os.close(fd)  # the holder released (and removed) it between our open and our lock: again
                continue
            text = f"{os.getpid()}\n".encode()
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
            return fd
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise


def holds_lock(folder: Path | str) -> bool:
    """Whether this process holds the writer lock of `folder`."""
    with _guard:
        return _key(Path(folder)) in _held


def writer_pid(folder: Path | str) -> int | None:
    """The pid of the process writing the chain in `folder`, or None when no process holds its writer lock
    (0 when one does but its pid could not be read). A reader's question: it never takes the lock (with
    OFD locks; see `_is_locked` for the flock fallback), never blocks and never creates a file."""
    folder = Path(folder)
    if holds_lock(folder):
        return os.getpid()
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (never locked, or released), or no folder: nobody writes
        return None
    try:
        if not _is_locked(fd):
            return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return _read_pid(path) or 0
