"""Painter calls side by side on a CPU's cores: one intra-op thread per call, one call per core (a lane).

Why: a walk's calls are small (a few rows of a 128-512 px image), and torch's intra-op threads split each
kernel of one call across the cores, which scales poorly at that size (2 threads paint a tiny-model frame
1.4-1.5x as fast as 1 on the 2-core CI machine), while two calls on two threads of one intra-op thread each are
nearly 2x (their kernels release the GIL). It also fixes a frame's bytes: CPU kernels sum in an order that
depends on their intra-op thread count, so a frame painted at 1 thread is the same on a 2-core laptop, a
64-core server and a Ray worker, whatever their core counts (the film's cache records the count, rows.py).

`torch.set_num_threads` sets the calling thread's count (OpenMP's is per thread) and also the default that
threads starting later inherit: `intra_op_threads` and `in_order` put that default back when they end.

When `in_order` ends early (a call failed, the consumer failed, Ctrl-C), the calls still running on other
lanes stop at their next denoising step (`check_cancelled`, which Painter.denoise calls), so an interrupted
render returns in about a step, not after whole calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

LANES_MAX = 8  # each lane holds one call's activations: more cores than this are left to intra-op threads

Batch = TypeVar("Batch")
Result = TypeVar("Result")

_lane = threading.local()  # on a lane thread: `stop`, the Event its in_order sets when it ends early


class Cancelled(Exception):
    """A lane's call stopped because the walk it belonged to ended early; never seen outside `in_order`."""


def check_cancelled() -> None:
    """Raise Cancelled on a lane whose in_order has ended; elsewhere (any other thread) nothing."""
    stop = getattr(_lane, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled()


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op threads on this thread (None: as they are)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_lanes(painter, params) -> int:
    """How many calls to run at once: the process's intra-op thread count on CPU (at most LANES_MAX) when the
    painter's calls may run side by side (`Painter.concurrent`: its lean path, a scheduler per call); else 1."""
    concurrent = getattr(painter, "concurrent", None)
    if painter.plan.device != "cpu" or concurrent is None or not concurrent(params):
        return 1
    return max(1, min(torch.get_num_threads(), LANES_MAX))


def lanes_for(painter, params, threads: int | None) -> int:
    """The lanes of calls fixed at `threads` intra-op threads: cpu_lanes at 1, else one call at a time."""
    return cpu_lanes(painter, params) if threads == 1 else 1


def in_order(paint: Callable[[Batch], Result], batches: Iterable[Batch], lanes: int
             ) -> Iterator[tuple[Batch, Result]]:
    """(batch, paint(batch)) for each batch, in the order given, with up to `lanes` calls running at once, each
    on a lane thread of one intra-op thread (`lanes` 1: on this thread, as it is). `batches` is drawn lazily,
    one ahead of what finished, so a producer that skips work done meanwhile (a shared cache) still can. A
    failed call re-raises here, in order; calls not yet started are cancelled."""
    if lanes <= 1:
        for batch in batches:
            yield batch, paint(batch)
        return
    main_threads = torch.get_num_threads()
    flight: deque[tuple[Batch, Future]] = deque()
    stop = threading.Event()

    def start_lane() -> None:
        torch.set_num_threads(1)
        _lane.stop = stop

    pool = ThreadPoolExecutor(lanes, thread_name_prefix="paint-lane", initializer=start_lane)
    try:
        for batch in batches:
            flight.append((batch, pool.submit(paint, batch)))
            if len(flight) >= lanes:
                done, future = flight.popleft()
                yield done, future.result()
        while flight:
            done, future = flight.popleft()
            yield done, future.result()
    finally:
        stop.set()  # calls still running (an early end) stop at their next step
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(main_threads)  # the default for threads started later (see the top)
