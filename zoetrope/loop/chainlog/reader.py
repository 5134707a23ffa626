"""Reading chain.jsonl: the whole committed log (`read_chain`), its header alone (`read_header`), or what a
writer has appended since the last look (`LogTail`, for the kiosk server). Readers never lock and never
write; they trust only newline-terminated lines and see records in the current schema. A log damaged by
two writers or a garbled line is an error that names `replay repair` (repair.py)."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.loop.chainlog.records import (
    LOG_NAME,
    SCHEMA_VERSION,
    ChainLogError,
    migrate_header,
    migrate_step,
)

log = logging.getLogger(__name__)


@dataclass
class ChainLog:
    folder: Path
    header: dict
    steps: list[dict]
    warnings: list[str] = field(default_factory=list)
    committed_bytes: int = 0  # length of the newline-terminated part of the file
    version_on_disk: int = SCHEMA_VERSION  # the file's own schema_version (records are migrated on read)
    stamp: tuple = ()  # (device, inode, size, mtime_ns) of the file when read: a writer checks it is unchanged

    @property
    def last_step(self) -> int:
        return self.steps[-1]["step"] if self.steps else 0

    def written_as(self, step: int) -> int:
        """The schema version step `step` was written in (its PNG chunk has that shape): a v1 chain continued
        by v2 was upgraded on disk, and its header's `migrated` says which steps came before."""
        for upgrade in self.header.get("migrated") or []:  # oldest first
            if step <= upgrade["steps"]:
                return upgrade["from_version"]
        return self.version_on_disk


def repair_hint(folder: Path) -> str:
    """What a reader's error about damaged step lines adds: the way out."""
    return f"run `replay repair {folder}` to keep the longest consistent history"


def file_stamp(st) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _record(raw: bytes, path: Path, number: int) -> dict:
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        hint = f"; {repair_hint(path.parent)}" if number > 1 else ""  # a garbled header cannot be repaired
        raise ChainLogError(f"{path}:{number}: garbled record ({exc}){hint}") from None
    return record


def _checked_header(record: dict, path: Path) -> dict:
    if record.get("kind") != "header":
        raise ChainLogError(f"{path}:1: first line is not a header (kind={record.get('kind')!r})")
    return migrate_header(record, f"{path}:1")


def read_header(folder: Path | str) -> dict:
    """Only a chain's header line: what a config needs, without parsing weeks of steps as read_chain does."""
    path = Path(folder) / LOG_NAME
    if not path.is_file():
        raise ChainLogError(f"{folder}: not a chain folder (no {LOG_NAME})")
    with open(path, "rb") as f:
        line = f.readline()
    if not line.endswith(b"\n"):
        raise ChainLogError(f"{path}: empty log (no header line)")
    return _checked_header(_record(line, path, 1), path)


def log_path(folder: Path) -> Path:
    """`folder`'s chain.jsonl, or a ChainLogError saying why the folder is not a chain."""
    path = folder / LOG_NAME
    if not folder.is_dir():
        raise ChainLogError(f"{folder}: no such chain folder")
    if not path.is_file():
        raise ChainLogError(f"{folder}: not a chain folder (no {LOG_NAME})")
    return path


def read_chain(folder: Path | str) -> ChainLog:
    """Read a chain folder. A torn last line (an interrupted write) is dropped with a warning; a garbled
    line before it is an error naming the line."""
    folder = Path(folder)
    path = log_path(folder)
    with open(path, "rb") as f:
        stamp = file_stamp(os.fstat(f.fileno()))
        data = f.read()
    committed = data.rfind(b"\n") + 1
    warnings = []
    if committed < len(data):
        warnings.append(f"{path}: dropped a torn last line ({len(data) - committed} bytes) left by an interrupted write")
    lines = data[:committed].split(b"\n")[:-1]
    if not lines:
        raise ChainLogError(f"{path}: empty log (no header line)")
    records = [_record(raw, path, number) for number, raw in enumerate(lines, start=1)]
    header = _checked_header(records[0], path)
    version = records[0]["schema_version"]
    steps = [migrate_step(r, version) for r in records[1:]]
    for number, record in enumerate(steps, start=2):
        expected = number - 1
        if record.get("kind") != "step" or record.get("step") != expected:
            raise ChainLogError(
                f"{path}:{number}: expected step {expected}, got kind={record.get('kind')!r} "
                f"step={record.get('step')!r}; {repair_hint(folder)}"
            )
    for w in warnings:
        log.warning(w)
    return ChainLog(folder, header, steps, warnings, committed, version, stamp)


# ------------------------------------------------------------------------------------------- following

_STEP_LINE = b'{"kind": "step"'
_ENERGY = re.compile(rb'"energy_j": (null|-?[0-9.eE+-]+)')
READ_SLICE = 16 * 2**20


@dataclass
class TailRead:
    """What a poll of a growing log found in its newly committed lines."""

    records: list[dict]  # parsed and migrated; on the first read of a long log only the last `keep` lines
    steps: int  # step lines among the new lines
    energy_j: float  # summed over the new lines that measured it
    energy_steps: int
    restarted: bool  # the file was cut back (a resume dropped a torn line) or replaced (an upgrade, a repair,
    # a chain made again in a deleted folder) and was read again from the top
    first: bool  # read from the top of the file (the first read, or after a restart)
    mtime: float  # the log's modification time when read: when its newest line was committed


class LogTail:
    """Follows a chain.jsonl that a writer appends to, for a reader that polls (the kiosk server): never
    locks, never blocks the writer, reads only whole lines, in slices (a log of weeks may be gigabytes). On the
    first read only the last `keep` lines are parsed; counts and energy come from a scan of the raw lines,
    which this module can do because it alone writes them (`json.dumps` with its default separators)."""

    def __init__(self, folder: Path, keep: int = 64):
        self.path, self.keep = Path(folder) / LOG_NAME, keep
        self.offset, self.header, self.inode = 0, None, None

    def read(self) -> TailRead | None:
        """Newly committed lines since the last read; None when the log is missing or has not grown."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        size = st.st_size
        restarted = size < self.offset or (self.offset > 0 and (st.st_dev, st.st_ino) != self.inode)
        self.inode = (st.st_dev, st.st_ino)
        if restarted:
            self.offset, self.header = 0, None
        if size == self.offset:
            return None
        first, raw_lines, steps, energy, measured = self.offset == 0, [], 0, 0.0, 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while self.offset < size:
                data = f.read(min(READ_SLICE, size - self.offset))
                end = data.rfind(b"\n") + 1
                if end == 0:
                    break
                f.seek(self.offset + end)
                self.offset += end
                chunk = data[:end]
                steps += chunk.count(_STEP_LINE)
                for value in _ENERGY.findall(chunk):
                    if value != b"null":
                        energy, measured = energy + float(value), measured + 1
                lines = chunk.splitlines()
                if first and self.header is None and lines:
                    self.header = self._parse(lines[0])
                raw_lines = (raw_lines + lines)[-self.keep:] if first else raw_lines + lines
        records = [r for r in map(self._parse, raw_lines) if r is not None]
        version = (self.header or {}).get("schema_version", SCHEMA_VERSION)
        records = [migrate_step(r, version) if r.get("kind") == "step" else r for r in records]
        return TailRead(records, steps, energy, measured, restarted, first, st.st_mtime)

    @staticmethod
    def _parse(raw: bytes) -> dict | None:
        try:
            record = json.loads(raw)
        except ValueError:  # a garbled line: `replay verify` names it; a display just skips it
            return None
        return record if isinstance(record, dict) else None
