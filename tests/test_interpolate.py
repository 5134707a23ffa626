"""slerp/lerp math, easing curves and the frame-count rule: pure functions, exact checks."""

from __future__ import annotations

import math

import pytest
import torch

from zoetrope.film.interpolate import lerp, slerp
from zoetrope.settings.timing import EASINGS, frame_count, transition_ts


def gaussian(seed: int, shape=(4, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def test_lerp_endpoints_and_midpoint():
    a, b = gaussian(0), gaussian(1)
    assert torch.equal(lerp(a, b, 0.0), a)
    assert torch.allclose(lerp(a, b, 1.0), b, atol=1e-6)
    assert torch.allclose(lerp(a, b, 0.5), (a + b) / 2, atol=1e-6)


def test_slerp_endpoints():
    a, b = gaussian(0), gaussian(1)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)


@pytest.mark.parametrize("t", [0.1, 0.25, 0.5, 0.9])
def test_slerp_preserves_unit_norm(t):
    a, b = gaussian(0), gaussian(1)
    a, b = a / a.norm(), b / b.norm()
    assert slerp(a, b, t).norm().item() == pytest.approx(1.0, abs=1e-5)
    # lerp cuts the corner: the reason slerp is used for noise
    assert lerp(a, b, 0.5).norm().item() < 0.8


def test_slerp_keeps_gaussian_noise_on_its_shell():
    a, b = gaussian(2, (4, 32, 32)), gaussian(3, (4, 32, 32))
    mid = slerp(a, b, 0.5)
    assert mid.std().item() == pytest.approx(1.0, abs=0.05)
    assert lerp(a, b, 0.5).std().item() == pytest.approx(1 / math.sqrt(2), abs=0.05)


def test_slerp_near_parallel_falls_back_to_lerp():
    a = gaussian(0)
    b = a + 1e-4 * gaussian(1)
    out = slerp(a, b, 0.3)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, lerp(a, b, 0.3), atol=1e-6)
    same = slerp(a, a.clone(), 0.5)  # exactly parallel: acos(1) = 0 would divide by zero
    assert torch.isfinite(same).all() and torch.allclose(same, a)


def test_slerp_computes_in_fp32_and_returns_input_dtype():
    a, b = gaussian(0).half(), gaussian(1).half()
    out = slerp(a, b, 0.5)
    assert out.dtype == torch.float16
    ref = slerp(a.float(), b.float(), 0.5)
    assert torch.allclose(out.float(), ref, atol=2e-3)


def test_slerp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        slerp(torch.ones(3), torch.ones(4), 0.5)


@pytest.mark.parametrize("name", sorted(EASINGS))
def test_easing_endpoints_and_monotonic(name):
    ease = EASINGS[name]
    assert ease(0.0) == pytest.approx(0.0, abs=1e-12)
    assert ease(1.0) == pytest.approx(1.0, abs=1e-12)
    values = [ease(i / 100) for i in range(101)]
    assert all(x <= y + 1e-12 for x, y in zip(values, values[1:], strict=False))


def test_easing_shapes():
    assert EASINGS["ease-in-out"](0.5) == pytest.approx(0.5)
    assert EASINGS["ease-in-out"](0.1) < 0.1 < EASINGS["ease-in-out"](0.9) - 0.7
    assert EASINGS["ease-in"](0.5) < 0.5 < EASINGS["ease-out"](0.5)
    for t in (0.1, 0.3):  # symmetric about the middle
        assert EASINGS["ease-in-out"](t) == pytest.approx(1 - EASINGS["ease-in-out"](1 - t))


@pytest.mark.parametrize("seconds, fps, frames", [
    (1.0, 24, 24), (2.0, 24, 48), (1.5, 24, 36), (0.5, 24, 12), (1.15, 20, 23), (0.125, 4, 1), (0.1, 4, 0),
    (0.375, 4, 2),  # 1.5 frames: halves round up, not to even
    (1 / 3, 30, 10), (0.0, 24, 0),
])
def test_frame_count_rule(seconds, fps, frames):
    assert frame_count(seconds, fps) == frames


def test_transition_ts_exclude_keyframes():
    ts = transition_ts(3, "linear")
    assert ts == pytest.approx([0.25, 0.5, 0.75])
    assert transition_ts(0) == []
    eased = transition_ts(5, "ease-in-out")
    assert all(0.0 < t < 1.0 for t in eased)
    assert eased == sorted(eased)
    with pytest.raises(ValueError, match="easing"):
        transition_ts(2, "bounce")
