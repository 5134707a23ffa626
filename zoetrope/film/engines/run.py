"""The one render path: a film's units, in film order, painted by an executor and written by this process.

A unit is one model call's worth of a scene (a batch of walk frames, a video chunk). `render_units` hands the
units the cache lacks to an executor (stages.protocols.Executor): `stages.lanes.LocalPool` in this process, or
`stages.cluster.WorkerPool` on Ray workers with `render --ray`. Both run the same task through the same
function (`Unit.fn`, module-level, so Ray can send it), so where a unit is painted never changes its frames.

- **Order and dependencies.** A unit whose conditioning frames (`sources`) are not on disk yet waits (WAIT)
  while units that can go do; results come back in submission order and are written in that order, on one
  writer thread (PNG encoding and renames overlap the next calls), so the encoder can stream the film.
- **Shared caches.** A unit is checked against the cache again when it is dispatched: frames another render
  saved meanwhile count as cached (a frame does not depend on its batch, so skipping some changes no other).
- **Counts are frames**: cached, rendered, calls and seconds per (scene, engine), one RenderStats type.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RenderStats:
    """What one engine did in one scene, counted in film frames (a walk's unique frames, a chunk's frames)."""

    cached: int = 0
    rendered: int = 0
    calls: int = 0
    seconds: float = 0.0
    lanes: int = 1  # calls that ran side by side on CPU lanes (stages/lanes.py)
    segments: set[int] = field(default_factory=set)  # segments with a unit painted now

    def summary(self) -> str:
        rate = f", {self.rendered / self.seconds:.1f} frames/s" if self.rendered and self.seconds > 0 else ""
        calls = f" in {self.calls} call{'s' * (self.calls != 1)}" if self.calls else ""
        lanes = f" on {self.lanes} CPU lanes" if self.rendered and self.lanes > 1 else ""
        where = f" (segments {', '.join(map(str, sorted(self.segments)))})" if self.segments else ""
        return f"{self.cached} frames cached, {self.rendered} rendered{calls}{where}{rate}{lanes}"


class Unit:
    """One model call of a scene: `fn(worker, tag, *args(executor))` paints it wherever the executor runs it;
    `write` stores what it returned. Subclasses: engines/walk.py WalkBatch, engines/clips.py ChunkUnit."""

    scene: str
    engine: str
    segments: tuple[int, ...] = ()
    fn: Callable
    order: tuple = ()  # where the unit goes among its scene's: () first (needs no other unit's frames)
    found: int = 0  # frames `args` found in the cache at dispatch (another render saved them meanwhile)

    @property
    def frames(self) -> int:
        """Film frames this unit gives (progress and counts)."""
        raise NotImplementedError

    def done(self) -> bool:
        """Every frame of the unit is in the cache."""
        raise NotImplementedError

    def sources(self) -> list[Path]:
        """Files that must be on disk before the unit is painted (its conditioning frames)."""
        return []

    def args(self, executor) -> tuple | None:
        """The task's arguments for `fn`, read at dispatch (None: the cache has it all by now); sets `found`."""
        raise NotImplementedError

    def write(self, args: tuple, frames: list) -> int:
        """Store the frames `fn` returned (PNG bytes, or images to encode); the film frames written."""
        raise NotImplementedError


def render_units(executor, units: list[Unit], progress=None, feed=None) -> dict[tuple[str, str], RenderStats]:
    """Paint the units the cache lacks on `executor`, in film order (see the top); {(scene, engine): stats}."""
    start = time.perf_counter()
    stats: dict[tuple[str, str], RenderStats] = {}
    pending: list[Unit] = []
    for unit in units:
        stat = stats.setdefault((unit.scene, unit.engine), RenderStats(lanes=executor.lanes))
        if unit.done():
            _count(stat, unit.frames, progress, feed)
        else:
            pending.append(unit)
    tags: list[tuple[Unit, tuple]] = []
    writes: deque[Future] = deque()

    def flush() -> None:
        while writes:
            writes.popleft().result()

    def next_task():
        from zoetrope.stages.protocols import WAIT

        if feed is not None and feed.consumer_error is not None:
            raise feed.consumer_error
        for attempt in (0, 1):
            for n, unit in enumerate(pending):
                if not all(path.is_file() for path in unit.sources()):
                    continue
                del pending[n]
                args = unit.args(executor)
                if unit.found:  # another render sharing the cache saved some (or all) of it meanwhile
                    _count(stats[unit.scene, unit.engine], unit.found, progress, feed)
                if args is None:
                    return next_task()
                tags.append((unit, args))
                return (len(tags) - 1, unit.fn, *args)
            if attempt == 0 and writes:  # what a waiting unit needs may be on the writer thread still
                flush()
        return WAIT if pending else None

    def save(unit: Unit, args: tuple, frames: list) -> None:
        written = unit.write(args, frames)
        stat = stats[unit.scene, unit.engine]
        stat.rendered += written
        stat.calls += 1
        stat.segments.update(unit.segments)
        stat.seconds = time.perf_counter() - start
        if progress is not None:
            progress.update(written)
        if feed is not None:
            feed.saved()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-writer") as writer:
        try:
            for (tag, *_), frames in executor.ordered(next_task, _dispatch):
                unit, args = tags[tag]
                while writes and writes[0].done():
                    writes.popleft().result()  # re-raises a failed write before more work is queued
                writes.append(writer.submit(save, unit, args, frames))
            flush()
        finally:
            for future in writes:
                future.cancel()
    if pending:
        unit = pending[0]
        missing = [str(p) for p in unit.sources() if not p.is_file()]
        raise RuntimeError(f"a {unit.engine} unit of scene {unit.scene} waits on frames nothing renders: {missing}")
    return stats


def _dispatch(worker, tag: int, fn: Callable, *args):
    """What the executor runs: the unit's own function (the tag stays on the driver's side)."""
    return fn(worker, *args)


def _count(stat: RenderStats, frames: int, progress, feed) -> None:
    stat.cached += frames
    if progress is not None:
        progress.update(frames)
    if feed is not None:
        feed.saved()
