"""Clip engines' shared planning: a scene's segments rendered by a clip model in chunks, cached per chunk.

Used by the engines that paint clips (engines/ltx.py, engines/animatediff.py, engines/drift.py); below, each
behaviour is said of the kind of clip painter that has it (takes conditions; drifts frame by frame; travels).

A segment is keyframe i's hold and its transition to keyframe i + 1: round(hold x fps) + round(transition x fps)
film frames, exactly as the walk counts them (docs/films.md). A video engine renders a segment as one clip from
keyframe i's prompt, in chunks of at most `painter.max_frames` frames per model call:

- **Call lengths.** A chunk that contributes w film frames after s conditioning frames (the overlap, dropped)
  is one call of `painter.call_frames(s + w + e)` frames (LTX: the smallest 8k+1), where e = 1 when the clip
  ends on the next keyframe's picture (placed just after the chunk's last frame). Surplus frames at the end are
  dropped, so the film has exactly the planned frames.
- **Continuity (clip painters that take conditions: LTX, the drift).** A segment's first chunk starts from keyframe i's
  `image:` when it has one (kept: it is the segment's first frame); else from the film's previous frame in this
  scene, whatever engine made it (an overlap of 1, dropped). A chunk that continues a segment starts from the
  previous chunk's last TAIL_FRAMES frames (1 for models with short calls; dropped). An ltx segment's last chunk
  heads for the next keyframe's picture when there is one (its `image:`, or its painted still when the next
  segment is a walk that shows it), placed just after the segment's last frame: LTX holds frame-0 conditions
  exactly and guides later ones, so the clip travels toward that picture rather than landing on its pixels.
- **Drifting engines** (`drifts`). Each frame is the previous one warped by the segment's motion values and repainted image-to-image
  (stages/drift.py); seeds advance per frame (seed + frame), the motion schedules are evaluated per frame and
  are part of the key, and with `color_coherence: match_first` every frame keeps the palette of the segment's
  first picture (its `image:`, the film's frame before it, or its own first frame). Chunks of 9 frames resume
  a killed render from at most 8 frames back.
- **Travel (clip painters without conditions: AnimateDiff).** The prompt holds through the hold and travels to the next keyframe's prompt over
  the transition (FreeNoise prompt interpolation); chunks of a long segment are independent clips.

Each chunk's key hashes everything that determines its frames: the engine and its model identity (ids,
revisions, device, dtype, memory options), prompts, seed, size, steps, guidance, fps, the call's frame counts
and the conditioning frames' hashes. A given image's hash is its file's sha256; a frame of this film's cache is
named by its own key (which determines it), so keys are known before anything renders, the encoder can stream,
and editing one keyframe changes exactly the chunks that depend on it (for conditioned clips, the later ones
too). A chunk is written as one folder `<cache>/<key>/NNNN.png`, under a temp name renamed whole: a killed
render leaves whole chunks or none, and resumes from the last complete one. On CPU a chunk's call runs at one
intra-op thread (CPU kernels sum in an order that depends on the thread count; the key says so), as the walk's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.base.files import sha256_file_remembered, sweep_temps, temp_name
from zoetrope.film.engines.run import RenderStats, Unit
from zoetrope.settings.scene import SceneScript

CHUNK_VERSION = 1  # bump when the rendering of a chunk changes: it is part of every chunk key
TAIL_FRAMES = 9  # a continuing LTX chunk starts from the previous chunk's last 9 frames (8k+1: one latent frame+1)


@dataclass(frozen=True)
class Source:
    """A conditioning frame: a user's image file, or a frame of this film's cache (its path and its key)."""

    path: Path
    digest: str  # sha256 of an image file, or the cache frame's key (which determines its bytes)


@dataclass(frozen=True)
class Condition:
    frame: int
    sources: tuple[Source, ...]
    strength: float = 1.0


@dataclass
class Chunk:
    """One model call: `frames` film frames taken after `skip` frames of the call's output."""

    segment: int
    index: int
    engine: str
    seed: int
    prompts: dict[int, str]
    negative: str
    call_frames: int
    skip: int
    frames: int
    conditions: tuple[Condition, ...]
    motion: dict[str, tuple[float, ...]] | None = None  # a drift's per call frame values
    reference: Source | None = None  # a drift with color_coherence match_first: the palette to keep
    threads: int | None = None  # intra-op threads of the call (1 on CPU: see the top); None: the process's
    key: str = ""

    def folder(self, cache: Path) -> Path:
        return cache / self.key

    def frame_paths(self, cache: Path) -> list[Path]:
        return [self.folder(cache) / f"{n:04d}.png" for n in range(self.frames)]

    def record(self) -> dict:
        """What the film's sidecar says of this chunk (provenance)."""
        record = {"chunk": self.index, "key": self.key, "seed": self.seed, "frames": self.frames,
                  "call_frames": self.call_frames, "skip": self.skip,
                  "prompts": {str(k): v for k, v in self.prompts.items()},
                  "conditioning": [{"frame": c.frame, "strength": c.strength, "sources": [s.digest for s in c.sources]}
                                   for c in self.conditions]}
        if self.motion is not None:
            record["motion"] = {k: list(v) for k, v in self.motion.items()}
        if self.reference is not None:
            record["color_reference"] = self.reference.digest
        return record


def segment_frames(script: SceneScript, i: int) -> tuple[int, int]:
    """(hold frames, transition frames) of segment i, by the frame-count rule (or an audio-synced render's)."""
    return script.hold_frames(i), script.transition_frames(i)


def image_source(path: str) -> Source:
    from zoetrope.stages.presets import cache_dir

    return Source(Path(path), "sha256:" + sha256_file_remembered(Path(path), cache_dir() / "sha256.json"))


def chunk_key(chunk: Chunk, identity: dict, script: SceneScript, width: int, height: int) -> str:
    record = {
        "chunk": CHUNK_VERSION, "engine": chunk.engine, "identity": identity, "width": width, "height": height,
        "steps": script.steps, "guidance": script.guidance_peak(), "fps": script.fps, "seed": chunk.seed,
        "prompts": sorted(chunk.prompts.items()), "negative": chunk.negative, "call_frames": chunk.call_frames,
        "skip": chunk.skip, "frames": chunk.frames,
        "conditions": [[c.frame, c.strength, [s.digest for s in c.sources]] for c in chunk.conditions],
    }
    if chunk.motion is not None:  # bit-exact values: a schedule's eased curve is part of the key
        record["motion"] = {name: [float(v).hex() for v in values] for name, values in sorted(chunk.motion.items())}
    if chunk.reference is not None:
        record["reference"] = chunk.reference.digest
    if chunk.threads is not None:  # CPU calls at a fixed thread count (0.8 on); None keys as before
        record["threads"] = chunk.threads
    return "c" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:31]


def travel_prompts(script: SceneScript, i: int, hold: int, length: int, start: int) -> dict[int, str]:
    """The prompts of a chunk covering segment frames [start, start + length): keyframe i's through the hold,
    travelling to keyframe i + 1's over the transition (its last frame on the next prompt)."""
    here = script.prompt_of(i)
    total = hold + segment_frames(script, i)[1]
    if i + 1 == len(script.keyframes) or total == hold:
        return {0: here}
    there = script.prompt_of(i + 1)
    prompts = {0: here}
    if start + length - 1 >= total - 1:  # this chunk reaches the segment's end: travel to the next prompt
        if hold > start:
            prompts[hold - start] = here
        prompts[total - 1 - start] = there
    return dict(sorted(prompts.items()))


def plan_segment(script: SceneScript, i: int, engine: str, painter, identity: dict, width: int, height: int,
                 cache: Path, previous: Source | None, next_still: Source | None, start_frame: int = 0,
                 drifts: bool = False) -> list[Chunk]:
    """The chunks of segment i (rendered by `engine` with `painter`, a ClipPainterLike), keyed. `previous`: the
    scene's frame before this segment; `next_still`: the next keyframe's picture, when it has one;
    `start_frame`: where the segment starts in the scene (a scene's motion schedules count from there);
    `drifts`: the engine moves frame by frame (see the top: motion values, per-frame seeds, no ending)."""
    hold, transition = segment_frames(script, i)
    remaining = hold + transition
    conditioned = painter.takes_conditions
    tail = TAIL_FRAMES if painter.max_frames >= 2 * TAIL_FRAMES + 2 else 1
    drift = drifts
    threads = 1 if identity.get("device") == "cpu" else None
    ending = next_still if conditioned and not drift else None  # a drift moves on; it cannot end on a picture
    motion = _motion_values(script, i, start_frame, remaining) if drift else None
    first = script.keyframes[i].image
    chunks: list[Chunk] = []
    done = 0
    while remaining > 0:
        k = len(chunks)
        start: tuple[Condition, ...] = ()
        skip = 0
        if conditioned and k == 0 and first is not None:
            start = (Condition(0, (image_source(first),)),)
        elif conditioned and k == 0 and previous is not None:
            start, skip = (Condition(0, (previous,)),), 1
        elif conditioned and k > 0:
            before = chunks[-1]
            tail_paths = before.frame_paths(cache)[-tail:]
            start, skip = (Condition(0, tuple(Source(p, f"{before.key}/{p.name}") for p in tail_paths)),), tail
        room = painter.max_frames - skip
        end: tuple[Condition, ...] = ()
        if ending is not None and remaining + 1 <= room:  # the last chunk, ending on the next keyframe's picture
            take, end = remaining, (Condition(skip + remaining, (ending,)),)
        elif ending is not None:  # leave the last chunk room for that picture
            take = min(room, remaining - 1)
        else:
            take = min(room, remaining)
        if drift and not start:  # nothing to start from: a first chunk of one text-to-image frame
            take = 1
        if take <= 0 or (conditioned and take < remaining and take < tail):
            raise UserError(f"the {engine} model's {painter.max_frames}-frame calls are too short to continue "
                            f"a clip (segment {i})")
        call = painter.call_frames(skip + take + len(end))
        prompts = {0: script.prompt_of(i)} if conditioned else travel_prompts(script, i, hold, take, done)
        seed = (script.seed_of(i) + (done - skip if drift else k)) % 2**31  # a drift's seeds advance per frame
        chunk = Chunk(i, k, engine, seed, prompts, script.negative_of(i), call, skip, take, start + end,
                      threads=threads)
        if drift:
            chunk.motion = {name: tuple(values[min(max(0, done - skip + c), len(values) - 1)] for c in range(call))
                            for name, values in motion.items()}
            if script.color_coherence_of(i) == "match_first":
                chunk.reference = _palette(script, i, previous, chunks, cache)
        chunk.key = chunk_key(chunk, identity, script, width, height)
        chunks.append(chunk)
        remaining -= take
        done += take
    return chunks


def _motion_values(script: SceneScript, i: int, start_frame: int, frames: int) -> dict[str, tuple[float, ...]]:
    """A drift segment's per-frame motion values; its guidance from the motion's schedule, else from the scene's
    guidance schedule (a constant guidance is the request's own)."""
    from zoetrope.settings.schedules import motion_values

    values = motion_values(script.motion, script.keyframes[i].motion, start=start_frame, frames=frames,
                           fps=script.fps, easing=script.easing_of(i))
    scheduled = script.guidance_frames()
    if "guidance" not in values and scheduled is not None:
        values["guidance"] = tuple(scheduled[min(start_frame + n, len(scheduled) - 1)] for n in range(frames))
    return values


def _palette(script: SceneScript, i: int, previous: Source | None, chunks: list[Chunk], cache: Path) -> Source | None:
    """A drift segment's colour reference: its keyframe's `image:`, else the film's frame before it, else the
    segment's own first frame (painted text-to-image by its first chunk)."""
    if script.keyframes[i].image is not None:
        return image_source(script.keyframes[i].image)
    if previous is not None:
        return previous
    first = chunks[0] if chunks else None
    if first is None:  # the first chunk itself paints the reference
        return None
    return Source(first.frame_paths(cache)[0], f"{first.key}/0000.png")


def _load(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def clip_request(chunk: Chunk, script: SceneScript, width: int, height: int, load=None):
    """The chunk's model call; `load(path)` gives a conditioning picture (a Ray worker reads bytes it was sent)."""
    from zoetrope.stages.protocols import ClipCondition, ClipRequest

    load = load or _load
    conditions = tuple(
        ClipCondition(c.frame, tuple(_fit(load(s.path), width, height) for s in c.sources), c.strength)
        for c in chunk.conditions
    )
    reference = _fit(load(chunk.reference.path), width, height) if chunk.reference is not None else None
    return ClipRequest(prompts=chunk.prompts, negative_prompt=chunk.negative, seed=chunk.seed,
                       frames=chunk.call_frames, width=width, height=height, steps=script.steps,
                       guidance=script.guidance_peak(), fps=script.fps, conditions=conditions, motion=chunk.motion,
                       color_reference=reference)


def paint_chunk(painter, chunk: Chunk, request) -> list:
    """The model call at the chunk's intra-op threads; the chunk's used frames (images)."""
    from zoetrope.stages.lanes import intra_op_threads

    with intra_op_threads(chunk.threads):
        frames = painter.paint_clip(request)[chunk.skip:chunk.skip + chunk.frames]
    if len(frames) != chunk.frames:
        raise RuntimeError(f"the {chunk.engine} model returned {len(frames) + chunk.skip} frames, not {chunk.call_frames}")
    return frames


def write_chunk(chunk: Chunk, cache: Path, frames: list) -> None:
    """The chunk's frames (PNG bytes or images) as one folder, renamed into place whole."""
    import os
    import shutil

    from zoetrope.base import png

    folder = chunk.folder(cache)
    staging = temp_name(folder)
    try:
        staging.mkdir(parents=True)
        for n, frame in enumerate(frames):
            (staging / f"{n:04d}.png").write_bytes(frame if isinstance(frame, bytes) else png.encode(frame))
        try:
            os.rename(staging, folder)
        except OSError:  # another render sharing the cache finished it first: same bytes
            if not folder.is_dir():
                raise
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the chunk ({exc.strerror or exc})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _fit(image, width: int, height: int):
    """A conditioning picture at the film's size (a user's image may be any size): cover, then centre-crop."""
    if image.size == (width, height):
        return image
    from PIL import ImageOps

    return ImageOps.fit(image, (width, height))


def _paint_chunk(worker, engine, chunk: Chunk, script: SceneScript, width: int, height: int,
                 files: dict[str, bytes], encode: bool) -> list:
    """Wherever the unit runs: the engine's clip painter there, its conditioning pictures read from the bytes
    sent with the task; PNG bytes when the frames travel back from a worker, else images."""
    import io

    from PIL import Image

    from zoetrope.base import png

    def load(path):
        with Image.open(io.BytesIO(files[str(path)])) as im:
            return im.convert("RGB")

    clip = engine.worker_clip(worker, script)  # `engine`: a base.Engine (sent by reference to its class)
    with worker.state.setdefault("clip_lock", threading.Lock()):  # a clip pipeline is one call at a time; walk
        frames = paint_chunk(clip, chunk, clip_request(chunk, script, width, height, load))  # lanes go on
    return [png.encode(image) for image in frames] if encode else frames


class ChunkUnit(Unit):
    """One chunk as a unit of the render path (engines/run.py)."""

    fn = staticmethod(_paint_chunk)

    def __init__(self, scene: str, chunk: Chunk, script: SceneScript, width: int, height: int, cache: Path,
                 engine):
        self.scene, self.engine, self.segments, self.owner = scene, chunk.engine, (chunk.segment,), engine
        self.order = (chunk.segment, chunk.index)
        self.chunk, self.script, self.width, self.height, self.cache = chunk, script, width, height, cache

    @property
    def frames(self) -> int:
        return self.chunk.frames

    def done(self) -> bool:
        return self.chunk.folder(self.cache).is_dir()

    def sources(self) -> list[Path]:
        c = self.chunk
        return [s.path for x in c.conditions for s in x.sources] + ([c.reference.path] if c.reference else [])

    def args(self, executor) -> tuple | None:
        if self.done():
            self.found = self.chunk.frames
            return None
        files = {str(path): path.read_bytes() for path in self.sources()}
        return (self.owner, self.chunk, self.script, self.width, self.height, files, executor.remote)

    def write(self, args: tuple, frames: list) -> int:
        write_chunk(self.chunk, self.cache, frames)
        return self.chunk.frames


def chunk_units(scene: str, chunks: list[Chunk], script: SceneScript, width: int, height: int, cache: Path,
                engine) -> list[ChunkUnit]:
    """The chunks of `engine` (a base.Engine) as units, their cache made ready (what killed renders left
    half-written swept)."""
    cache.mkdir(parents=True, exist_ok=True)
    sweep_temps(cache)
    return [ChunkUnit(scene, c, script, width, height, cache, engine) for c in chunks]


class GivenClip:
    """An engine stand-in whose worker holds the clip painter under the engine's name (render_chunks)."""

    def __init__(self, name: str):
        self.name = name

    def worker_clip(self, worker, script):
        return worker.clips[self.name]


def render_chunks(painter, chunks: list[Chunk], cache: Path, script: SceneScript, width: int, height: int,
                  progress=None, feed=None) -> RenderStats:
    """The chunks `cache` lacks painted here by `painter` (one clip engine's), in film order."""
    from types import SimpleNamespace

    from zoetrope.film.engines.run import render_units
    from zoetrope.stages.lanes import LocalPool

    engines = {c.engine for c in chunks}
    worker = SimpleNamespace(painter=None, clips=dict.fromkeys(engines, painter), state={})
    units = [u for e in engines for u in chunk_units("scene", [c for c in chunks if c.engine == e], script, width,
                                                     height, cache, GivenClip(e))]
    stats = render_units(LocalPool(worker), sorted(units, key=lambda u: u.order), progress, feed)
    return next(iter(stats.values()), RenderStats())
