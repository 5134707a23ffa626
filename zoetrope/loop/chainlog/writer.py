"""Writing chain.jsonl and the step PNGs: a new chain, a resumed one (upgraded to the current schema first),
and each step made durable, its image before its line. Every writer holds the chain's writer lock (lock.py)
while it is open: another process's writer is refused with ChainBusy."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

from PIL import Image

from zoetrope.base import png
from zoetrope.base.files import is_temp_name, sha256_bytes, write_durable
from zoetrope.loop.chainlog.lock import WriterLock, lock_chain
from zoetrope.loop.chainlog.reader import ChainLog, file_stamp
from zoetrope.loop.chainlog.records import (
    LOG_NAME,
    SCHEMA_VERSION,
    START_IMAGE,
    STEP_IMAGE_PATTERN,
    ChainLogError,
    encode_png,
    painter_of,
)

log = logging.getLogger(__name__)


def upgrade(chain: ChainLog) -> Path:
    """Rewrite an older log in the current schema before anything is appended to it: the old file is kept
    beside it (`chain.jsonl.v1`), the new one replaces it atomically, and its header's `migrated` records
    which steps were written in the old version (their PNG chunks keep that shape). Returns the backup.
    Takes the writer lock (ChainBusy when another process writes the chain)."""
    with lock_chain(chain.folder):
        check_unchanged(chain)
        return _upgrade(chain)


def check_unchanged(chain: ChainLog) -> None:
    """Refuse to write from a reading of the log that is out of date (another writer appended or replaced it
    since): cutting it back to what was read would lose committed steps. Call with the writer lock held."""
    if not chain.stamp:
        return
    try:
        now = file_stamp((chain.folder / LOG_NAME).stat())
    except FileNotFoundError:
        now = ()
    if now != chain.stamp:
        raise ChainLogError(f"{chain.folder / LOG_NAME}: changed since it was read (another writer?); "
                            "read the chain again before continuing it")


def _upgrade(chain: ChainLog) -> Path:
    path = chain.folder / LOG_NAME
    backup = path.with_name(f"{LOG_NAME}.v{chain.version_on_disk}")
    if not backup.exists():
        write_durable(backup, path.read_bytes()[: chain.committed_bytes])
    header = chain.header | {"migrated": [*(chain.header.get("migrated") or []), {
        "from_version": chain.version_on_disk, "steps": chain.last_step,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}]}
    lines = [header, *chain.steps]
    write_durable(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines).encode())
    log.info("%s: upgraded the log from schema %d to %d (the old file is kept as %s)", path,
             chain.version_on_disk, SCHEMA_VERSION, backup.name)
    chain.header, chain.version_on_disk = header, SCHEMA_VERSION
    chain.stamp = file_stamp(path.stat())
    return backup


def require_new_chain(folder: Path, hint: str | None = None) -> None:
    """Refuse a folder that already holds a chain: a new run never writes over a logged one."""
    if (Path(folder) / LOG_NAME).exists():
        raise ChainLogError(f"{folder}: already holds a chain; {hint or f'continue it with --resume {folder}'}")


class ChainWriter:
    """Appends durable steps to one chain folder; each step's PNG names the painter its header records. It
    holds a reference to the chain's writer lock from construction to `close` (ChainBusy if another process
    holds it; re-entrant within this process, where the CLI holds it for the whole run)."""

    def __init__(self, folder: Path, painter: dict):
        self.folder = Path(folder)
        self.painter = painter
        self._lock: WriterLock = lock_chain(self.folder)
        try:
            self._log = open(self.folder / LOG_NAME, "ab")
        except BaseException:
            self._lock.release()
            raise

    @classmethod
    def create(cls, folder: Path, header: dict, start_image: Image.Image | None) -> ChainWriter:
        folder = Path(folder)
        require_new_chain(folder)
        lock = lock_chain(folder, create=True)
        try:
            require_new_chain(folder)  # again under the lock: another writer may have begun one meanwhile
            if start_image is not None:
                write_durable(folder / START_IMAGE, png.encode(start_image))
            write_durable(folder / LOG_NAME, (json.dumps(header, ensure_ascii=False) + "\n").encode())
            return cls(folder, painter_of(header))  # the writer takes its own reference to the lock
        finally:
            lock.release()

    @classmethod
    def reopen(cls, chain: ChainLog) -> ChainWriter:
        """Resume: cut a torn tail and remove what an interrupted step left (temp files, an unlogged image).
        A log of an older schema is first rewritten in the current one (see `upgrade`), so that one file never
        mixes two versions' lines. Takes the writer lock first, and refuses a reading of the log that another
        writer has changed since."""
        folder = chain.folder
        lock = lock_chain(folder)
        try:
            check_unchanged(chain)
            if chain.version_on_disk < SCHEMA_VERSION:
                _upgrade(chain)
            else:
                with open(folder / LOG_NAME, "r+b") as f:
                    f.truncate(chain.committed_bytes)
                    f.flush()
                    os.fsync(f.fileno())
            for path in folder.iterdir():
                match = STEP_IMAGE_PATTERN.match(path.name)
                if is_temp_name(path.name) or (match and int(match.group(1)) > chain.last_step):
                    log.info("removing %s left by an interrupted step", path.name)
                    path.unlink()
            return cls(folder, painter_of(chain.header))
        finally:
            lock.release()

    def commit(self, record: dict, image: Image.Image) -> dict:
        """Make one step durable: image first, then its log line. Returns the record with the image's hash."""
        png = encode_png(image, record, self.painter)
        write_durable(self.folder / record["image"], png)
        record = record | {"image_sha256": sha256_bytes(png)}
        self._log.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
        self._log.flush()
        os.fsync(self._log.fileno())
        return record

    def close(self) -> None:
        try:
            self._log.close()
        finally:
            self._lock.release()
