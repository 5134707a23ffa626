"""How many rows a film's painter calls have: the fastest width that fits the device's memory.

A walk pads every painter call to the same width so that a frame's bytes do not depend on the batch it was
painted in (see walk.py), and that width is part of every frame's cache key. The width is measured, on every
device: calls of 1, 2, 4, ... rows are timed (each after a warm-up call of its shape; on CPU in the process's
CPU seconds, so that other processes' load on a shared machine does not choose it, except on CPU lanes, where
as many calls as lanes run side by side on the wall clock) and the width with the fewest seconds per frame
wins, a wider one only when it saves at least WIDER_GAIN; the search goes on through widths within WIDER_GAIN
of the best (one noisy timing of a flat stretch does not end it) and stops at the first clearly slower one,
once it is still slower when timed again in turn with the fastest (a busy moment of a shared machine does not
end it either). Then every width probed is timed TIMINGS times more, in rotation, and each counts its best:
a drift in the machine's speed while the search went up would otherwise fall on the wider widths alone.
Batching pays where a call's fixed cost matters (small images, the tiny models' Python overhead, lanes
sharing the GIL) and not where a row's convolutions fill the device (256 px on a 2-core CPU: 1 row).

Candidates stop at what memory holds. On CUDA the peak memory of a 1-row and a 2-row call gives a fixed cost
and a cost per row, and the largest power of two (at most MAX_ROWS) that fits in 80% of the free memory caps
them. On CPU the same comes from how far those calls, on every lane at once, raise the process's peak
resident memory, against the memory left (base/memory.py, Linux's counters), at most CPU_MAX_ROWS (from 0.7;
16-row calls on 2 lanes paint the tiny 128 px film 10-20% faster than 8-row ones: half as many calls, half
the Python that the lanes take turns at). Where those counters are not (macOS, Windows) the fallback (the
render passes walk.ROWS, 8) caps them, as it did every CPU before 0.7. A call that runs out of memory anyway
ends the search.

Candidates also stop at the film: a render measures for the frames its walk paints, probes no call wider
than gives each lane one call's worth (film_rows), and takes the width that paints those frames soonest,
padding and idle lanes counted (film_seconds): a 15-frame walk on 2 lanes gets two 8-row calls, not one
16-row call and an idle lane.
Speed and free memory change from run to run, so the first choice is written beside the frame cache and
reused: a rerun finds its frames under the same keys, and caches made before the measurement (8 rows on CPU)
keep theirs. Renders that share a cache take the choice under a lock on the folder, so two of them started
together measure once and paint the same keys.

The choice also fixes each call's intra-op thread count on CPU (CPU kernels sum in an order that depends on
it): 1 from 0.5 on, so calls run side by side, a lane per core (stages/lanes.py), and a frame's bytes no longer
depend on the machine's core count. A choice recorded before 0.5 (a bare number) keeps the process's count,
as its frames were painted.

And on CPU it fixes the VAE's width. The VAE decodes at full resolution, where a wide call's activations fall
out of the CPU's caches, so decoding a call's latents in narrower slices can be faster per frame than the
width the UNet prefers (the tiny painter on 2 cores: slices of 2 or 4 of an 8-row call, 10-25% less time a
frame). From 0.6 on it is measured first: `cap` latents decoded whole, in halves, quarters, ..., one at a time
(on the lanes, the widths timed in rotation), a narrower slice kept only when it saves WIDER_GAIN; then the
call width, its probe calls decoding in those slices as the render will. A slice narrower than the call is in
each frame's key (a kernel's sums may depend on its batch); decoding the whole call keys as before, and so do
choices recorded without one. GPUs decode whole: their calls are as wide as memory allows, and a probe
decoding `cap` latents could exhaust it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from zoetrope.base.errors import UserError
from zoetrope.base.files import folder_lock, write_durable
from zoetrope.base.memory import available_bytes, resident_rise

MAX_ROWS = 64
CPU_MAX_ROWS = 16  # CPU calls, where memory bounds them: wider saves the lanes little Python (see the top)
MEMORY_SHARE = 0.8  # of the free memory; the rest absorbs allocator fragmentation and the caller's tensors
CHOICES_NAME = "rows.json"
WIDER_GAIN = 0.05  # a wider call (a narrower VAE slice) must save 5% a frame to be chosen
PROBE_STEPS = 4  # denoising steps of a timed probe call at most (the UNet's share of a frame, not all of it)
TIMINGS = 3  # timed calls per width; the least disturbed counts
CPU_THREADS = 1  # intra-op threads of a CPU call in caches chosen from 0.5 on (see the top)

log = logging.getLogger(__name__)


def rows_that_fit(free_bytes: int, fixed_bytes: int, row_bytes: int, share: float = MEMORY_SHARE,
                  cap: int = MAX_ROWS) -> int:
    """The largest power of two n <= cap with fixed + n x row <= share x free; 1 when nothing more fits."""
    room = share * free_bytes - fixed_bytes
    n = int(room // max(row_bytes, 1)) if room > 0 else 1
    n = max(1, min(cap, n))
    return 1 << (n.bit_length() - 1)


def measure_rows(painter, params, cap: int, threads: int | None = None, lanes: int | None = None,
                 decode: int | None = None, frames: int | None = None) -> int:
    """The fastest call width for `params` on this painter's device: powers of two up to what memory holds
    (CUDA) or `cap` (elsewhere), timed per frame (the best of TIMINGS) at `threads` intra-op threads (None: the
    process's) and as the render runs them: `lanes` calls side by side (None: as many as a local render runs;
    a Ray worker runs one), decoding `decode` latents at a time (None: whole); see the top. `frames` given:
    widths up to film_rows, and the one that paints that many frames soonest (film_seconds), else the
    fastest per frame."""
    from zoetrope.stages.lanes import intra_op_threads, lanes_for

    lanes = lanes_for(painter, params, threads) if lanes is None else lanes
    with intra_op_threads(threads if lanes == 1 else None):  # lanes set their own
        return _measure_rows(painter, params, cap, lanes, decode, frames)


def film_rows(frames: int, lanes: int) -> int:
    """The widest call worth probing for a film of `frames` frames on `lanes`: the smallest power of two that
    gives every lane at most one call's worth (wider calls would only add padding, or leave lanes idle)."""
    per_lane = -(-max(frames, 1) // max(lanes, 1))
    return 1 << (per_lane - 1).bit_length()


def film_seconds(per_frame: float, rows: int, lanes: int, frames: int | None) -> float:
    """Seconds to paint `frames` frames in calls of `rows` on `lanes`, from a width's measured seconds a frame
    with every lane busy: whole rounds of calls, padding and idle lanes in the last one included (a round with
    idle lanes is counted as a full one: an upper bound). None: seconds a frame, the film's length unknown."""
    if frames is None:
        return per_frame
    rounds = -(-max(frames, 1) // (rows * lanes))
    return rounds * rows * lanes * per_frame


def _measure_rows(painter, params, cap: int, lanes: int, decode: int | None, frames: int | None) -> int:
    probe, warm = replace(params, steps=min(params.steps, PROBE_STEPS)), replace(params, steps=1)
    call, clock = _prober(painter, params, lanes, decode), _clock(painter, lanes)
    if painter.plan.device == "cuda":
        cap = _cuda_rows(call, warm)
    if frames is not None:
        cap = min(cap, film_rows(frames, lanes))
    seconds: dict[int, float] = {}

    def again(widths: list[int]) -> None:  # TIMINGS more timings of each, in rotation: drift falls on all alike
        for _ in range(TIMINGS):
            for n in widths:
                seconds[n] = min(seconds[n], _timed(call, n, probe, clock) / (n * lanes))

    def slower(rows: int) -> bool:  # clearly slower per frame than the fastest so far
        return seconds[rows] > (1 + WIDER_GAIN) * min(seconds.values())

    rows = 1
    while rows <= cap:
        try:
            call(rows, warm)  # the first call of a shape builds its kernels: not timed
            seconds[rows] = min(_timed(call, rows, probe, clock) for _ in range(TIMINGS)) / (rows * lanes)
            if slower(rows):  # before the search ends there: the fastest and this one again, side by side
                again([min(seconds, key=seconds.get), rows])
        except (torch.OutOfMemoryError, MemoryError):
            seconds.pop(rows, None)
            break
        except RuntimeError as exc:  # the CPU allocator's out-of-memory is a plain RuntimeError
            if "alloc" not in str(exc).lower():
                raise
            seconds.pop(rows, None)
            break
        if slower(rows):
            break  # clearly slower per frame than a narrower call: wider ones would only pad more
        rows *= 2
    if len(seconds) > 1:
        again(list(seconds))  # a drift while the search went up fell on the wider widths: every width again
    best = _choose(sorted(seconds) or [1], lambda n: film_seconds(seconds[n], n, lanes, frames))
    log.info("painter call width %d at %dx%d: seconds per frame by width %s", best, params.width, params.height,
             {n: round(t, 4) for n, t in seconds.items()})
    return best


def measure_decode(painter, params, rows: int, threads: int | None = None, lanes: int | None = None) -> int:
    """The fastest VAE width for `rows` latents: decoded whole, in halves, ..., down to one at a time, at
    `threads`, on `lanes` as measure_rows. Each width is warmed up, then timed TIMINGS times in rotation with the
    others (a drift in the machine's speed then falls on every width alike) and counts its best; a narrower
    slice wins only when it saves WIDER_GAIN. `rows` itself (whole) where nothing narrower is tried: 1 row, a
    GPU, or a painter whose pipeline decodes (not the lean path)."""
    from zoetrope.stages.lanes import intra_op_threads, lanes_for

    if rows == 1 or painter.plan.device != "cpu" or not painter.lean(None, params):
        return rows
    lanes = lanes_for(painter, params, threads) if lanes is None else lanes
    latents = painter.noise([0], params.width, params.height).repeat(rows, 1, 1, 1)
    latents = latents.to(painter.plan.device, painter.plan.dtype)

    def call(width: int, _params=None) -> None:
        _on_lanes(lambda: painter.decode(latents, width), lanes)

    clock = _clock(painter, lanes)
    widths = [rows >> k for k in range(rows.bit_length()) if rows >> k >= 1]  # rows, rows/2, ..., 1
    with intra_op_threads(threads if lanes == 1 else None):
        for width in widths:
            call(width)  # warm-up: a new shape's first call builds its kernels
        timings = [[_timed(call, width, None, clock) for width in widths] for _ in range(TIMINGS)]
    seconds = {width: min(t[i] for t in timings) for i, width in enumerate(widths)}
    best = _choose(widths, seconds.__getitem__)
    log.info("VAE width %d of %d latents at %dx%d: seconds by width %s", best, rows, params.width,
             params.height, {n: round(t, 4) for n, t in seconds.items()})
    return best


def measure_shape(painter, params, fallback: int, threads: int | None = None, lanes: int | None = None,
                  frames: int | None = None) -> tuple[int, int]:
    """(rows, VAE width) for a film of `frames` frames (None: of unknown length): on CPU first the widest call
    that memory holds (cpu_rows; `fallback` where it cannot be measured, and elsewhere), at most film_rows;
    then the VAE's fastest slice of that many latents (measure_decode); then the call width with its probes
    decoding in those slices (measure_rows, which bounds its widths by film_rows on every device). The VAE
    width is at most the call's, and equal to it (whole) when no narrower slice paid."""
    from zoetrope.stages.lanes import lanes_for

    lanes = lanes_for(painter, params, threads) if lanes is None else lanes
    cap = cpu_rows(painter, params, fallback, threads, lanes) if painter.plan.device == "cpu" else fallback
    cap = cap if frames is None else min(cap, film_rows(frames, lanes))
    width = measure_decode(painter, params, cap, threads, lanes)
    sliced = width if width < cap else None
    rows = measure_rows(painter, params, cap, threads, lanes, sliced, frames)
    return rows, rows if sliced is None else min(sliced, rows)


def _choose(candidates: list[int], cost) -> int:
    """The first candidate, or a later one that costs at least WIDER_GAIN less than the one kept before it: the
    one rule by which both the call width and the VAE width leave their default."""
    best = candidates[0]
    for n in candidates[1:]:
        if cost(n) <= (1 - WIDER_GAIN) * cost(best):
            best = n
    return best


def _prober(painter, params, lanes: int, decode: int | None):
    """call(rows, params): a probe call of `rows` rows on each of `lanes` lanes side by side, decoding `decode`
    latents at a time (None: whole)."""
    embeds = painter.encode(["a probe of speed"], [""], params.guidance)
    noise = painter.noise([0], params.width, params.height)

    def one(rows: int, p) -> None:
        painter.paint(params=p, latents=noise.repeat(rows, 1, 1, 1),
                      prompt_embeds={k: v.repeat(rows, *([1] * (v.dim() - 1))) for k, v in embeds.items()},
                      decode_rows=decode if decode is not None and decode < rows else None)

    def call(rows: int, p) -> None:
        _on_lanes(lambda: one(rows, p), lanes)

    return call


def _on_lanes(run, lanes: int) -> None:
    """`run()` once on each of `lanes` CPU lanes side by side, as the render runs its calls (stages/lanes.py)."""
    from zoetrope.stages.lanes import in_order

    for _ in in_order(lambda _: run(), iter(range(lanes)), lanes):
        pass


def _clock(painter, lanes: int):
    """On CPU the process's CPU seconds, so that a machine shared with other work does not choose a width by its
    load; on lanes (and GPUs) the wall clock, since a call's time waiting for the others' Python (the GIL) is a
    cost of its width that CPU seconds do not see."""
    return time.process_time if painter.plan.device == "cpu" and lanes == 1 else time.perf_counter


def _timed(call, rows: int, params, clock) -> float:
    start = clock()
    call(rows, params)  # returns images: on CUDA that waits for the device
    return clock() - start


def cpu_rows(painter, params, fallback: int, threads: int | None, lanes: int) -> int:
    """The widest CPU call (a power of two, at most CPU_MAX_ROWS) whose `lanes` side by side fit MEMORY_SHARE of
    the memory left (base/memory.py), from how far a 1-row and a 2-row call on every lane raise the process's
    peak resident memory (whole decodes, the most a call of those rows can take); `fallback` where Linux's
    counters are not there. Lanes' calls are measured together: their activations are held at once."""
    from zoetrope.stages.lanes import intra_op_threads

    call, warm = _prober(painter, params, lanes, None), replace(params, steps=1)
    with intra_op_threads(threads if lanes == 1 else None):
        one, two = (resident_rise(lambda rows=rows: call(rows, warm)) for rows in (1, 2))
    free = available_bytes()
    if one is None or two is None or free is None:
        return fallback
    row = max(two - one, 1)
    rows = rows_that_fit(free, one - row, row, cap=CPU_MAX_ROWS)
    log.info("CPU calls of at most %d rows on %d lanes: %d MiB free, %d MiB a row, %d MiB more a call", rows,
             lanes, free >> 20, row >> 20, max(0, one - row) >> 20)
    return rows


def _cuda_rows(call, params) -> int:
    """Rows that fit 80% of the free CUDA memory, from the peaks of a 1-row and a 2-row call."""
    def peak(rows: int) -> int:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call(rows, params)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    one, two = peak(1), peak(2)
    row = max(two - one, 1)
    free = torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    return rows_that_fit(free, one - row, row)


@dataclass(frozen=True)
class CallShape:
    """How a cache's painter calls run: `rows` wide, at `threads` intra-op threads (None: the process's), their
    latents decoded `decode` at a time (None: the whole call, as before 0.6)."""

    rows: int
    threads: int | None
    decode: int | None = None


def call_threads(identity: dict) -> int | None:
    """The intra-op threads a new cache's calls run at: CPU_THREADS on CPU; elsewhere the device decides."""
    return CPU_THREADS if identity.get("device") == "cpu" else None


def call_shape(cache: Path, identity: dict, params, measure, rows: int | None = None) -> CallShape:
    """The painter calls' shape for this cache and painter: the one chosen before, else `measure(threads)`'s
    (rows, VAE width) at call_threads, recorded. `rows` given (--rows): that width, at the recorded threads or
    call_threads, decoded as recorded for that width (else whole), and nothing is measured or recorded."""
    key = hashlib.sha256(json.dumps({**identity, "width": params.width, "height": params.height,
                                     "cfg": params.guidance > 1.0}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / CHOICES_NAME
    choices = read_choices(path)
    if key in choices or rows is not None:
        return _shape(path, choices.get(key), identity, rows)
    cache.mkdir(parents=True, exist_ok=True)
    with folder_lock(cache):  # two renders sharing the cache measure once and agree (their keys must match)
        choices = read_choices(path)  # what another render recorded while we waited
        if key not in choices:
            threads = call_threads(identity)
            measured, decode = measure(threads)
            choices[key] = {"rows": measured, "threads": threads, "decode": decode}
            try:
                write_durable(path, (json.dumps(choices, indent=1, sort_keys=True) + "\n").encode())
            except OSError as exc:
                raise UserError(f"{path}: cannot write the call width ({exc.strerror or exc})") from None
    return _shape(path, choices[key], identity, None)


def _shape(path: Path, choice, identity: dict, rows: int | None) -> CallShape:
    if choice is None:
        return CallShape(rows, call_threads(identity))
    if isinstance(choice, int):  # recorded before 0.5: the width alone, painted at the process's threads
        return CallShape(rows or choice, None)
    recorded, threads, decode = (choice.get("rows"), choice.get("threads"), choice.get("decode")) \
        if isinstance(choice, dict) else (None, 0, None)
    if not (_count(recorded) and (threads is None or _count(threads))
            and (decode is None or _count(decode) and decode <= recorded)):
        raise UserError(f"{path}: a choice must be {{\"rows\": N, \"threads\": N or null, \"decode\": 1..rows}} but "
                        f"one is {choice!r}; delete the file and the call width is measured again")
    if rows is not None and rows != recorded:
        return CallShape(rows, threads)
    return CallShape(recorded, threads, None if decode == recorded else decode)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_choices(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); delete it and the call width is measured again") from None
