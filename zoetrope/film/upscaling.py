"""Upscaled films (`upscale: {scale: 2|4, model: ...}`): every painted frame made larger before it is encoded.

The painted frames stay in their cache as they are (a new upscaler or scale never repaints them); the upscaled
ones have their own cache beside it, `CACHE_ROOT/<scene>/upscaled-<upscaler>/<key>.png`, keyed by the painted
frame's key, the upscaler's identity (model, revision, scale, tiles, steps, device, dtype), the prompt it is
steered by (the segment's) and the seed (the scene's: the same noise at every tile position of every frame,
so the upscaler adds no flicker of its own). A scene's frames are upscaled once its engines have painted them,
in film order, while the encoder takes them as they appear. Tiled (stages/upscale.py), so a 4K frame fits.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Upscaled:
    source: Path  # the painted frame
    path: Path  # its upscaled copy
    prompt: str
    seed: int


def _digest(path: Path, cache: Path) -> str:
    """A painted frame's key: the walk frame's file name, or a chunk's folder and frame (which determine it)."""
    return path.stem if path.parent == cache else f"{path.parent.name}/{path.stem}"


def plan_upscale(layout, upscaler) -> dict[str, list[Upscaled]]:
    """Point every shot of a layout.FilmLayout at its upscaled frame (layout.py calls this, so the types are
    not imported here); the unique frames to upscale per scene, in film order."""
    identity = json.dumps(upscaler.identity, sort_keys=True, default=str)
    tag = hashlib.sha256(identity.encode()).hexdigest()[:12]
    todo: dict[str, list[Upscaled]] = {}
    mapping: dict[Path, Path] = {}
    for scene in layout.scenes:
        folder = scene.cache.parent / f"upscaled-{tag}"
        frames: list[Upscaled] = []
        for segment in scene.segments:
            prompt = scene.script.prompt_of(segment.index)
            for path in segment.paths:
                if path in mapping:
                    continue
                record = [identity, _digest(path, scene.cache), prompt, scene.script.seed]
                name = hashlib.sha256(json.dumps(record).encode()).hexdigest()[:32]
                mapping[path] = folder / f"{name}.png"
                frames.append(Upscaled(path, mapping[path], prompt, scene.script.seed))
        todo[scene.name] = frames
    for shot in layout.shots:
        shot.path = mapping.get(shot.path, shot.path)
    width, height = layout.size
    layout.size = (width * upscaler.scale, height * upscaler.scale)
    return todo


def upscale_scene(upscaler, scene, frames: list[Upscaled], feed=None) -> tuple[int, int, float]:
    """Upscale the scene's frames that are not cached yet; (cached, upscaled, seconds)."""
    from PIL import Image

    from zoetrope.base.files import sweep_temps
    from zoetrope.film.walk import write_frame

    for folder in {f.path.parent for f in frames}:
        sweep_temps(folder)  # what a killed render left half-written
    cached = done = 0
    start = time.perf_counter()
    for frame in frames:
        if feed is not None and feed.consumer_error is not None:
            raise feed.consumer_error
        if frame.path.is_file():
            cached += 1
        else:
            frame.path.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(frame.source) as im:
                image = im.convert("RGB")
            write_frame(frame.path, upscaler.upscale([image], prompt=frame.prompt, seed=frame.seed)[0])
            done += 1
        if feed is not None:
            feed.saved()
    return cached, done, time.perf_counter() - start
