"""A film laid out against its loaded models: per scene, which engine renders each segment, the frames of each
in film order (walk frames and video chunks), the shots the encoder takes, the subtitles.

Nothing is rendered here. Keys are known before anything renders (see film/engines.py), so the encoder can wait
for each frame by path while the walk and the video engines fill the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.film.engines import Chunk, Source, image_source, plan_segment, segment_frames
from zoetrope.film.timeline import Shot, scene_cues, scene_shots
from zoetrope.settings.scene import Film, SceneScript

PREVIEW_STRIDE = 4  # a preview keeps every 4th frame (a quarter) and plays them at fps / 4: same duration


@dataclass
class FilmModels:
    """What renders the film: the walk's painter (also under animatediff) and the video engines' clip painters."""

    painter: object | None = None  # a WalkPainterLike, when a scene has walk segments
    walk_identity: dict | None = None
    clips: dict[str, object] = field(default_factory=dict)  # engine -> ClipPainterLike
    speed: dict = field(default_factory=dict)  # the painter's speed options (a drift's key names them)
    pool: object | None = None  # cluster.WorkerPool: the walk's frames go to Ray workers (render --ray)
    upscaler: object | None = None  # stages.upscale.Upscaler, when the film has `upscale:`
    local_painter: object | None = None  # with a pool, the driver's own painter for drift segments
    _drifts: dict[str, object] = field(default_factory=dict)

    def clip_for(self, engine: str, script: SceneScript):
        """The clip painter of a video engine; a drift's is the walk's painter behind DriftClipPainter, one per
        scheduler (the scene's, as a walk uses it)."""
        if engine != "drift":
            return self.clips[engine]
        if script.scheduler not in self._drifts:
            from zoetrope.stages.drift import DriftClipPainter

            painter = self.local_painter or self.painter
            self._drifts[script.scheduler] = DriftClipPainter(painter, scheduler=script.scheduler, speed=self.speed)
        return self._drifts[script.scheduler]


@dataclass
class Segment:
    """Segment i of a scene: its engine, its frames in film order, its hold's frame count and its chunks."""

    index: int
    engine: str
    paths: list[Path]
    hold: int
    chunks: list[Chunk] = field(default_factory=list)


@dataclass
class SceneLayout:
    name: str
    script: SceneScript
    cache: Path
    width: int
    height: int
    walk: object | None  # walk.ScenePlan of the walk segments, or None when the scene has none
    segments: list[Segment]

    @property
    def chunks(self) -> list[Chunk]:
        return [c for s in self.segments for c in s.chunks]


@dataclass
class FilmLayout:
    scenes: list[SceneLayout]
    shots: list[Shot]
    cues: list[tuple[float, float, str]]
    fps: float
    size: tuple[int, int]  # what the encoder takes: the painted size, or the upscaled one
    fps_out: int | None = None  # interpolated to this rate by the encoder (not in previews)
    upscale: dict = field(default_factory=dict)  # scene name -> its frames to upscale (film/upscaling.py)

    @property
    def rows(self) -> list[int]:
        return sorted({s.walk.rows for s in self.scenes if s.walk is not None})

    def call_shapes(self) -> str:
        """The walks' painter calls in words: `8 rows`, `8 rows decoded 1 at a time` (walk.call_shape), ..."""
        shapes = sorted({(s.walk.rows, s.walk.decode or 0) for s in self.scenes if s.walk is not None})
        return ", ".join(f"{rows} rows" + (f" decoded {decode} at a time" if decode else "") for rows, decode in shapes)


def film_size(film: Film, preview: bool) -> tuple[int, int]:
    """The film's size; a preview's is half, rounded down to what every engine of the film takes."""
    from zoetrope.settings.scene_rules import ENGINE_SIZE_MULTIPLE

    width, height = film.size
    if not preview:
        return width, height
    multiple = max(ENGINE_SIZE_MULTIPLE[e] for _, s in film.scenes for e in s.engines())
    return max(multiple, width // 2 // multiple * multiple), max(multiple, height // 2 // multiple * multiple)


def _source(path: Path, cache: Path) -> Source:
    """A frame of this scene's cache as a conditioning source, named by its key (which determines its bytes)."""
    return Source(path, path.stem if path.parent == cache else f"{path.parent.name}/{path.name}")


def _walk_plan(name: str, script: SceneScript, models: FilmModels, request, width: int, height: int):
    """The walk's frames at the call shape the rule gives (walk.call_shape): pure, nothing measured or written."""
    from zoetrope.film.walk import call_shape, plan_scene

    walk_segments = {i for i in range(len(script.keyframes)) if script.engine_of(i) == "walk"}
    if not walk_segments:
        return None
    rows, threads, decode = call_shape(models.painter, width, height, request.rows or script.rows)
    if request.batch_size is not None and request.batch_size > rows:
        raise UserError(f"--batch-size: must be 1..{rows}, the painter call width here (got {request.batch_size}); "
                        "see --rows")
    only = None if len(walk_segments) == len(script.keyframes) else walk_segments
    return plan_scene(name, script, models.walk_identity, width=width, height=height, rows=rows, only=only,
                      threads=threads, decode=decode)


def lay_out_scene(name: str, script: SceneScript, models: FilmModels, request, width: int, height: int) -> SceneLayout:
    """Plan the walk's segments, then each video segment's chunks in film order (a chunk may start from the
    frame before it and end on the next keyframe's picture)."""
    cache = request.cache_root / name / "frames"
    walk = _walk_plan(name, script, models, request, width, height)
    n = len(script.keyframes)
    segments: list[Segment] = []
    film: list[Path] = []  # this scene's frames so far
    for i in range(n):
        engine, hold = script.engine_of(i), segment_frames(script, i)[0]
        if engine == "walk":
            hi = walk.keyframe_start[i + 1] if i + 1 < n else len(walk.sequence)
            paths = [cache / f"{walk.jobs[j].key}.png" for j in walk.sequence[walk.keyframe_start[i]:hi]]
            segments.append(Segment(i, engine, paths, hold))
        else:
            previous = _source(film[-1], cache) if film else None
            clips = models.clip_for(engine, script)
            chunks = plan_segment(script, i, engine, clips, clips.identity, width, height, cache, previous,
                                  _next_still(script, i, walk, cache), start_frame=len(film))
            segments.append(Segment(i, engine, [p for c in chunks for p in c.frame_paths(cache)], hold, chunks))
        film += segments[-1].paths
    return SceneLayout(name, script, cache, width, height, walk, segments)


def _next_still(script: SceneScript, i: int, walk, cache: Path) -> Source | None:
    """The picture keyframe i + 1 is: its `image:`, or its painted still when a walk segment shows it."""
    if i + 1 >= len(script.keyframes):
        return None
    following = script.keyframes[i + 1]
    if following.image is not None:
        return image_source(following.image)
    if script.engine_of(i + 1) == "walk" and segment_frames(script, i + 1)[0] > 0:
        job = walk.jobs[walk.keyframe_jobs[i + 1]]
        return Source(cache / f"{job.key}.png", job.key)
    return None


def lay_out(film: Film, models: FilmModels, request) -> FilmLayout:
    """Every scene at the film's (or the preview's) size; a preview keeps every 4th film frame, and the walk
    renders only those (a video chunk is one model call: it renders whole)."""
    width, height = film_size(film, request.preview)
    scenes, shots, cues, offset = [], [], [], 0.0
    for name, script in film.scenes:
        scene = lay_out_scene(name, script, models, request, width, height)
        scene_film = scene_shots(script, [(s.paths, s.hold) for s in scene.segments], script.burn_subtitles)
        if request.preview:
            scene_film = scene_film[::PREVIEW_STRIDE]
            if scene.walk is not None:
                kept = {shot.path for shot in scene_film}
                scene.walk.sequence = [j for j in scene.walk.sequence
                                       if scene.cache / f"{scene.walk.jobs[j].key}.png" in kept]
        scenes.append(scene)
        shots += scene_film
        cues += scene_cues(script, offset)
        offset += script.frame_count() / script.fps
    fps = film.fps / PREVIEW_STRIDE if request.preview else film.fps
    layout = FilmLayout(scenes, shots, cues, fps, (width, height), None if request.preview else film.fps_out)
    if models.upscaler is not None:
        from zoetrope.film.upscaling import plan_upscale

        layout.upscale = plan_upscale(layout, models.upscaler)
    return layout
