"""What the clip engines (ltx, animatediff, drift) share: a Part that plans each segment into chunks
(engines/clips.py `plan_segment`) and renders them as ChunkUnits, and an Engine base that loads its own clip
model where it has one."""

from __future__ import annotations

from zoetrope.film.engines.base import Engine, Part, SceneContext, Segment
from zoetrope.film.engines.clips import Source, chunk_units, plan_segment


class ClipPart(Part):
    """An engine's segments of one scene as chunks, planned in film order."""

    def __init__(self, engine: ClipEngine, ctx: SceneContext):
        self.engine, self.ctx, self.chunks = engine, ctx, []

    def segment(self, i: int, previous: Source | None, next_still: Source | None, start_frame: int) -> Segment:
        ctx = self.ctx
        clips = self.engine.planner(ctx.models, ctx.script)
        chunks = plan_segment(ctx.script, i, self.engine.name, clips, clips.identity, ctx.width, ctx.height, ctx.cache,
                              previous, next_still, start_frame=start_frame, drifts=self.engine.drifts)
        self.chunks += chunks
        paths = [p for c in chunks for p in c.frame_paths(ctx.cache)]
        return Segment(i, self.engine.name, paths, ctx.script.hold_frames(i), chunks)

    def units(self, batch_size: int | None) -> list:
        return chunk_units(self.ctx.name, self.chunks, self.ctx.script, self.ctx.width, self.ctx.height,
                           self.ctx.cache, self.engine)


class ClipEngine(Engine):
    """An engine whose segments are clips painted in chunks by a ClipPainterLike."""

    drifts = False  # moves frame by frame from the frame before (engines/clips.py `plan_segment`)

    def lay_out(self, ctx: SceneContext) -> ClipPart:
        return ClipPart(self, ctx)

