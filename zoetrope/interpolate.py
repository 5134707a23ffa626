"""Pure tensor math for the walk: slerp and lerp, easing curves, and the keyframe timing rule.

No models, no files: everything here is a function of its arguments, so it is tested exactly.

Why slerp for noise and lerp for embeddings: Gaussian noise in high dimension lives near a sphere of radius
sqrt(d); a straight line between two noise samples passes inside it (at t=0.5 the norm drops by ~1/sqrt(2)),
which the sampler renders as a washed-out, low-contrast frame. Slerp stays on the sphere. Prompt embeddings
are not Gaussian and lerp between them is what the text encoder's neighbourhood expects (as in
stable-diffusion-videos).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

DOT_THRESHOLD = 0.9995  # above this |cos(theta)| the arc is a line to fp32 precision: lerp instead


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation a + t (b - a)."""
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    """Spherical linear interpolation; Shoemake (1985), "Animating rotation with quaternion curves", eq. in sec. 3.3.

    Computed in fp32 over the whole tensor as one vector and returned in `a`'s dtype. Falls back to lerp when
    the vectors are nearly parallel (|cos| > dot_threshold), where sin(theta) ~ 0 makes the formula unstable.
    """
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape but are {tuple(a.shape)} and {tuple(b.shape)}.")
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    na, nb = a32.norm(), b32.norm()
    if na == 0 or nb == 0:
        return lerp(a32, b32, t).to(a.dtype)
    dot = torch.clamp((a32 * b32).sum() / (na * nb), -1.0, 1.0)
    if dot.abs() > dot_threshold:
        return lerp(a32, b32, t).to(a.dtype)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    wa = torch.sin((1.0 - t) * theta) / sin_theta
    wb = torch.sin(t * theta) / sin_theta
    return (wa * a32 + wb * b32).to(a.dtype)


# --------------------------------------------------------------------------------------------- easing


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


# --------------------------------------------------------------------------------------------- timing


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
