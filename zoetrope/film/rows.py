"""How many rows a film's painter calls have: as many as the device's memory holds.

A walk pads every painter call to the same width so that a frame's bytes do not depend on the batch it was
painted in (see walk.py), and that width is part of every frame's cache key. On CUDA the width is measured:
the peak memory of a 1-row and a 2-row call gives a fixed cost and a cost per row, and the width is the
largest power of two (at most MAX_ROWS) that fits in 80% of the free memory. Elsewhere it is walk.ROWS:
a CPU's RAM is not what limits its batch, and 8 rows already amortise the per-call overhead
(bench/walk.py). Free memory changes from run to run, so the first choice is written beside the frame
cache and reused: a rerun finds its frames under the same keys. Renders that share a cache take the choice
under a lock on the folder, so two of them started together measure once and paint the same keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from zoetrope.base.errors import UserError
from zoetrope.base.files import folder_lock, write_durable

MAX_ROWS = 64
MEMORY_SHARE = 0.8  # of the free memory; the rest absorbs allocator fragmentation and the caller's tensors
CHOICES_NAME = "rows.json"


def rows_that_fit(free_bytes: int, fixed_bytes: int, row_bytes: int, share: float = MEMORY_SHARE,
                  cap: int = MAX_ROWS) -> int:
    """The largest power of two n <= cap with fixed + n x row <= share x free; 1 when nothing more fits."""
    room = share * free_bytes - fixed_bytes
    n = int(room // max(row_bytes, 1)) if room > 0 else 1
    n = max(1, min(cap, n))
    return 1 << (n.bit_length() - 1)


def measure_rows(painter, params, fallback: int) -> int:
    """Rows that fit this device for `params` (fallback off CUDA)."""
    if painter.plan.device != "cuda":
        return fallback
    embeds = painter.encode(["a probe of memory"], [""], params.guidance)
    noise = painter.noise([0], params.width, params.height)

    def peak(rows: int) -> int:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        painter.paint(params=params, latents=noise.repeat(rows, 1, 1, 1),
                      prompt_embeds={k: v.repeat(rows, *([1] * (v.dim() - 1))) for k, v in embeds.items()})
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    one, two = peak(1), peak(2)
    row = max(two - one, 1)
    free = torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    return rows_that_fit(free, one - row, row)


def call_rows(cache: Path, identity: dict, params, measure) -> int:
    """The painter call width for this cache and painter: the one chosen before, else `measure()`, recorded."""
    key = hashlib.sha256(json.dumps({**identity, "width": params.width, "height": params.height,
                                     "cfg": params.guidance > 1.0}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / CHOICES_NAME
    choices = read_choices(path)
    if key in choices:
        return int(choices[key])
    cache.mkdir(parents=True, exist_ok=True)
    with folder_lock(cache):  # two renders sharing the cache measure once and agree (their keys must match)
        choices = read_choices(path)  # what another render recorded while we waited
        if key not in choices:
            choices[key] = measure()
            try:
                write_durable(path, (json.dumps(choices, indent=1, sort_keys=True) + "\n").encode())
            except OSError as exc:
                raise UserError(f"{path}: cannot write the call width ({exc.strerror or exc})") from None
    return int(choices[key])


def read_choices(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); delete it and the call width is measured again") from None
