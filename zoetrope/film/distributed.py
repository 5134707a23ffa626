"""A film on Ray workers (`render --ray`): the pool that holds the film's models, and the driver's stand-ins.

Every unit of the film (engines/run.py: a batch of walk frames, a video chunk, a drift's chunk) is painted on
the workers through the same function as locally; Ray only changes where (stages.cluster.WorkerPool is an
Executor, like stages.lanes.LocalPool). The workers hold the film's painter and its engines' clip models once
each (the engines' loaders, sent by reference); the driver keeps only what laying the film out needs: the
painter's `ref` and `plan` (the frame keys' identity) and a `PoolClip` per clip engine (identity and frame
counts, for the chunk keys). A plan travels once per scene (Ray's object store); conditioning files travel as
their bytes and frames come back as PNG bytes, written here as locally. A worker killed mid-unit costs that
unit, repainted after Ray restarts the worker or by another (cluster.WorkerPool.ordered).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from zoetrope.film.walk import FrameFeed, ScenePlan, WalkStats, painter_identity


def pool_painter(pool) -> SimpleNamespace:
    """What the driver knows of the workers' painter: its `ref` (for the sidecar), `plan` (device, dtype) and
    how it decodes (walk.call_shape); it paints nothing here, so no lanes (`concurrent` is False)."""
    return SimpleNamespace(ref=pool.painter_ref, plan=pool.plan, decodes_per_row=pool.decodes_per_row,
                           concurrent=lambda params: False)


def pool_identity(pool, speed=None) -> dict:
    """walk.painter_identity of the workers' painter (model, device, dtype, speed): the frame keys' identity."""
    return painter_identity(pool_painter(pool), speed)


def open_film_pool(address: str, painter, device: str | None, speed, clips: dict):
    """Workers holding the film's painter (`painter`: a film.choices.ModelChoice, or None) and its engines'
    clip models (`clips`: engine -> (loader, kwargs)); nothing is loaded on the driver."""
    from zoetrope.stages.cluster import ModelSpec, open_pool

    return open_pool(address, ModelSpec(painter=painter.spec if painter else None,
                                        painter_revision=painter.revision if painter else None, device=device,
                                        speed=speed, clips=clips))


class PoolClip:
    """The driver's stand-in for a clip painter the workers hold: what laying chunks out reads (plan_segment,
    the sidecar), from the first worker's answer; it paints nothing."""

    def __init__(self, info: dict):
        self._info = info

    identity = property(lambda self: self._info["identity"])
    max_frames = property(lambda self: self._info["max_frames"])
    takes_conditions = property(lambda self: self._info["takes_conditions"])
    ref = property(lambda self: self._info["ref"])

    def call_frames(self, wanted: int) -> int:
        if not isinstance(wanted, int) or not 1 <= wanted <= self.max_frames:
            raise ValueError(f"`wanted` has to be an int from 1 to {self.max_frames} (max_frames) but is {wanted!r}.")
        return self._info["calls"][wanted - 1]


def pool_clips(pool) -> dict[str, PoolClip]:
    return {engine: PoolClip(info) for engine, info in pool.clips.items()}


def render_scenes_ray(pool, plans: list[tuple[ScenePlan, Path]], batch_size: int | None = None, progress=None,
                      feed: FrameFeed | None = None) -> list[WalkStats]:
    """The walk plans' missing frames painted on the pool's workers, batches of all scenes in flight together;
    one stats per scene (engines.walk.render_missing's contract, on Ray)."""
    from zoetrope.film.engines.run import RenderStats, render_units
    from zoetrope.film.engines.walk import WALK, plan_units

    units = [u for n, (plan, cache) in enumerate(plans)
             for u in plan_units(plan, cache, pool_painter(pool), batch_size, scene=str(n))[0]]
    stats = render_units(pool, units, progress, feed)
    return [stats.get((str(n), WALK.name), RenderStats()) for n in range(len(plans))]


def render_missing_ray(pool, plan: ScenePlan, cache: Path, batch_size: int | None = None, progress=None,
                       feed: FrameFeed | None = None) -> WalkStats:
    """engines.walk.render_missing's contract on Ray workers: one scene's missing frames, byte-identical to a local
    render's."""
    return render_scenes_ray(pool, [(plan, cache)], batch_size, progress, feed)[0]
