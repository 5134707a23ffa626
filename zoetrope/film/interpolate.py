"""Pure tensor math for the walk: slerp and lerp, easing curves, and the keyframe timing rule.

No models, no files: everything here is a function of its arguments, so it is tested exactly.

Why slerp for noise and lerp for embeddings: Gaussian noise in high dimension lives near a sphere of radius
sqrt(d); a straight line between two noise samples passes inside it (at t=0.5 the norm drops by ~1/sqrt(2)),
which the sampler renders as a washed-out, low-contrast frame. Slerp stays on the sphere. Prompt embeddings
are not Gaussian and lerp between them is what the text encoder's neighbourhood expects (as in
stable-diffusion-videos).
"""

from __future__ import annotations

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


# --------------------------------------------------------------------------------------------- timing


