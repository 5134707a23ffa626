"""The film's timeline: which cached frame each film frame shows, what is drawn over it, and the .srt cues.

Pure data from a scene plan (walk.ScenePlan) and its script: no model, no file written.
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


def scene_shots(plan, cache: Path, burn: bool) -> list[Shot]:
    """Every film frame of a scene; an intertitle card fills the first half of its keyframe's hold."""
    script = plan.script
    paths = plan.frame_paths(cache)
    shots = [Shot(p) for p in paths]
    starts = plan.keyframe_start + [len(paths)]
    for i, keyframe in enumerate(script.keyframes):
        lo, hi = starts[i], starts[i + 1]
        if keyframe.intertitle:
            hold_frames = sum(1 for j in plan.sequence[lo:hi] if j == plan.keyframe_jobs[i])
            for shot in shots[lo:lo + (hold_frames + 1) // 2]:
                shot.card = keyframe.intertitle
        if burn and keyframe.subtitle:
            for shot in shots[lo:hi]:
                shot.subtitle = keyframe.subtitle
    return shots


def scene_cues(script, offset_s: float) -> list[tuple[float, float, str]]:
    """One .srt cue per keyframe: its subtitle (or prompt) from its hold's start to the next keyframe's."""
    from zoetrope.settings.timing import frame_count

    cues, frame = [], 0
    for i, keyframe in enumerate(script.keyframes):
        length = frame_count(keyframe.hold, script.fps) + frame_count(script.transition_of(i), script.fps)
        if length:
            text = keyframe.subtitle or keyframe.intertitle or keyframe.prompt
            cues.append((offset_s + frame / script.fps, offset_s + (frame + length) / script.fps, text))
        frame += length
    return cues
