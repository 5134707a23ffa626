"""The drift clip painter (stages/drift.py): the 2D warp, colour matching, the frame-by-frame contract (on a fake
painter that records its calls) and, on the tiny painter, determinism, strength and chunk continuity."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.stages.drift import (
    MAX_FRAMES,
    DriftClipPainter,
    match_colors,
    require_skimage,
    warp,
    warp_matrix,
)
from zoetrope.stages.presets import ModelRef
from zoetrope.stages.protocols import ClipCondition, ClipPainterLike, ClipRequest

SIZE = 32


def noise_image(seed: int, size: int = SIZE) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def request(frames: int = 4, **kw) -> ClipRequest:
    args = dict(prompts={0: "a lighthouse"}, negative_prompt="", seed=7, frames=frames, width=SIZE, height=SIZE,
                steps=4, guidance=0.0, fps=8,
                motion={"zoom": (1.0,) * frames, "translate_x": (0.0,) + (2.0,) * (frames - 1),
                        "strength": (0.5,) * frames})
    return ClipRequest(**(args | kw))


# ------------------------------------------------------------------------------------------------ warp


def test_zoom_1_angle_0_translate_0_is_the_identity():
    image = noise_image(1)
    assert np.array_equal(pixels(warp(image)), pixels(image))
    # the same through the sampler: a full turn leaves sin(360 deg) ~ -2e-16, so the grid path runs
    assert np.array_equal(pixels(warp(image, angle=360.0)), pixels(image))
    assert np.allclose(warp_matrix(SIZE, SIZE, zoom=1, angle=0, translate_x=0, translate_y=0), np.eye(3))


def test_a_translate_moves_a_pixel_by_exactly_that_and_replicates_the_border():
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[12, 10] = 255
    image[:, 0] = (40, 50, 60)
    moved = pixels(warp(Image.fromarray(image), translate_x=3, translate_y=-2))
    assert moved[10, 13].tolist() == [255, 255, 255]  # (x 10, y 12) -> (x 13, y 10): + right, - up
    assert moved.sum() == 3 * 255 + 4 * SIZE * (40 + 50 + 60)  # the pixel, and column 0 now columns 0..3
    assert (moved[:, :4] == (40, 50, 60)).all()  # border replicate: the left edge stretched in, not black


def test_angle_turns_counter_clockwise_about_the_centre_and_zoom_scales_about_it():
    c = SIZE // 2
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[c, c + 6] = 255  # 6 px right of the centre
    turned = pixels(warp(Image.fromarray(image), angle=90.0))
    assert np.unravel_index(turned[..., 0].argmax(), turned.shape[:2]) == (c - 6, c)  # now 6 px above it
    zoomed = pixels(warp(Image.fromarray(image), zoom=2.0))
    assert np.unravel_index(zoomed[..., 0].argmax(), zoomed.shape[:2]) == (c, c + 12)
    with pytest.raises(ValueError, match="`zoom` must be a finite number > 0 but is 0"):
        warp(Image.fromarray(image), zoom=0)


# -------------------------------------------------------------------------------------------- colour


def test_colour_matching_gives_a_frame_the_references_histogram():
    frame = noise_image(2)
    reference = Image.fromarray(np.clip(pixels(noise_image(3)) // 3 + (150, 20, 60), 0, 255).astype(np.uint8))
    matched = pixels(match_colors(frame, reference))
    ref = pixels(reference)
    before = np.abs(pixels(frame).mean((0, 1)) - ref.mean((0, 1))).max()
    after = np.abs(matched.mean((0, 1)) - ref.mean((0, 1))).max()
    assert before > 40 and after < 1.5
    for ch in range(3):  # the same values, channel by channel, up to rounding
        assert np.abs(np.sort(matched[..., ch].ravel()) - np.sort(ref[..., ch].ravel())).max() <= 1
    # a picture keeps its own layout: it is its ranks that move, not its pixels' places
    assert np.corrcoef(matched[..., 0].ravel(), pixels(frame)[..., 0].ravel())[0, 1] > 0.95


def test_without_scikit_image_match_first_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now raises ImportError
    with pytest.raises(UserError, match=r"^color_coherence: match_first needs scikit-image; install it with "
                                        r"\.venv/bin/pip install -e '\.\[motion\]'$"):
        require_skimage()
    drift = DriftClipPainter(FakePainter())
    with pytest.raises(UserError, match="scikit-image"):
        drift.paint_clip(request(color_reference=noise_image(4)))
    assert drift.painter.calls == []  # refused before any frame


# ------------------------------------------------------------------------------- contract, on a fake


class FakePainter:
    """Text-to-image: a flat colour from the seed; image-to-image: the init image back. Records each call."""

    ref = ModelRef("painter", "fake", "fake", revision="v1")

    def __init__(self):
        self.calls: list[dict] = []

    def paint(self, prompts, *, params, seeds, negative_prompts=None, init_images=None):
        self.calls.append({"prompt": prompts[0], "seed": seeds[0], "strength": params.strength,
                           "guidance": params.guidance, "init": None if init_images is None else init_images[0]})
        if init_images is not None:
            return [init_images[0].copy()]
        return [Image.new("RGB", (params.width, params.height), (seeds[0] % 256, 0, 0))]


def test_the_drift_painter_is_a_clip_painter_with_one_frame_calls():
    drift = DriftClipPainter(FakePainter())
    assert isinstance(drift, ClipPainterLike)
    assert drift.takes_conditions and drift.max_frames == MAX_FRAMES == 9
    assert [drift.call_frames(w) for w in (1, 5, 9)] == [1, 5, 9]
    assert drift.identity["painter"] == {"id": "fake", "revision": "v1"} and drift.identity["drift"] == 1
    assert DriftClipPainter(FakePainter(), scheduler="ddim").identity != drift.identity


def test_frame_0_is_painted_from_text_and_each_next_frame_repaints_the_warped_previous_one():
    fake = FakePainter()
    motion = {"zoom": (1.0, 1.1, 1.2, 0.9), "angle": (0.0, 3.0, -3.0, 1.0), "translate_y": (0.0, 1.0, 2.0, -1.5),
              "strength": (0.9, 0.3, 0.6, 1.0)}
    frames = DriftClipPainter(fake).paint_clip(request(prompts={0: "a", 2: "b"}, motion=motion))
    assert len(frames) == 4 and all(f.size == (SIZE, SIZE) and f.mode == "RGB" for f in frames)
    assert [c["seed"] for c in fake.calls] == [7, 8, 9, 10]  # seeds advance per frame
    assert [c["strength"] for c in fake.calls] == [None, 0.3, 0.6, 1.0]  # frame 0: text-to-image
    assert [c["prompt"] for c in fake.calls] == ["a", "a", "b", "b"]  # the prompt in force at each frame
    assert fake.calls[0]["init"] is None
    for i in range(1, 4):
        expected = warp(frames[i - 1], zoom=motion["zoom"][i], angle=motion["angle"][i],
                        translate_y=motion["translate_y"][i])
        assert np.array_equal(pixels(fake.calls[i]["init"]), pixels(expected))


def test_conditions_are_the_frames_they_pin_and_guidance_may_change_per_frame():
    fake = FakePainter()
    start, later = noise_image(5), noise_image(6)
    motion = {"strength": (0.5,) * 5, "guidance": (1.0, 2.0, 3.0, 4.0, 5.0)}
    frames = DriftClipPainter(fake).paint_clip(request(
        frames=5, motion=motion, conditions=(ClipCondition(0, (start,)), ClipCondition(3, (later,)))))
    assert np.array_equal(pixels(frames[0]), pixels(start)) and np.array_equal(pixels(frames[3]), pixels(later))
    assert [c["seed"] for c in fake.calls] == [8, 9, 11] and [c["guidance"] for c in fake.calls] == [2.0, 3.0, 5.0]
    assert np.array_equal(pixels(fake.calls[2]["init"]), pixels(later))  # frame 4 drifts on from the pinned frame 3


def test_seeds_wrap_at_2_31():
    fake = FakePainter()
    DriftClipPainter(fake).paint_clip(request(frames=3, seed=2**31 - 2))
    assert [c["seed"] for c in fake.calls] == [2**31 - 2, 2**31 - 1, 0]


@pytest.mark.parametrize("change, message", [
    ({"motion": {"zoom": (1.0, 1.0, 1.0)}}, r"`request.motion\['zoom'\]` must hold one value per frame \(4\) but holds 3"),
    ({"motion": {"zoom": (1.0, 1.0, 0.0, 1.0)}}, r"`request.motion\['zoom'\]` must be > 0 but is 0.0 at frame 2"),
    ({"motion": {"strength": (0.5, 0.5, 0.0, 0.5)}}, r"must be in \(0, 1\] but is 0.0 at frame 2"),
    ({"motion": {"strength": (0.5, 1.5, 0.5, 0.5)}}, r"must be in \(0, 1\] but is 1.5 at frame 1"),
    ({"motion": {"strength": (0.5, 0.2, 0.5, 0.5)}}, r"0.2 at frame 1 x 4 steps runs no image-to-image step"),
    ({"motion": {"angle": (0.0, float("nan"), 0.0, 0.0)}}, r"`request.motion\['angle'\]` must be finite numbers"),
    ({"motion": {"zoom": (1.0,) * 4, "zoooom": (1.0,) * 4}}, r"unknown fields \['zoooom'\]"),
    ({"motion": None}, r"`request.motion` is None"),
    ({"frames": 10, "motion": {}}, r"`request.frames` has to be 1..9 \(max_frames\) but is 10"),
    ({"prompts": {1: "late"}}, r"`request.prompts` needs a prompt at frame 0"),
    ({"conditions": (ClipCondition(0, (noise_image(1, 16),)),)}, r"must be 32x32 but one at frame 0 is 16x16"),
    ({"conditions": (ClipCondition(0, (noise_image(1),), 0.5),)}, r"strength must be 1.0 .* but is 0.5 at frame 0"),
    ({"conditions": (ClipCondition(3, (noise_image(1), noise_image(2))),)}, r"frames must lie in 0..3"),
])
def test_bad_requests_are_refused_before_any_frame_naming_the_argument(change, message):
    fake = FakePainter()
    with pytest.raises(ValueError, match=message):
        DriftClipPainter(fake).paint_clip(request(**change))
    assert fake.calls == []


# ------------------------------------------------------------------------------------ the tiny painter


@pytest.fixture(scope="module")
def drift(tiny_painter):
    return DriftClipPainter(tiny_painter)


@pytest.fixture(scope="module")
def clip(drift):
    """Four frames zooming in and panning right, painted once for several tests."""
    return drift.paint_clip(tiny_request(4))


def tiny_request(frames: int, seed: int = 11, first: int = 0, **kw) -> ClipRequest:
    """Frames `first`.. of one drift: per-frame values of the whole drift, sliced as a chunk's would be."""
    zoom = [1.0, 1.08, 1.04, 1.1, 1.02, 1.06]
    shift = [0.0, 2.0, 1.0, 3.0, 2.0, 1.0]
    motion = {"zoom": tuple(zoom[first:first + frames]), "translate_x": tuple(shift[first:first + frames]),
              "strength": (0.5,) * frames}
    return request(**({"frames": frames, "seed": seed + first, "motion": motion} | kw))


def test_drift_frames_are_deterministic_on_the_tiny_painter(drift, clip):
    again = drift.paint_clip(tiny_request(4))
    assert [f.tobytes() for f in again] == [f.tobytes() for f in clip]
    assert len({f.tobytes() for f in clip}) == 4  # every frame new


def test_a_drift_continued_from_its_last_frame_is_the_same_drift(drift, clip, tmp_path):
    """Chunks (and resume): painting frames 2.. from frame 1, read back from its PNG, repaints frames 2..3."""
    path = tmp_path / "0001.png"
    clip[1].save(path)
    with Image.open(path) as im:
        cached = im.convert("RGB")
    tail = drift.paint_clip(tiny_request(3, first=1, conditions=(ClipCondition(0, (cached,)),)))
    assert tail[0].tobytes() == clip[1].tobytes()
    assert [f.tobytes() for f in tail[1:]] == [f.tobytes() for f in clip[2:]]


def test_strength_changes_the_frames(drift, clip):
    motion = dict(tiny_request(2).motion) | {"strength": (0.5, 1.0)}
    stronger = drift.paint_clip(tiny_request(2, motion=motion))
    assert stronger[0].tobytes() == clip[0].tobytes()  # frame 0 is text-to-image either way
    assert np.abs(pixels(stronger[1]) - pixels(clip[1])).mean() > 2


def test_match_first_pulls_every_painted_frame_to_the_references_colours(drift, clip):
    reference = Image.fromarray(np.clip(pixels(noise_image(9)) // 4 + (170, 40, 90), 0, 255).astype(np.uint8))
    matched = drift.paint_clip(tiny_request(3, color_reference=reference))
    target = pixels(reference).mean((0, 1))
    for plain, coherent in zip(clip[:3], matched, strict=True):
        assert np.abs(pixels(coherent).mean((0, 1)) - target).max() < 2
        assert np.abs(pixels(plain).mean((0, 1)) - target).max() > 20
