"""The LTX-Video clip painter on the tiny LTXConditionPipeline (random weights, real classes): the contract, frame
counts and sizes, determinism, what conditions do, every check_inputs refusal, and one-line load failures."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.stages.protocols import ClipCondition, ClipPainterLike, ClipRequest


@pytest.fixture(scope="module")
def ltx(cpu):
    from zoetrope.stages.ltx import load_ltx
    from zoetrope.stages.models import quiet_libraries

    quiet_libraries()
    return load_ltx("tiny", cpu)


@pytest.fixture(scope="module")
def plain(ltx) -> list[Image.Image]:
    """The unconditioned clip of `request()`, painted once for the tests that compare against it."""
    return ltx.paint_clip(request())


def request(**changes) -> ClipRequest:
    fields = dict(prompts={0: "a red boat on the sea"}, negative_prompt="", seed=7, frames=9, width=32, height=32,
                  steps=2, guidance=3.0, fps=24)
    return ClipRequest(**(fields | changes))


def noise_image(seed: int, width: int = 32, height: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(frames: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.float32) for f in frames])


def test_contract_and_frame_rule(ltx):
    assert isinstance(ltx, ClipPainterLike)
    assert ltx.takes_conditions is True
    assert ltx.max_frames == 33  # tiny: small, so film tests chunk
    assert (ltx.ref.role, ltx.ref.id, ltx.ref.revision) == ("ltx", "tiny", "tiny-ltx-v1")
    assert ltx.identity == {"ltx": {"id": "tiny", "revision": "tiny-ltx-v1"}, "device": "cpu", "dtype": "float32",
                            "vae_tiling": False, "call": ltx.identity["call"]}
    assert {"decode_timestep", "image_cond_noise_scale"} <= set(ltx.identity["call"])
    assert [ltx.call_frames(n) for n in (1, 2, 8, 9, 10, 17, 25, 26, 33)] == [1, 9, 9, 9, 17, 17, 25, 33, 33]
    for wanted in (0, 34):
        with pytest.raises(ValueError, match=rf"`wanted` .* but is {wanted}\."):
            ltx.call_frames(wanted)


def test_frames_sizes_and_determinism(ltx, plain):
    first = plain
    assert len(first) == 9 and all(f.mode == "RGB" and f.size == (32, 32) for f in first)
    again = ltx.paint_clip(request())
    assert [f.tobytes() for f in again] == [f.tobytes() for f in first]  # byte-identical on the CPU
    other_seed = ltx.paint_clip(request(seed=8))
    assert [f.tobytes() for f in other_seed] != [f.tobytes() for f in first]
    wide = ltx.paint_clip(request(frames=17, width=64, height=32))  # width and height not swapped
    assert len(wide) == 17 and {f.size for f in wide} == {(64, 32)}


def test_conditions_change_the_clip(ltx, plain):
    plain = pixels(plain)
    keyframe = pixels(ltx.paint_clip(request(conditions=(ClipCondition(8, (noise_image(1),), 1.0),))))
    assert np.abs(keyframe - plain).mean() > 0.5
    weaker = pixels(ltx.paint_clip(request(conditions=(ClipCondition(8, (noise_image(1),), 0.5),))))
    assert np.abs(weaker - keyframe).mean() > 0.1  # strength is passed through
    # A run of 9 frames (a previous chunk's tail) placed at frame 8 of a 17-frame clip: the multi-frame path.
    tail = tuple(noise_image(10 + i) for i in range(9))
    continued = ltx.paint_clip(request(frames=17, conditions=(ClipCondition(8, tail, 1.0),)))
    assert len(continued) == 17
    assert np.abs(pixels(continued) - pixels(ltx.paint_clip(request(frames=17)))).mean() > 0.5


def test_a_strength_1_condition_at_frame_0_pins_that_frame(ltx):
    """With random weights decode(encode(image)) is not the image, so "frame 0 looks like the image" cannot hold;
    what can fail is that the denoiser leaves the conditioned frame alone: its latent frame gets timestep 0, so a
    different prompt must not move it, while it moves the unconditioned frame. (One frame: the decoder is not causal,
    so in longer clips frame 0 also sees the next latent frame, which the prompt does move.)"""
    pinned = (ClipCondition(0, (noise_image(3),), 1.0),)
    other = {0: "a dark forest at night"}
    free_a, free_b = ltx.paint_clip(request(frames=1)), ltx.paint_clip(request(frames=1, prompts=other))
    pin_a = ltx.paint_clip(request(frames=1, conditions=pinned))
    pin_b = ltx.paint_clip(request(frames=1, prompts=other, conditions=pinned))
    assert free_a[0].tobytes() != free_b[0].tobytes()
    assert pin_a[0].tobytes() == pin_b[0].tobytes()
    assert pin_a[0].tobytes() != free_a[0].tobytes()


BAD = [
    (dict(prompts={0: "a", 9: "b"}), r"`prompts` .* has keys \[0, 9\]"),
    (dict(prompts={4: "a"}), r"`prompts` .* has keys \[4\]"),
    (dict(prompts={}), r"`prompts` .* has keys \[\]"),
    (dict(width=48), r"`height` and `width` .* multiples of 32 but are 32 and 48\."),
    (dict(height=0), r"`height` and `width` .* but are 0 and 32\."),
    (dict(frames=10), r"`frames` has to be of the form 8k\+1 and at most 33 .* but is 10\."),
    (dict(frames=41), r"`frames` .* but is 41\."),
    (dict(steps=0), r"`steps` .* but is 0\."),
    (dict(fps=0), r"`fps` .* but is 0\."),
    (dict(guidance=-1.0), r"`guidance` .* but is -1\.0\."),
    (dict(seed=-1), r"`seed` .* but is -1\."),
    (dict(conditions=(ClipCondition(9, (noise_image(0),)),)), r"`conditions\[0\]\.frame` .* \(0 to 8\) but is 9\."),
    (dict(conditions=(ClipCondition(0, ()),)), r"`conditions\[0\]\.images` .* but holds 0\."),
    (dict(frames=17, conditions=(ClipCondition(0, (noise_image(0),) * 5),)), r"8k\+1 frames but holds 5\."),
    (dict(frames=17, conditions=(ClipCondition(4, (noise_image(0),) * 9),)),
     r"`conditions\[0\]\.frame` has to be a multiple of 8 .* but is 4\."),
    (dict(frames=17, conditions=(ClipCondition(8, (noise_image(0),) * 17),)),
     r"`conditions\[0\]\.images` runs past the clip: .* end at frame 24, .* ends at frame 16\."),
    (dict(conditions=(ClipCondition(0, (noise_image(0),)), ClipCondition(8, (noise_image(0),), 1.5))),
     r"`conditions\[1\]\.strength` .* but is 1\.5\."),
    (dict(conditions=(ClipCondition(0, (noise_image(0, 64, 32),)),)),
     r"`conditions\[0\]\.images\[0\]` has to be 32x32 .* but is 64x32\."),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[m[:24] for _, m in BAD])
def test_check_inputs_names_the_argument_and_value(ltx, changes, message):
    with pytest.raises(ValueError, match=message):
        ltx.check_inputs(request(**changes))


def test_paint_clip_checks_before_any_model_runs(ltx, monkeypatch):
    monkeypatch.setattr(ltx, "pipe", None)  # calling the pipeline would fail differently
    with pytest.raises(ValueError, match=r"`frames`"):
        ltx.paint_clip(request(frames=8))


def test_memory_options(cpu):
    from zoetrope.stages.ltx import load_ltx

    tiled = load_ltx("tiny", cpu, vae_tiling=True)
    assert tiled.pipe.vae.use_tiling and tiled.identity["vae_tiling"] is True
    with pytest.raises(UserError, match=r"^cpu_offload: .*CUDA.* 'cpu'") as caught:
        load_ltx("tiny", cpu, cpu_offload=True)
    assert "\n" not in str(caught.value)


def test_load_failures_are_one_line_and_quick(cpu, tmp_path):
    from zoetrope.stages.ltx import load_ltx

    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"cannot load ltx 'owner/missing'.*Hugging Face cache.*HF_HUB_OFFLINE") as hub:
        load_ltx("owner/missing", cpu)
    assert time.monotonic() - started < 5 and "\n" not in str(hub.value)
    with pytest.raises(ModelLoadError, match=r"cannot load ltx '.*'") as folder:  # a folder that is no LTX pipeline
        load_ltx(str(tmp_path), cpu)
    assert "\n" not in str(folder.value)
