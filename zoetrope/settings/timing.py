"""Easing curves and the keyframe timing rule: plain float math that scene scripts validate against and the
walk renders with (no torch, so `check` and scene parsing stay light).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def linear(t: float) -> float:
    """Constant speed."""
    return t


def ease_in(t: float) -> float:
    """Quadratic ease-in, t^2; Penner (2002), "Robert Penner's Easing Equations"."""
    return t * t


def ease_out(t: float) -> float:
    """Quadratic ease-out, 1 - (1 - t)^2; Penner (2002)."""
    return 1.0 - (1.0 - t) * (1.0 - t)


def ease_in_out(t: float) -> float:
    """Sinusoidal ease-in-out, (1 - cos(pi t)) / 2; Penner (2002): zero speed at both keyframes."""
    return (1.0 - math.cos(math.pi * t)) / 2.0


def smoothstep(t: float) -> float:
    """Cubic Hermite smoothstep, 3t^2 - 2t^3; zero speed at both ends, like ease-in-out but flatter."""
    return t * t * (3.0 - 2.0 * t)


EASINGS: dict[str, Callable[[float], float]] = {
    "linear": linear, "ease-in": ease_in, "ease-out": ease_out, "ease-in-out": ease_in_out, "smoothstep": smoothstep,
}


def frame_count(seconds: float, fps: float) -> int:
    """Frames for a duration: round(seconds x fps), halves rounded up (not Python's banker's rounding).

    A tiny epsilon absorbs binary float error, so 1.15 s x 20 fps (22.999999999999996) is 23 frames.
    """
    return math.floor(seconds * fps + 0.5 + 1e-9)


def transition_ts(n: int, easing: str = "linear") -> list[float]:
    """The eased t of each of a transition's n frames: (i + 1) / (n + 1), so neither keyframe is repeated.

    t = 0 and t = 1 are the keyframes themselves, shown during their holds; a transition only holds the frames
    strictly between them (stable-diffusion-videos renders both ends of every segment, so keyframes stutter).
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0 but is {n}.")
    if easing not in EASINGS:
        raise ValueError(f"`easing` must be one of {sorted(EASINGS)} but is {easing!r}.")
    ease = EASINGS[easing]
    return [ease((i + 1) / (n + 1)) for i in range(n)]
