"""The walk engine: a scene's walk segments as the painter's latent walk (film/walk.py), in batches of frames.

Its units are batches of the walk's missing frames, each one painter call of exactly `plan.rows` rows (padded
by walk.Walker), so a frame's bytes depend only on its own inputs and not on its batch, its lane or the Ray
worker that painted it. The plan travels once per scene and executor (`Executor.put`); wherever a batch is
painted, a Walker per scene there keeps each keyframe's embeddings and noise between calls.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.film.engines import register
from zoetrope.film.engines.base import Engine, Part, SceneContext, Segment
from zoetrope.film.engines.clips import Source
from zoetrope.film.engines.run import Unit
from zoetrope.settings.engines import EngineSpec

WALKERS_KEPT = 4  # scenes whose keyframe latents a worker keeps at once (scenes render side by side)


def plan_token(plan) -> str:
    """Names a plan on the workers: its frame keys (which hash everything that determines them) and width."""
    digest = hashlib.sha256(f"{plan.rows}:{plan.width}x{plan.height}".encode())
    for job in plan.jobs:
        digest.update(job.key.encode())
    return digest.hexdigest()[:24]


def _paint_batch(worker, token: str, box: list, jobs: list, encode: bool) -> list:
    """Wherever the unit runs: one padded painter call (walk.Walker.paint); PNG bytes for a remote caller."""
    from zoetrope.base import png
    from zoetrope.film.walk import Walker
    from zoetrope.stages.protocols import unbox

    walkers = worker.state.setdefault("walkers", {})
    with worker.state.setdefault("walkers_lock", threading.Lock()):
        walker = walkers.get(token)
        if walker is None:
            while len(walkers) >= WALKERS_KEPT:
                walkers.pop(next(iter(walkers)))
            walker = walkers[token] = Walker(worker.painter, unbox(box[0]))
    images = walker.paint(jobs)
    return [png.encode(image) for image in images] if encode else images


class WalkBatch(Unit):
    """Up to `size` frames of one scene's walk: one painter call."""

    fn = staticmethod(_paint_batch)
    found = 0

    def __init__(self, part: WalkPart, jobs: list, segments: tuple[int, ...]):
        self.part, self.jobs = part, jobs
        self.scene, self.engine, self.segments = part.ctx.name, WALK.name, segments

    @property
    def frames(self) -> int:
        return len(self.jobs)

    def _path(self, job) -> Path:
        return self.part.ctx.cache / f"{job.key}.png"

    def done(self) -> bool:
        return all(self._path(j).is_file() for j in self.jobs)

    def args(self, executor) -> tuple | None:
        missing = [j for j in self.jobs if not self._path(j).is_file()]  # another render may have saved some
        self.found = len(self.jobs) - len(missing)
        if not missing:
            return None
        if self.part.boxes.get(id(executor)) is None:  # the plan goes to the workers once, boxed (Ray keeps it whole)
            self.part.boxes[id(executor)] = [executor.put(self.part.plan)]
        return self.part.token, self.part.boxes[id(executor)], missing, executor.remote

    def write(self, args: tuple, frames: list) -> int:
        from zoetrope.film.walk import write_frame

        jobs = args[2]
        for job, frame in zip(jobs, frames, strict=True):
            if isinstance(frame, bytes):
                write_bytes(self._path(job), frame)
            else:
                write_frame(self._path(job), frame)
        return len(jobs)


def write_bytes(path: Path, data: bytes) -> None:
    """As walk.write_frame, for bytes a worker encoded: atomic, no fsync; a failing write names the frame."""
    from zoetrope.base.files import write_durable

    try:
        write_durable(path, data, sync=False)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the frame ({exc.strerror or exc})") from None


class WalkPart(Part):
    def __init__(self, ctx: SceneContext, plan):
        self.ctx, self.plan, self.token, self.boxes = ctx, plan, plan_token(plan), {}

    def segment(self, i: int, previous: Source | None, next_still: Source | None, start_frame: int) -> Segment:
        plan, n = self.plan, len(self.ctx.script.keyframes)
        hi = plan.keyframe_start[i + 1] if i + 1 < n else len(plan.sequence)
        paths = [self.ctx.cache / f"{plan.jobs[j].key}.png" for j in plan.sequence[plan.keyframe_start[i]:hi]]
        return Segment(i, WALK.name, paths, self.ctx.script.hold_frames(i))

    def still(self, i: int) -> Source | None:
        if i not in self.ctx.segments or self.ctx.script.hold_frames(i) == 0:
            return None
        job = self.plan.jobs[self.plan.keyframe_jobs[i]]
        return Source(self.ctx.cache / f"{job.key}.png", job.key)

    def keep(self, shown: set[Path]) -> None:
        self.plan.sequence = [j for j in self.plan.sequence if self.ctx.cache / f"{self.plan.jobs[j].key}.png" in shown]

    def lanes(self) -> int:
        """Calls that may run side by side here (CPU lanes, at the plan's one intra-op thread)."""
        from zoetrope.film.walk import walk_params
        from zoetrope.stages.lanes import lanes_for

        painter = self.ctx.models.painter
        return lanes_for(painter, walk_params(self.ctx.script, self.plan.width, self.plan.height), self.plan.threads)

    def units(self, batch_size: int | None) -> list[WalkBatch]:
        from zoetrope.base.files import sweep_temps
        from zoetrope.film.walk import needed_jobs

        size = self.plan.rows if batch_size is None else batch_size
        if not 1 <= size <= self.plan.rows:
            raise ValueError(f"`batch_size` must be in 1..{self.plan.rows} but is {size}.")
        self.ctx.cache.mkdir(parents=True, exist_ok=True)
        sweep_temps(self.ctx.cache)  # what a killed render left half-written (a live render's temps are kept)
        starts = self.plan.keyframe_start
        segment_of = {}
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(self.plan.sequence)
            for j in self.plan.sequence[start:end]:
                segment_of.setdefault(j, i)
        index = {id(job): n for n, job in enumerate(self.plan.jobs)}
        jobs = needed_jobs(self.plan)
        cached = [j for j in jobs if (self.ctx.cache / f"{j.key}.png").is_file()]
        missing = [j for j in jobs if not (self.ctx.cache / f"{j.key}.png").is_file()]
        units = [WalkBatch(self, cached, ())] if cached else []
        for k in range(0, len(missing), size):
            batch = missing[k:k + size]
            units.append(WalkBatch(self, batch, tuple(sorted({segment_of[index[id(j)]] for j in batch}))))
        return units

    def calls(self) -> str | None:
        decode = self.plan.decode
        return f"{self.plan.rows} rows" + (f" decoded {decode} at a time" if decode else "")

    def record(self) -> dict:
        return {"walk_calls": {"rows": self.plan.rows, "threads": self.plan.threads, "decode": self.plan.decode}}


class Walk(Engine):
    spec = EngineSpec("walk", "latent walk of the painter between keyframes", frame_guidance=True, default=True)
    paints_with_painter = True

    def record(self, models, painter: dict | None) -> dict | None:
        return None  # the film's painter (FILM.json `models.painter`)

    def lay_out(self, ctx: SceneContext) -> WalkPart:
        """The walk's frames at the call shape the rule gives (walk.call_shape): pure, nothing measured or written."""
        from zoetrope.film.walk import call_shape, plan_scene

        script, models, request = ctx.script, ctx.models, ctx.request
        rows, threads, decode = call_shape(models.painter, ctx.width, ctx.height, request.rows or script.rows)
        if request.batch_size is not None and request.batch_size > rows:
            raise UserError(f"--batch-size: must be 1..{rows}, the painter call width here (got "
                            f"{request.batch_size}); see --rows")
        only = None if len(ctx.segments) == len(script.keyframes) else set(ctx.segments)
        plan = plan_scene(ctx.name, script, models.walk_identity, width=ctx.width, height=ctx.height, rows=rows,
                          only=only, threads=threads, decode=decode)
        return WalkPart(ctx, plan)


WALK = register(Walk())


def plan_units(plan, cache: Path, painter, batch_size: int | None = None, scene: str | None = None
               ) -> tuple[list[WalkBatch], int]:
    """A walk plan made outside a film's layout (walk.render_missing, benches) as units, and its CPU lanes."""
    from types import SimpleNamespace

    segments = [i for i in range(len(plan.script.keyframes))]
    ctx = SceneContext(scene or plan.name, plan.script, SimpleNamespace(painter=painter), None, plan.width,
                       plan.height, cache, segments)
    part = WalkPart(ctx, plan)
    return part.units(batch_size), part.lanes()


def render_missing(painter, plan, cache: Path, batch_size: int | None = None, progress=None,
                   feed=None):
    """Render the plan's frames that are not in `cache`, `batch_size` (1..plan.rows, default plan.rows) frames
    per painter call, through the film's one render path (engines/run.py) in this process: on CPU, with the
    plan's calls at one intra-op thread, calls run side by side on lanes (stages/lanes.py), one per core;
    elsewhere one at a time. A writer thread saves each batch's frames while the next are painted; `feed` hears
    of each saved batch. Temp files of killed renders are swept first; renders that share the cache skip each
    other's frames as they appear."""
    from types import SimpleNamespace

    from zoetrope.film.engines.run import RenderStats, render_units
    from zoetrope.stages.lanes import LocalPool

    units, lanes = plan_units(plan, cache, painter, batch_size)
    worker = SimpleNamespace(painter=painter, clips={}, state={})
    stats = render_units(LocalPool(worker, lanes), units, progress, feed)
    return stats.get((plan.name, WALK.name), RenderStats(lanes=lanes))
