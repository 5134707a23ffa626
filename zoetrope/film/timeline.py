"""The film's timeline: which cached frame each film frame shows, what is drawn over it, and the .srt cues.

Pure data from a scene's segments (film/layout.py) and its script: no model, no file written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Shot:
    """One film frame: which cached frame, and what is drawn over it at encode time."""

    path: Path
    card: str | None = None
    subtitle: str | None = None


def scene_shots(script, segments: list[tuple[list[Path], int]], burn: bool) -> list[Shot]:
    """Every film frame of a scene from its segments' frame paths in film order, each with its hold's frame
    count; an intertitle card fills the first half of its keyframe's hold."""
    shots: list[Shot] = []
    for keyframe, (paths, hold) in zip(script.keyframes, segments, strict=True):
        scene = [Shot(p) for p in paths]
        if keyframe.intertitle:
            for shot in scene[:(hold + 1) // 2]:
                shot.card = keyframe.intertitle
        if burn and keyframe.subtitle:
            for shot in scene:
                shot.subtitle = keyframe.subtitle
        shots += scene
    return shots


def scene_cues(script, offset_s: float) -> list[tuple[float, float, str]]:
    """One .srt cue per keyframe: its subtitle (or prompt) from its hold's start to the next keyframe's."""
    cues, frame = [], 0
    for i, keyframe in enumerate(script.keyframes):
        length = script.hold_frames(i) + script.transition_frames(i)
        if length:
            text = keyframe.subtitle or keyframe.intertitle or keyframe.prompt
            cues.append((offset_s + frame / script.fps, offset_s + (frame + length) / script.fps, text))
        frame += length
    return cues
