"""The chain log: `chain.jsonl` (a header line, then one line per completed step) beside the step PNGs.

Durability rule: a step's image is written to a temp name, fsynced and renamed *before* its log line is
appended, flushed and fsynced. A crash therefore never loses a committed step, and a reader trusts
only newline-terminated lines. The format is documented in docs/chain-log.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from zoetrope.base import png
from zoetrope.base.errors import UserError
from zoetrope.base.files import is_temp_name, sha256_bytes, write_durable

log = logging.getLogger(__name__)

LOG_NAME = "chain.jsonl"
START_IMAGE = "start.png"
SCHEMA_VERSION = 2  # v2: what the runner and the repetition guard did are fields (attempt, recaptioned, appended_word)
STEP_IMAGE_PATTERN = re.compile(r"^step-(\d{6,})\.png$")


class ChainLogError(UserError):
    """A chain folder or log that cannot be read as a chain."""


def step_image_name(step: int) -> str:
    return f"step-{step:06d}.png"


# ------------------------------------------------------------------------------------------- PNG files


def a1111_parameters(record: dict, model_id: str) -> str:
    """AUTOMATIC1111's infotext, so common image tools show how the image was made."""
    p = record["paint_params"]
    from zoetrope.settings.params import SAMPLER_NAMES

    fields = [
        f"Steps: {p['steps']}", f"Sampler: {SAMPLER_NAMES.get(p['scheduler'], p['scheduler'])}",
        f"CFG scale: {p['guidance']}", f"Seed: {record['seed']}", f"Size: {p['width']}x{p['height']}",
        f"Model: {model_id}",
    ]
    if p.get("strength") is not None:
        fields.append(f"Denoising strength: {p['strength']}")
    return f"{record['prompt']}\nNegative prompt: {record['negative_prompt']}\n" + ", ".join(fields)


def provenance_record(record: dict, written_as: int = SCHEMA_VERSION) -> dict:
    """The step record as embedded in its PNG: without timings (so equal runs give equal bytes) or its own hash,
    in the shape of the schema version the step was written in (a migrated v1 step keeps its v1 chunk)."""
    dropped = {"image_sha256", "seconds", "energy_j"} | (set(V2_STEP_FIELDS) if written_as < 2 else set())
    return {k: v for k, v in record.items() if k not in dropped}


def encode_png(image: Image.Image, record: dict, model_id: str, written_as: int = SCHEMA_VERSION) -> bytes:
    """The step PNG exactly as the writer makes it (verify re-encodes a regenerated image through this)."""
    return png.encode(image, {
        "parameters": a1111_parameters(record, model_id),
        "zoetrope": json.dumps(provenance_record(record, written_as), ensure_ascii=False, sort_keys=True),
    })


# ------------------------------------------------------------------------------------------- records


def make_header(run_id: str, config: dict, models: dict, versions: dict, device: str, dtype: str,
                parent: dict | None = None) -> dict:
    """The header line: everything a replay needs to load the same models with the same settings."""
    return {
        "kind": "header", "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config, "models": models, "versions": versions, "device": device, "dtype": dtype, "parent": parent,
    }


def step_record(step, input_name: str | None, input_sha256: str | None, energy_j: float | None = None) -> dict:
    """A loop.chain.Step as one chain.jsonl line, keys in the documented order (`image_sha256` is filled on
    commit)."""
    return {
        "kind": "step", "step": step.step, "input_image": input_name, "input_sha256": input_sha256,
        "caption": step.caption, "caption_params": step.caption_params, "prompt": step.prompt,
        "negative_prompt": step.negative_prompt, "seed": step.seed, "paint_params": step.paint_params,
        "attempt": step.attempt, "recaptioned": step.recaptioned, "appended_word": step.appended_word,
        "image": step_image_name(step.step), "image_sha256": None, "seconds": step.seconds,
        "energy_j": energy_j, "events": step.events,
    }


# ------------------------------------------------------------------------------------------- reading


@dataclass
class ChainLog:
    folder: Path
    header: dict
    steps: list[dict]
    warnings: list[str] = field(default_factory=list)
    committed_bytes: int = 0  # length of the newline-terminated part of the file
    version_on_disk: int = SCHEMA_VERSION  # the file's own schema_version (records are migrated on read)

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


V2_STEP_FIELDS = ("attempt", "recaptioned", "appended_word")


def _step_v1_to_v2(record: dict) -> dict:
    """v1 kept what the guard and the runner did only inside `events` (`actions: ["sample_caption", "reseed",
    "lexicon:<word>"]`, re-seed events with `attempt`); v2 has them as fields. The events stay as logged."""
    events = record.get("events") or []
    guard = [e for e in events if e.get("kind") == "repetition_guard"]
    actions = [a for e in guard for a in e.get("actions") or []]
    word = next((a.removeprefix("lexicon:") for a in actions if a.startswith("lexicon:")), None)
    attempt = max((e["attempt"] for e in events if isinstance(e.get("attempt"), int)), default=0)
    return record | {"attempt": attempt, "recaptioned": bool(guard), "appended_word": word}


# One function per version step: MIGRATIONS[v] turns a version-v (header, step) into version v + 1.
MIGRATIONS = {1: (lambda header: header, _step_v1_to_v2)}


def check_version(header: dict, where: str) -> int:
    version = header.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ChainLogError(f"{where}: header has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ChainLogError(
            f"{where}: schema_version {version} is newer than this Zoetrope reads ({SCHEMA_VERSION}); upgrade Zoetrope"
        )
    return version


def migrate_header(header: dict, where: str) -> dict:
    """Bring a header of any schema version ever written up to SCHEMA_VERSION (one migration per version)."""
    version = check_version(header, where)
    for v in range(version, SCHEMA_VERSION):
        header = MIGRATIONS[v][0](header)
    return header | {"schema_version": SCHEMA_VERSION}


def migrate_step(record: dict, from_version: int) -> dict:
    for v in range(from_version, SCHEMA_VERSION):
        record = MIGRATIONS[v][1](record)
    return record


def _record(raw: bytes, path: Path, number: int) -> dict:
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChainLogError(f"{path}:{number}: garbled record ({exc})") from None
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


def read_chain(folder: Path | str) -> ChainLog:
    """Read a chain folder. A torn last line (an interrupted write) is dropped with a warning; a garbled
    line before it is an error naming the line."""
    folder = Path(folder)
    path = folder / LOG_NAME
    if not folder.is_dir():
        raise ChainLogError(f"{folder}: no such chain folder")
    if not path.is_file():
        raise ChainLogError(f"{folder}: not a chain folder (no {LOG_NAME})")
    data = path.read_bytes()
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
                f"{path}:{number}: expected step {expected}, got kind={record.get('kind')!r} step={record.get('step')!r}"
            )
    for w in warnings:
        log.warning(w)
    return ChainLog(folder, header, steps, warnings, committed, version)


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
    restarted: bool  # the file was cut back (a resume dropped a torn line) and was read again from the top
    first: bool  # read from the top of the file (the first read, or after a restart)
    mtime: float  # the log's modification time when read: when its newest line was committed


class LogTail:
    """Follows a chain.jsonl that a writer appends to, for a reader that polls (the kiosk server): never
    locks, never blocks the writer, reads only whole lines, in slices (a log of weeks may be gigabytes). On the
    first read only the last `keep` lines are parsed; counts and energy come from a scan of the raw lines,
    which this module can do because it alone writes them (`json.dumps` with its default separators)."""

    def __init__(self, folder: Path, keep: int = 64):
        self.path, self.keep = Path(folder) / LOG_NAME, keep
        self.offset, self.header = 0, None

    def read(self) -> TailRead | None:
        """Newly committed lines since the last read; None when the log is missing or has not grown."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        size = st.st_size
        restarted = size < self.offset
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


# ------------------------------------------------------------------------------------------- writing


def upgrade(chain: ChainLog) -> Path:
    """Rewrite an older log in the current schema before anything is appended to it: the old file is kept
    beside it (`chain.jsonl.v1`), the new one replaces it atomically, and its header's `migrated` records
    which steps were written in the old version (their PNG chunks keep that shape). Returns the backup."""
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
    return backup


def require_new_chain(folder: Path, hint: str | None = None) -> None:
    """Refuse a folder that already holds a chain: a new run never writes over a logged one."""
    if (Path(folder) / LOG_NAME).exists():
        raise ChainLogError(f"{folder}: already holds a chain; {hint or f'continue it with --resume {folder}'}")


class ChainWriter:
    """Appends durable steps to one chain folder."""

    def __init__(self, folder: Path, model_id: str):
        self.folder = Path(folder)
        self.model_id = model_id
        self._log = open(self.folder / LOG_NAME, "ab")

    @classmethod
    def create(cls, folder: Path, header: dict, start_image: Image.Image | None, model_id: str) -> ChainWriter:
        folder = Path(folder)
        require_new_chain(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if start_image is not None:
            write_durable(folder / START_IMAGE, png.encode(start_image))
        write_durable(folder / LOG_NAME, (json.dumps(header, ensure_ascii=False) + "\n").encode())
        return cls(folder, model_id)

    @classmethod
    def reopen(cls, chain: ChainLog, model_id: str) -> ChainWriter:
        """Resume: cut a torn tail and remove what an interrupted step left (temp files, an unlogged image).
        A log of an older schema is first rewritten in the current one (see `upgrade`), so that one file never
        mixes two versions' lines."""
        folder = chain.folder
        if chain.version_on_disk < SCHEMA_VERSION:
            upgrade(chain)
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
        return cls(folder, model_id)

    def commit(self, record: dict, image: Image.Image) -> dict:
        """Make one step durable: image first, then its log line. Returns the record with the image's hash."""
        png = encode_png(image, record, self.model_id)
        write_durable(self.folder / record["image"], png)
        record = record | {"image_sha256": sha256_bytes(png)}
        self._log.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
        self._log.flush()
        os.fsync(self._log.fileno())
        return record

    def close(self) -> None:
        self._log.close()
