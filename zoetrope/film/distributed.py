"""The walk on Ray workers (`render --ray`): the same frames as walk.render_missing, painted elsewhere.

Each batch is one painter call of exactly `plan.rows` rows, padded with its last job by walk.Walker itself on
the worker, so a frame's bytes depend only on its own inputs and not on which worker painted it or with what.
The plan travels once per scene (an object in Ray's store; the worker keeps a Walker per scene, with each
keyframe's embeddings and noise), each task carries only its jobs, and a worker answers with PNG bytes that
the driver writes into the frame cache: nothing but the driver's cache folder is shared. Batches of every
scene of a film go to the workers together (a scene's tail does not leave workers idle) and come back in
submission order, so the encoder still takes frames as they appear, in film order. A worker killed mid-batch
costs that batch, repainted after Ray restarts the worker or by another (cluster.WorkerPool.ordered).

Video engines go through the same pool (`render_chunks_ray`): the workers hold the film's clip painters (ltx,
animatediff) and the driver only a `PoolClip` per engine (identity and frame counts, for the chunk keys). A chunk
whose conditioning frames are all on disk (none, a user's image, a walk frame) is a task at once, so chunks of
every scene and independent chunks run side by side; a chunk conditioned on an earlier chunk's frames is
submitted once that chunk is written (cluster.WAIT until then), so conditioned chunks go in order. Conditioning
files travel as their bytes and frames come back as PNG bytes, written by engines.write_chunk as locally.
Drift scenes stay on the driver (they need the painter there: load_models).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

from zoetrope.base.errors import UserError
from zoetrope.base.files import sweep_temps, write_durable
from zoetrope.film.engines import Chunk, ChunkStats, write_chunk
from zoetrope.film.walk import (
    FrameFeed,
    Job,
    ScenePlan,
    WalkStats,
    needed_jobs,
    painter_identity,
    take_missing,
)

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


def pool_painter(pool) -> SimpleNamespace:
    """What the driver knows of the workers' painter: its `ref` (for the sidecar), `plan` (device, dtype) and
    how it decodes (walk.call_shape)."""
    return SimpleNamespace(ref=pool.painter_ref, plan=pool.plan, decodes_per_row=pool.decodes_per_row)


def pool_identity(pool, speed=None) -> dict:
    """walk.painter_identity of the workers' painter (model, device, dtype, speed): the frame keys' identity."""
    return painter_identity(pool_painter(pool), speed)


def open_walk_pool(address: str, painter: str | None, revision: str | None = None, device: str | None = None,
                   speed=None, **clips):
    """Workers holding the film's painter once each (`--ray ADDRESS`) and the clip painters `clips` names
    (cluster.ModelSpec's ltx, motion, motion_base, memory...); nothing is loaded on the driver."""
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.cluster import ModelSpec, open_pool

    return open_pool(address, ModelSpec(painter=painter, painter_revision=revision, device=device,
                                        speed=speed or SpeedOptions(), **clips))


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


def _paint_chunk(worker, chunk: Chunk, script, width: int, height: int, files: dict[str, bytes], _tag: int = 0
                 ) -> list[bytes]:
    """On a worker: engines.render_chunk's model call, its conditioning pictures read from the bytes sent."""
    import io

    from PIL import Image

    from zoetrope.film.engines import clip_request, paint_chunk

    def load(path):
        with Image.open(io.BytesIO(files[str(path)])) as im:
            return im.convert("RGB")

    return paint_chunk(worker.clips[chunk.engine], chunk, clip_request(chunk, script, width, height, load))


def _sources(chunk: Chunk) -> list[Path]:
    return [s.path for c in chunk.conditions for s in c.sources] + ([chunk.reference.path] if chunk.reference else [])


def render_chunks_ray(pool, scenes: list, progress=None, feed: FrameFeed | None = None) -> dict[str, dict[str, ChunkStats]]:
    """Render the video chunks (layout.SceneLayout.chunks) that the scenes' caches lack on the pool's workers
    (see the top); {scene name: {engine: ChunkStats}}. Run after the walk's frames are in the caches."""
    from zoetrope.stages.cluster import WAIT

    start = time.perf_counter()
    results: dict[str, dict[str, ChunkStats]] = {}
    pending: list[tuple] = []  # (scene, chunk, stats) in film order

    def count(chunk: Chunk, stats: ChunkStats | None = None) -> None:
        if stats is not None:
            stats.cached += 1
        if progress is not None:
            progress.update(chunk.frames)
        if feed is not None:
            feed.saved()

    for scene in scenes:
        scene.cache.mkdir(parents=True, exist_ok=True)
        sweep_temps(scene.cache)
        stats = results[scene.name] = {e: ChunkStats() for e in dict.fromkeys(c.engine for c in scene.chunks)}
        for chunk in scene.chunks:
            if chunk.folder(scene.cache).is_dir():
                count(chunk, stats[chunk.engine])
            else:
                pending.append((scene, chunk, stats[chunk.engine]))

    def next_task() -> tuple | None:
        """The first pending chunk whose conditioning frames are all on disk (WAIT: those are in flight)."""
        if feed is not None and feed.consumer_error is not None:
            raise feed.consumer_error
        for n, (scene, chunk, stats) in enumerate(pending):
            if chunk.folder(scene.cache).is_dir():  # another render sharing the cache wrote it meanwhile
                del pending[n]
                count(chunk, stats)
                return next_task()
            if all(path.is_file() for path in _sources(chunk)):
                del pending[n]
                files = {str(path): path.read_bytes() for path in _sources(chunk)}
                tags.append((scene, stats))  # the driver's side of the task; the worker gets its index
                return chunk, scene.script, scene.width, scene.height, files, len(tags) - 1
        return WAIT if pending else None

    tags: list[tuple] = []
    for (chunk, *_, tag), frames in pool.ordered(next_task, _paint_chunk):
        scene, stats = tags[tag]
        write_chunk(chunk, scene.cache, frames)
        stats.rendered += 1
        stats.frames += chunk.frames
        stats.rendered_segments.add(chunk.segment)
        stats.seconds = time.perf_counter() - start
        if progress is not None:
            progress.update(chunk.frames)
        if feed is not None:
            feed.saved()
    if pending:
        scene, chunk, _ = pending[0]
        missing = [str(p) for p in _sources(chunk) if not p.is_file()]
        raise RuntimeError(f"chunk {chunk.key} of scene {scene.name} waits on frames nothing renders: {missing}")
    return results


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
        while order:
            scene = order[0]
            if batch := take_missing(scene.queue, scene.size, scene.cache, scene.stats, progress, feed):
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
