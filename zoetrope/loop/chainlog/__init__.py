"""The chain log, the one owner of its formats: `chain.jsonl` (a header line, then one line per completed step)
and the text chunks of the step PNGs beside it. Nothing else in Zoetrope parses or writes them.

Durability rule: a step's image is written to a temp name, fsynced and renamed *before* its log line is
appended, flushed and fsynced. A crash therefore never loses a committed step, and a reader trusts only
newline-terminated lines. Older schema versions are migrated on read. One writer per chain folder: every
process that appends holds the folder's writer lock (lock.py); readers never take it. A log damaged by two
writers or a torn write is mended by `repair_chain` (repair.py). The format: docs/chain-log.md.
"""

from zoetrope.loop.chainlog.lock import LOCK_NAME, ChainBusy, WriterLock, holds_lock, lock_chain, writer_pid
from zoetrope.loop.chainlog.reader import ChainLog, LogTail, TailRead, read_chain, read_header
from zoetrope.loop.chainlog.records import (
    LOG_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    START_IMAGE,
    STEP_IMAGE_PATTERN,
    V2_STEP_FIELDS,
    ChainLogError,
    a1111_parameters,
    check_version,
    encode_png,
    infotext_safe,
    make_header,
    migrate_header,
    migrate_step,
    painter_of,
    provenance_record,
    step_image_name,
    step_record,
)
from zoetrope.loop.chainlog.repair import REJECTED_NAME, RepairReport, repair_chain, repair_lines
from zoetrope.loop.chainlog.writer import ChainWriter, require_new_chain, upgrade

__all__ = [
    "LOCK_NAME", "LOG_NAME", "MIGRATIONS", "REJECTED_NAME", "SCHEMA_VERSION", "START_IMAGE", "STEP_IMAGE_PATTERN",
    "V2_STEP_FIELDS", "ChainBusy", "ChainLog", "ChainLogError", "ChainWriter", "LogTail", "RepairReport",
    "TailRead", "WriterLock", "a1111_parameters", "check_version", "encode_png", "holds_lock", "infotext_safe",
    "lock_chain", "make_header", "migrate_header", "migrate_step", "painter_of", "provenance_record", "read_chain",
    "read_header", "repair_chain", "repair_lines", "require_new_chain", "step_image_name", "step_record",
    "upgrade", "writer_pid",
]
