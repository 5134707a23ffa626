"""The host's memory, as a CPU render sizes its painter calls by it: how much is left to take, and how far a
piece of work raises the process's resident memory.

CUDA has counters for both (`mem_get_info`, `max_memory_allocated`); the CPU allocator has none, and running
out of host memory is no error a render could report but the kernel's SIGKILL. Linux keeps the counters
instead: /proc/meminfo's MemAvailable, a container's cgroup limit and usage, and the process's peak resident
set (VmHWM in /proc/self/status), which writing "5" to /proc/self/clear_refs resets to the resident set of the
moment (Linux 4.0 on). Elsewhere (macOS, Windows) these return None and the caller keeps its fixed bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
# a container's memory limit and usage as seen from inside it, cgroup v2 and v1 (a hybrid host may show both;
# every limit found counts; no limit is "max" in v2 and a huge number in v1)
CGROUP_FILES = (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))


def available_bytes() -> int | None:
    """Memory the process may still take: MemAvailable, or less where a cgroup limit leaves less; None
    where /proc/meminfo cannot be read or has no MemAvailable (kernels before 3.14)."""
    try:
        meminfo = (PROC / "meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    if found is None:
        return None
    room = int(found.group(1)) * 1024
    for limit_name, usage_name in CGROUP_FILES:
        with contextlib.suppress(OSError, ValueError):  # "max" (v2's no limit), or no such controller
            limit, usage = (int((CGROUP / name).read_text()) for name in (limit_name, usage_name))
            room = min(room, max(0, limit - usage))
    return room


def resident_rise(run: Callable[[], object]) -> int | None:
    """Bytes the process's peak resident memory rose above its resident memory at the start while `run()` ran,
    or None (and `run` not called) where Linux's counters cannot be read or reset.

    The allocator's free pages are given back first (glibc's malloc_trim): a call that reused them would not
    raise the peak, though a process without them would need that memory. Other threads' allocations in the
    meantime count too, which only overstates the rise."""
    status = PROC / "self" / "status"
    try:
        _trim()
        (PROC / "self" / "clear_refs").write_text("5")
        start = _kib(status.read_text(), "VmRSS")
    except (OSError, ValueError):
        return None
    run()
    try:
        return max(0, _kib(status.read_text(), "VmHWM") - start) * 1024
    except (OSError, ValueError):
        return None


def _kib(status: str, field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise ValueError(f"no {field} in /proc/self/status")
    return int(found.group(1))


def _trim() -> None:
    """Give the C allocator's free heap back to the system (glibc; a no-op where malloc_trim does not exist)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
