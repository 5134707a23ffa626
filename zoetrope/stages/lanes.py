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
    if painter.plan.device != "cpu" or not painter.concurrent(params):
        return 1
    return max(1, min(torch.get_num_threads(), LANES_MAX))


def lanes_for(painter, params, threads: int | None) -> int:
    """The lanes of calls fixed at `threads` intra-op threads: cpu_lanes at 1, else one call at a time."""
    return cpu_lanes(painter, params) if threads == 1 else 1


def in_order(paint: Callable[[Batch], Result], batches: Iterable[Batch], lanes: int
             ) -> Iterator[tuple[Batch, Result]]:
    """(batch, paint(batch)) for each batch, in the order given, with up to `lanes` calls running at once, each
    on a lane thread of one intra-op thread (`lanes` 1: on this thread, as it is): LocalPool's `ordered` for a
    plain iterable. `batches` is drawn lazily, as lanes free up, so a producer that skips work done meanwhile
    (a shared cache) still can. A failed call re-raises here, in order; calls not yet started are cancelled."""
    source = iter(batches)
    end = object()

    def next_task() -> tuple | None:
        batch = next(source, end)
        return None if batch is end else (batch,)

    for (batch,), result in LocalPool(None, lanes).ordered(next_task, lambda _worker, b: paint(b)):
        yield batch, result


class LocalPool:
    """The film's Executor in this process (stages.protocols.Executor): its tasks run `fn(worker, *task)` on
    `worker` (the loaded models: `painter`, `clips`, `state`), up to `lanes` at once on lane threads of one
    intra-op thread each (`lanes` 1: on this thread, as it is). The same tasks go to Ray workers with
    `render --ray` (stages.cluster.WorkerPool.ordered has the same contract)."""

    remote = False  # frames stay images; the film's writer thread encodes them while the next calls run

    def __init__(self, worker, lanes: int = 1):
        self.worker, self.lanes = worker, max(1, lanes)

    def put(self, value):
        return value

    def ordered(self, next_task: Callable, fn: Callable) -> Iterator[tuple[tuple, object]]:
        """(task, fn(worker, *task)) in task order; a WAIT from `next_task` first yields what is in flight (its
        result may be what the waiting task needs: the caller writes it), then asks again."""
        from zoetrope.stages.protocols import WAIT

        def tasks() -> Iterator[tuple]:
            while True:
                task = next_task()
                if task is None:
                    return
                yield task

        if self.lanes <= 1:
            for task in tasks():
                if task is WAIT:
                    raise RuntimeError("a task waits on a result that nothing in flight will give")
                yield task, fn(self.worker, *task)
            return
        main_threads = torch.get_num_threads()
        flight: deque[tuple[tuple, Future]] = deque()
        stop = threading.Event()

        def start_lane() -> None:
            torch.set_num_threads(1)
            _lane.stop = stop

        pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="paint-lane", initializer=start_lane)
        try:
            while True:
                task = next_task() if len(flight) < self.lanes else WAIT
                if task is None:
                    break
                if task is WAIT:
                    if not flight:
                        raise RuntimeError("a task waits on a result that nothing in flight will give")
                    done, future = flight.popleft()
                    yield done, future.result()
                    continue
                flight.append((task, pool.submit(fn, self.worker, *task)))
            while flight:
                done, future = flight.popleft()
                yield done, future.result()
        finally:
            stop.set()  # calls still running (an early end) stop at their next step
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(main_threads)  # the default for threads started later (see the top)
