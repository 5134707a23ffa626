"""`replay repair`: make a damaged chain.jsonl readable again by keeping its longest consistent history.

Damage it mends: the duplicated and interleaved step lines two writers left (before the writer lock, two
`loop --resume DIR` on one folder both appended), a torn or garbled last line, garbled lines in between.

The history kept is the header and steps 1..n without gaps, built from the step lines in any order:

- A line that repeats a kept step exactly (same step number, same `image_sha256`) is a duplicate: dropped.
- Step n+1 must follow step n: when it names step n's image as its input, its `input_sha256` must be step
  n's `image_sha256` (and step 1's must be start.png's, when it began from it).
- Where different lines claim the same step, the one whose image file exists with the matching hash wins
  (the file on disk is the version that survived); the others are rejected.
- The history stops before the first step that no line continues consistently; every later line is rejected.

Nothing is lost: every line not kept but a duplicate is appended to `chain.jsonl.rejected` (never deleted),
the old log is kept whole as `chain.jsonl.bak-<time>`, step images beyond the kept history are moved to
`rejected/` (a resume would remove them), and only then is the log replaced, atomically. Kept lines keep
their bytes (and so their schema version). A healthy log is left as it is. The writer lock is held
throughout: repair refuses while a writer runs, and no writer starts meanwhile.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.base.files import fsync_dir, sha256_file, write_durable
from zoetrope.loop.chainlog.lock import ChainBusy, lock_chain
from zoetrope.loop.chainlog.reader import log_path
from zoetrope.loop.chainlog.records import (
    LOG_NAME,
    START_IMAGE,
    STEP_IMAGE_PATTERN,
    ChainLogError,
    migrate_header,
)

REJECTED_NAME = f"{LOG_NAME}.rejected"
REJECTED_IMAGES = "rejected"
SHOWN = 20  # rejected lines named one by one in the report; the rest are counted


@dataclass
class _Line:
    number: int
    raw: bytes
    record: dict


@dataclass
class Rejected:
    line: int
    reason: str
    raw: bytes = field(repr=False, default=b"")


@dataclass
class RepairReport:
    folder: Path
    steps: int  # steps kept
    duplicates: list[int]  # line numbers dropped as exact duplicates of kept steps
    rejected: list[Rejected]
    backup: Path | None = None  # None: the log was healthy and nothing changed
    rejected_log: Path | None = None
    moved_images: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.backup is not None


def _parse(raw: bytes) -> dict | str:
    """The line's record, or why it is not one."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"garbled record ({exc})"
    if not isinstance(record, dict):
        return "garbled record (not a JSON object)"
    step = record.get("step")
    if record.get("kind") != "step" or not isinstance(step, int) or isinstance(step, bool) or step < 1:
        return f"not a step line (kind={record.get('kind')!r} step={step!r})"
    return record


def _image_matches(folder: Path, record: dict) -> bool:
    name, sha = record.get("image"), record.get("image_sha256")
    if not isinstance(name, str) or not STEP_IMAGE_PATTERN.match(name) or not sha:
        return False
    path = folder / name
    return path.is_file() and sha256_file(path) == sha


def _follows(folder: Path, record: dict, previous: dict | None, start_sha: str | None) -> bool:
    """Whether `record` continues the history whose last kept step is `previous` (None: step 1)."""
    name, sha = record.get("input_image"), record.get("input_sha256")
    if sha is None:
        return True
    if previous is None:
        return name != START_IMAGE or start_sha is None or sha == start_sha
    if name == previous.get("image") and previous.get("image_sha256"):
        return sha == previous["image_sha256"]
    return True


def _choose(folder: Path, group: list[_Line], previous: dict | None, start_sha: str | None) -> tuple[_Line | None, str]:
    """The line that continues the history at this step, or None and why none does."""
    versions: dict[object, _Line] = {}
    for line in group:  # distinct versions of the step, first line of each
        versions.setdefault(line.record.get("image_sha256") or ("line", line.number), line)
    linked = [v for v in versions.values() if _follows(folder, v.record, previous, start_sha)]
    if not linked:
        return None, "its input is not the image of the step before"
    if len(versions) == 1:
        return linked[0], ""
    matching = [v for v in linked if _image_matches(folder, v.record)]
    if len(matching) == 1:
        return matching[0], ""
    return None, f"{len(versions)} different lines claim it and none matches its image file"


def plan_repair(folder: Path, data: bytes) -> tuple[list[bytes], list[int], list[Rejected], int]:
    """(lines to keep, header first; duplicate line numbers; rejected lines; steps kept) for a log's bytes."""
    path = folder / LOG_NAME
    *lines, tail = data.split(b"\n")
    if not lines:
        raise ChainLogError(f"{path}: no header line; there is no history to keep")
    try:
        header = json.loads(lines[0])
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("kind") != "header":
        raise ChainLogError(f"{path}:1: the header line is damaged; repair keeps a history only after a readable header")
    migrate_header(header, f"{path}:1")  # a newer schema is refused here, as by every reader
    rejected: list[Rejected] = []
    by_step: dict[int, list[_Line]] = {}
    for number, raw in enumerate(lines[1:], start=2):
        record = _parse(raw)
        if isinstance(record, str):
            rejected.append(Rejected(number, record, raw))
        else:
            by_step.setdefault(record["step"], []).append(_Line(number, raw, record))
    if tail:
        rejected.append(Rejected(len(lines) + 1, f"a torn last line ({len(tail)} bytes, no newline)", tail))
    start = folder / START_IMAGE
    start_sha = sha256_file(start) if start.is_file() else None
    kept: list[_Line] = []
    duplicates: list[int] = []
    previous, step, why = None, 1, ""
    while step in by_step:
        choice, why = _choose(folder, by_step[step], previous, start_sha)
        if choice is None:
            break
        for line in by_step.pop(step):
            if line is choice:
                continue
            sha = line.record.get("image_sha256")
            if sha and sha == choice.record.get("image_sha256"):
                duplicates.append(line.number)
            else:
                rejected.append(Rejected(line.number, f"step {step}: another version of the step (line "
                                                      f"{choice.number} kept: its image file matches)", line.raw))
        kept.append(choice)
        previous, step = choice.record, step + 1
    last = step - 1
    for s, group in by_step.items():
        for line in group:
            reason = f"step {s}: cannot be kept: {why}" if s == step else \
                f"step {s}: after the history ends at step {last}"
            rejected.append(Rejected(line.number, reason, line.raw))
    rejected.sort(key=lambda r: r.line)
    return [lines[0], *(line.raw for line in kept)], sorted(duplicates), rejected, last


def _free_name(path: Path) -> Path:
    """`path`, or with `-2`, `-3`, ... before `.png` (else at the end) when it is taken: repair never
    overwrites a file."""
    stem, suffix = (path.stem, path.suffix) if path.suffix == ".png" else (path.name, "")
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}-{n}{suffix}")
    return candidate


def _move_later_images(folder: Path, last: int) -> list[str]:
    """Step images beyond the kept history go to `rejected/` (a resume would remove them)."""
    later = sorted(p for p in folder.iterdir() if (m := STEP_IMAGE_PATTERN.match(p.name)) and int(m.group(1)) > last)
    if not later:
        return []
    aside = folder / REJECTED_IMAGES
    aside.mkdir(exist_ok=True)
    for path in later:
        os.replace(path, _free_name(aside / path.name))
    fsync_dir(aside)
    fsync_dir(folder)
    return [p.name for p in later]


def repair_chain(folder: Path | str, now: dt.datetime | None = None) -> RepairReport:
    """Keep the longest consistent history of the chain in `folder` (see the module docstring). Refuses
    (ChainLogError) while another process writes the chain, and for a log whose header is unreadable."""
    folder = Path(folder)
    path = log_path(folder)
    try:
        lock = lock_chain(folder)
    except ChainBusy as exc:
        raise ChainLogError(f"{exc}; stop it before repairing") from None
    with lock:
        data = path.read_bytes()
        keep, duplicates, rejected, last = plan_repair(folder, data)
        report = RepairReport(folder, last, duplicates, rejected)
        if not duplicates and not rejected:
            return report
        stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        report.backup = _free_name(folder / f"{LOG_NAME}.bak-{stamp}")
        write_durable(report.backup, data)
        if rejected:
            report.rejected_log = folder / REJECTED_NAME
            with open(report.rejected_log, "ab") as f:
                f.write(b"".join(r.raw + b"\n" for r in rejected))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(folder)
        report.moved_images = _move_later_images(folder, last)
        write_durable(path, b"".join(raw + b"\n" for raw in keep))
        return report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def repair_lines(report: RepairReport) -> list[str]:
    """What `replay repair` prints."""
    folder = report.folder
    if not report.changed:
        return [f"{folder}: the log is healthy ({_count(report.steps, 'step')}); nothing to repair, nothing changed"]
    lines = [f"{folder / LOG_NAME}:{r.line}: rejected: {r.reason}" for r in report.rejected[:SHOWN]]
    if len(report.rejected) > SHOWN:
        lines.append(f"... and {len(report.rejected) - SHOWN} more rejected lines")
    where = f" (appended to {report.rejected_log})" if report.rejected_log else ""
    lines.append(f"{folder}: kept {_count(report.steps, 'step')}, dropped {_count(len(report.duplicates), 'duplicate')}, "
                 f"rejected {_count(len(report.rejected), 'line')}{where}")
    if report.moved_images:
        lines.append(f"moved {_count(len(report.moved_images), 'image')} of steps after step {report.steps} to "
                     f"{folder / REJECTED_IMAGES}/")
    lines.append(f"the old log is kept as {report.backup}")
    lines.append(f"continue the chain with `loop --resume {folder}`")
    return lines
