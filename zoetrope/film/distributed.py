"""The walk on Ray workers (`render --ray`): the same frames as walk.render_missing, painted elsewhere.

Each batch is one painter call of exactly `plan.rows` rows, padded with its last job by walk.Walker itself on
the worker, so a frame's bytes depend only on its own inputs and not on which worker painted it or with what.
The plan travels once per scene (an object in Ray's store; the worker keeps a Walker per scene, with each
keyframe's embeddings and noise), each task carries only its jobs, and a worker answers with PNG bytes that
the driver writes into the frame cache: nothing but the driver's cache folder is shared. Batches of every
scene of a film go to the workers together (a scene's tail does not leave workers idle) and come back in
submission order, so the encoder still takes frames as they appear, in film order. A worker killed mid-batch
costs that batch, repainted after Ray restarts the worker or by another (cluster.WorkerPool.ordered).

Video engines go through the same pool: a chunk that depends on nothing before it is one task (`run(fn,
chunk)` on the held model, as `_paint_batch` here); a chunk conditioned on the previous one's tail is
submitted only when that tail is back, so conditioned chunks are scheduled in order.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

from zoetrope.base.errors import UserError
from zoetrope.base.files import sweep_temps, write_durable
from zoetrope.film.walk import FrameFeed, Job, ScenePlan, WalkStats, needed_jobs, painter_identity

WALKERS_KEPT = 4  # scenes whose keyframe latents a worker keeps at once (scenes render side by side)


def plan_token(plan: ScenePlan) -> str:
    """Names a plan on the workers: its frame keys (which hash everything that determines them) and width."""
    digest = hashlib.sha256(f"{plan.rows}:{plan.width}x{plan.height}".encode())
    for job in plan.jobs:
        digest.update(job.key.encode())
    return digest.hexdigest()[:24]


def _paint_batch(worker, token: str, plan_box: list, jobs: list[Job]) -> list[bytes]:
    """On a worker: one padded painter call (walk.Walker.paint), each frame as PNG bytes."""
    from zoetrope.base import png
    from zoetrope.film.walk import Walker

    walkers = worker.state.setdefault("walkers", {})
    walker = walkers.get(token)
    if walker is None:
        import ray

        while len(walkers) >= WALKERS_KEPT:
            walkers.pop(next(iter(walkers)))
        walker = walkers[token] = Walker(worker.painter, ray.get(plan_box[0]))
    return [png.encode(image) for image in walker.paint(jobs)]


def _measure(worker, params, fallback: int) -> int:
    from zoetrope.film.rows import measure_rows

    return measure_rows(worker.painter, params, fallback)


def measure_rows_ray(pool, params, fallback: int) -> int:
    """rows.measure_rows on a worker: the call width is the workers' memory, not the driver's."""
    return pool.call(0, "run", _measure, params, fallback)


def pool_painter(pool) -> SimpleNamespace:
    """What the driver knows of the workers' painter: its `ref` (for the sidecar) and `plan` (device, dtype)."""
    return SimpleNamespace(ref=pool.painter_ref, plan=pool.plan)


def pool_identity(pool, speed=None) -> dict:
    """walk.painter_identity of the workers' painter (model, device, dtype, speed): the frame keys' identity."""
    return painter_identity(pool_painter(pool), speed)


def open_walk_pool(address: str, painter: str, revision: str | None = None, device: str | None = None,
                   speed=None):
    """Workers holding the film's painter once each (`--ray ADDRESS`); nothing is loaded on the driver."""
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.cluster import ModelSpec, open_pool

    return open_pool(address, ModelSpec(painter=painter, painter_revision=revision, device=device,
                                        speed=speed or SpeedOptions()))


def _write(path: Path, data: bytes) -> None:
    """As walk.write_frame, for bytes a worker encoded: atomic, no fsync; a failing write names the frame."""
    try:
        write_durable(path, data, sync=False)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the frame ({exc.strerror or exc})") from None


def render_scenes_ray(pool, plans: list[tuple[ScenePlan, Path]], batch_size: int | None = None, progress=None,
                      feed: FrameFeed | None = None) -> list[WalkStats]:
    """Render every scene's frames that its cache lacks on the pool's workers, batches of all scenes in flight
    together; one WalkStats per scene (its `seconds` run until its last frame is written)."""
    start = time.perf_counter()
    scenes = []
    for plan, cache in plans:
        size = plan.rows if batch_size is None else batch_size
        if not 1 <= size <= plan.rows:
            raise ValueError(f"`batch_size` must be in 1..{plan.rows} but is {size}.")
        cache.mkdir(parents=True, exist_ok=True)
        sweep_temps(cache)  # what a killed render left half-written
        jobs = needed_jobs(plan)
        missing = deque(j for j in jobs if not (cache / f"{j.key}.png").is_file())
        stats = WalkStats(cached=len(jobs) - len(missing))
        if progress is not None:
            progress.update(stats.cached)
        scenes.append(SimpleNamespace(plan=plan, cache=cache, size=size, queue=missing, stats=stats,
                                      token=plan_token(plan), box=None))
    by_token = {s.token: s for s in scenes}
    order = deque(scenes)

    def next_task() -> tuple | None:
        """The next batch of missing frames (one scene's); those another render saved meanwhile count as cached."""
        if feed is not None and feed.consumer_error is not None:  # the film cannot be made: stop painting it
            raise feed.consumer_error
        while order:
            scene, batch = order[0], []
            while scene.queue and len(batch) < scene.size:
                job = scene.queue.popleft()
                if (scene.cache / f"{job.key}.png").is_file():
                    scene.stats.cached += 1
                    if progress is not None:
                        progress.update(1)
                    if feed is not None:
                        feed.saved()
                else:
                    batch.append(job)
            if batch:
                if scene.box is None:  # the plan goes to the object store once; boxed, so Ray does not unpack it
                    scene.box = [pool.put(scene.plan)]
                return scene.token, scene.box, batch
            order.popleft()
        return None

    for (token, _, batch), frames in pool.ordered(next_task, _paint_batch):
        scene = by_token[token]
        for job, data in zip(batch, frames, strict=True):
            _write(scene.cache / f"{job.key}.png", data)
        scene.stats.rendered += len(batch)
        scene.stats.calls += 1
        scene.stats.seconds = time.perf_counter() - start
        if progress is not None:
            progress.update(len(batch))
        if feed is not None:
            feed.saved()
    return [s.stats for s in scenes]


def render_missing_ray(pool, plan: ScenePlan, cache: Path, batch_size: int | None = None, progress=None,
                       feed: FrameFeed | None = None) -> WalkStats:
    """walk.render_missing's contract on Ray workers: one scene's missing frames, byte-identical to a local
    render's (see the top)."""
    return render_scenes_ray(pool, [(plan, cache)], batch_size, progress, feed)[0]
