"""Which step images stay on disk: keep the last N, thin older ones to every k-th, stay under N GB.

Only image files are deleted, never log lines (a thinned chain still tells every step). The last step's
image (a resume starts from it) and start.png are never deleted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from zoetrope.loop.chainlog import STEP_IMAGE_PATTERN, step_image_name
from zoetrope.settings.loop import RetentionSettings

log = logging.getLogger(__name__)

def step_images(folder: Path) -> dict[int, int]:
    """{step: size in bytes} of the step images present in `folder`."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = STEP_IMAGE_PATTERN.match(entry.name)
            if match and entry.is_file():
                found[int(match.group(1))] = entry.stat().st_size
    return found


def plan_deletions(present: dict[int, int], last_step: int, settings: RetentionSettings) -> list[int]:
    """The steps whose images the policy removes, oldest first (pure: no file is touched)."""
    doomed: set[int] = set()
    if settings.keep_last is not None:
        for step in present:
            if step <= last_step - settings.keep_last and step != last_step:
                if settings.thin_every is None or step % settings.thin_every != 0:
                    doomed.add(step)
    if settings.max_gb is not None:
        limit = settings.max_gb * 1e9
        total = sum(size for step, size in present.items() if step not in doomed)
        for step in sorted(present):
            if total <= limit:
                break
            if step in doomed or step == last_step:
                continue
            doomed.add(step)
            total -= present[step]
    return sorted(doomed)


def apply_retention(folder: Path, last_step: int, settings: RetentionSettings) -> list[int]:
    """Delete what the policy says; returns the steps whose images were removed."""
    if settings.keep_last is None and settings.max_gb is None:
        return []
    doomed = plan_deletions(step_images(folder), last_step, settings)
    for step in doomed:
        try:
            (Path(folder) / step_image_name(step)).unlink()
        except FileNotFoundError:
            pass
    if doomed:
        log.info("retention: removed %d step images (%d..%d); the log keeps every step",
                 len(doomed), doomed[0], doomed[-1])
    return doomed
