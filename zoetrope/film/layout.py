"""A film laid out against its loaded models: per scene, which engine renders each segment, the frames of each
in film order, the units that paint them (engines/run.py), the shots the encoder takes, the subtitles.

Nothing is rendered here, nothing is measured, locked or written. Each engine plans its segments of a scene
(film/engines/, through the registry); keys are known before anything renders, so the encoder can wait for each
frame by path while the engines fill the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.film.engines import Part, SceneContext, Segment, engine
from zoetrope.film.engines.clips import Chunk, Source, image_source
from zoetrope.film.timeline import Shot, scene_cues, scene_shots
from zoetrope.settings.engines import spec_of
from zoetrope.settings.scene import Film, SceneScript

PREVIEW_STRIDE = 4  # a preview keeps every 4th frame (a quarter) and plays them at fps / 4: same duration
__all__ = ["PREVIEW_STRIDE", "FilmLayout", "FilmModels", "SceneLayout", "Segment", "film_size", "lay_out"]


@dataclass
class FilmModels:
    """What renders the film: the film's still painter (walk, drift, and what AnimateDiff animates) and the clip
    engines' painters, here or as stand-ins for the Ray workers' (`pool`: the units go there)."""

    painter: object | None = None  # a WalkPainterLike (or the workers' stand-in), when an engine paints with it
    walk_identity: dict | None = None
    clips: dict[str, object] = field(default_factory=dict)  # engine -> ClipPainterLike (or a stand-in)
    speed: dict = field(default_factory=dict)  # the painter's speed options (a drift's key names them)
    pool: object | None = None  # cluster.WorkerPool: every unit is painted on Ray workers (render --ray)
    upscaler: object | None = None  # stages.upscale.Upscaler, when the film has `upscale:`
    state: dict = field(default_factory=dict)  # what engines keep for planning (a drift's painter per scheduler)


@dataclass
class SceneLayout:
    name: str
    script: SceneScript
    cache: Path
    width: int
    height: int
    parts: dict[str, Part]  # engine -> its share of the scene
    segments: list[Segment]

    @property
    def chunks(self) -> list[Chunk]:
        return [c for s in self.segments for c in s.chunks]

    def units(self, batch_size: int | None) -> list:
        """Every model call of the scene in `Unit.order`: free-standing units (a walk's) first, then chunks in
        film order (each after the frames it starts from)."""
        return sorted((u for part in self.parts.values() for u in part.units(batch_size)), key=lambda u: u.order)


@dataclass
class FilmLayout:
    scenes: list[SceneLayout]
    shots: list[Shot]
    cues: list[tuple[float, float, str]]
    fps: float
    size: tuple[int, int]  # what the encoder takes: the painted size, or the upscaled one
    fps_out: int | None = None  # interpolated to this rate by the encoder (not in previews)
    upscale: dict = field(default_factory=dict)  # scene name -> its frames to upscale (film/upscaling.py)

    def call_shapes(self) -> str:
        """The painter calls' shapes in words, where an engine fixes them (the walk's: walk.call_shape)."""
        return ", ".join(dict.fromkeys(c for s in self.scenes for p in s.parts.values() if (c := p.calls())))


def film_size(film: Film, preview: bool) -> tuple[int, int]:
    """The film's size; a preview's is half, rounded down to what every engine of the film takes."""
    width, height = film.size
    if not preview:
        return width, height
    multiple = max(spec_of(e).size_multiple for _, s in film.scenes for e in s.engines())
    return max(multiple, width // 2 // multiple * multiple), max(multiple, height // 2 // multiple * multiple)


def _source(path: Path, cache: Path) -> Source:
    """A frame of this scene's cache as a conditioning source, named by its key (which determines its bytes)."""
    return Source(path, path.stem if path.parent == cache else f"{path.parent.name}/{path.name}")


def lay_out_scene(name: str, script: SceneScript, models: FilmModels, request, width: int, height: int) -> SceneLayout:
    """Each engine plans its segments; then the segments in film order (a clip may start from the frame before
    it, whatever engine made it, and end on the next keyframe's picture)."""
    cache = request.cache_root / name / "frames"
    n = len(script.keyframes)
    parts = {e: engine(e).lay_out(SceneContext(name, script, models, request, width, height, cache,
                                               [i for i in range(n) if script.engine_of(i) == e]))
             for e in script.engines()}
    segments: list[Segment] = []
    film: list[Path] = []  # this scene's frames so far
    for i in range(n):
        previous = _source(film[-1], cache) if film else None
        segments.append(parts[script.engine_of(i)].segment(i, previous, _next_still(script, i, parts), len(film)))
        film += segments[-1].paths
    return SceneLayout(name, script, cache, width, height, parts, segments)


def _next_still(script: SceneScript, i: int, parts: dict[str, Part]) -> Source | None:
    """The picture keyframe i + 1 is: its `image:`, or its painted still when its engine paints one."""
    if i + 1 >= len(script.keyframes):
        return None
    following = script.keyframes[i + 1]
    if following.image is not None:
        return image_source(following.image)
    return parts[script.engine_of(i + 1)].still(i + 1)


def lay_out(film: Film, models: FilmModels, request) -> FilmLayout:
    """Every scene at the film's (or the preview's) size; a preview keeps every 4th film frame, and the engines
    render only those where they can (a clip's chunk is one model call: it renders whole)."""
    width, height = film_size(film, request.preview)
    scenes, shots, cues, offset = [], [], [], 0.0
    for name, script in film.scenes:
        scene = lay_out_scene(name, script, models, request, width, height)
        scene_film = scene_shots(script, [(s.paths, s.hold) for s in scene.segments], script.burn_subtitles)
        if request.preview:
            scene_film = scene_film[::PREVIEW_STRIDE]
            kept = {shot.path for shot in scene_film}
            for part in scene.parts.values():
                part.keep(kept)
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
