"""The AnimateDiff clip painter (stages/animatediff.py) on the tiny SD painter and the tiny motion adapter: frame
counts and sizes, determinism with and without FreeNoise, prompt travel, every check_inputs refusal, painters the
adapter does not fit, and the offline refusal of a missing Hub adapter."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import numpy as np
import pytest

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.stages.protocols import ClipCondition, ClipPainterLike, ClipRequest

SIZE = 32  # 4x4 latents: seconds per clip on a shared CPU


def request(**changes) -> ClipRequest:
    base = ClipRequest(prompts={0: "a red cat"}, negative_prompt="", seed=7, frames=6, width=SIZE, height=SIZE,
                       steps=2, guidance=7.5, fps=8)
    return replace(base, **changes)


def pixels(frames) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.int16) for f in frames])


@pytest.fixture(scope="module")
def clip_painter(cpu):
    from zoetrope.stages.animatediff import load_animatediff
    from zoetrope.stages.models import quiet_libraries

    quiet_libraries()
    return load_animatediff("tiny", "tiny", cpu)


def test_tiny_adapter_loads_as_a_clip_painter(clip_painter):
    from zoetrope.stages.tiny_motion import TINY_MOTION_VERSION

    assert isinstance(clip_painter, ClipPainterLike)
    assert clip_painter.ref.role == "motion" and clip_painter.ref.as_log() == {
        "id": "tiny", "revision": f"tiny-motion-v{TINY_MOTION_VERSION}"}
    identity = clip_painter.identity
    assert identity["motion"] == clip_painter.ref.as_log() and identity["painter"]["id"] == "tiny"
    assert (identity["device"], identity["dtype"]) == ("cpu", "float32")
    assert identity["free_noise"]["context_length"] == 16 and identity["free_noise"]["context_stride"] == 4
    assert identity["scheduler"]["beta_schedule"] == "linear"
    assert identity["vae"] == {"slicing": False, "tiling": False, "decode_chunk_size": 8}
    assert clip_painter.takes_conditions is False and clip_painter.max_frames == 64
    assert [clip_painter.call_frames(n) for n in (1, 16, 17, 64)] == [1, 16, 17, 64]
    with pytest.raises(ValueError, match=r"`wanted` .* but is 0"):
        clip_painter.call_frames(0)


def test_clip_has_the_requested_frames_and_size(clip_painter):
    frames = clip_painter.paint_clip(request(frames=5, width=48, height=SIZE))
    assert len(frames) == 5
    assert {(f.mode, f.size) for f in frames} == {("RGB", (48, SIZE))}


def test_equal_requests_give_identical_frames_with_and_without_free_noise(clip_painter):
    plain, long = request(), request(frames=17, seed=11)
    assert clip_painter.free_noise_context(plain) is None and clip_painter.free_noise_context(long) == 16
    first = [f.tobytes() for f in clip_painter.paint_clip(plain)]
    assert [f.tobytes() for f in clip_painter.paint_clip(plain)] == first
    windowed = clip_painter.paint_clip(long)  # > 16 frames: FreeNoise windows
    assert len(windowed) == 17 and clip_painter.pipe.free_noise_enabled
    assert [f.tobytes() for f in clip_painter.paint_clip(long)] == [f.tobytes() for f in windowed]
    # Switching back to plain blocks restores the plain clip exactly
    assert [f.tobytes() for f in clip_painter.paint_clip(plain)] == first
    assert not clip_painter.pipe.free_noise_enabled
    assert [f.tobytes() for f in clip_painter.paint_clip(replace(plain, seed=8))] != first


def test_prompt_travel_moves_the_clip_and_equal_prompts_do_not(clip_painter):
    single, travel = request(), request(prompts={0: "a red cat", 3: "a blue sea at night"})
    same = request(prompts={0: "a red cat", 3: "a red cat"})
    assert clip_painter.free_noise_context(single) is None
    assert clip_painter.free_noise_context(travel) == 6  # one window: never longer than the clip
    still, moving = pixels(clip_painter.paint_clip(single)), pixels(clip_painter.paint_clip(travel))
    assert moving.shape == still.shape and np.abs(moving - still).max() > 8
    # Frame 0 is conditioned on the first prompt alone (FreeNoise lerps from it), but the motion modules mix
    # frames, so its pixels are not asserted equal to the single-prompt clip's. What does hold: a travel between
    # two equal prompts (one FreeNoise window as long as the clip) is the plain single-prompt clip, up to the
    # float rounding of the lerp, of the window weighting and of a larger text-encoder batch.
    assert np.abs(pixels(clip_painter.paint_clip(same)) - still).max() <= 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"conditions": (ClipCondition(0, ()),)}, r"`conditions` are not taken .* 1 were given"),
    ({"frames": 0}, r"`frames` .* but is 0\."),
    ({"frames": 65}, r"`frames` .* max_frames 64 but is 65\."),
    ({"width": 36}, r"`height` and `width` .* divisible by 8 but are 32 and 36\."),
    ({"height": -8}, r"`height` and `width` .* but are -8 and 32\."),
    ({"steps": 0}, r"`steps` .* but is 0\."),
    ({"guidance": -1.0}, r"`guidance` .* but is -1\.0\."),
    ({"seed": -3}, r"`seed` .* but is -3\."),
    ({"negative_prompt": None}, r"`negative_prompt` has to be a str but is a NoneType\."),
    ({"prompts": {}}, r"`prompts` has to be a non-empty dict .* but is \{\}\."),
    ({"prompts": {0: 3}}, r"`prompts` has to be a non-empty dict .* but is \{0: 3\}\."),
    ({"prompts": {2: "a", 5: "b"}}, r"`prompts` has to start at frame 0 but its first key is 2\."),
    ({"prompts": {0: "a", 6: "b"}}, r"`prompts` keys have to be frames of the clip \(0 to 5\) but include 6\."),
])
def test_check_inputs_names_the_argument_and_value(clip_painter, changes, message):
    with pytest.raises(ValueError, match=message) as caught:
        clip_painter.paint_clip(request(**changes))
    assert "\n" not in str(caught.value)


def test_memory_options_reach_the_identity(cpu):
    from zoetrope.stages.animatediff import load_animatediff

    painter = load_animatediff("tiny", "tiny", cpu, vae_slicing=True, vae_tiling=True, max_frames=4)
    assert painter.identity["vae"] == {"slicing": True, "tiling": True, "decode_chunk_size": 8}
    assert painter.max_frames == 4 and painter.pipe.vae.use_slicing and painter.pipe.vae.use_tiling
    assert len(painter.paint_clip(request(frames=3))) == 3
    with pytest.raises(ValueError, match="max_frames 4 but is 5"):
        painter.check_inputs(request(frames=5))


def test_cpu_offload_is_refused_on_the_cpu(cpu):
    from zoetrope.stages.animatediff import load_animatediff

    with pytest.raises(UserError, match=r"^cpu_offload: .* CUDA .* the device is cpu") as caught:
        load_animatediff("tiny", "tiny", cpu, cpu_offload=True)
    assert "\n" not in str(caught.value)


SD_ADAPTER = {"block_out_channels": [320, 640, 1280, 1280], "motion_layers_per_block": 2, "conv_in_channels": None}
SD_UNET = {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "cross_attention_dim": 768}


@pytest.mark.parametrize(("pipeline", "unet", "adapter", "why"), [
    ("StableDiffusionXLPipeline", SD_UNET | {"cross_attention_dim": 2048}, SD_ADAPTER,
     r"loads as a StableDiffusionXLPipeline, not a StableDiffusionPipeline"),
    ("StableDiffusionPipeline", SD_UNET | {"cross_attention_dim": 1024}, SD_ADAPTER,
     r"cross_attention_dim is 1024 \(SD 2\.x: 1024\), the adapter was trained on SD 1\.5 \(768\)"),
    ("StableDiffusionPipeline", SD_UNET | {"layers_per_block": 1}, SD_ADAPTER, r"\[1, 1, 1, 1\] layers per block"),
    ("StableDiffusionPipeline", SD_UNET, SD_ADAPTER | {"conv_in_channels": 9}, r"a PIA adapter"),
    ("FluxPipeline", {}, SD_ADAPTER, r"loads as a FluxPipeline"),
])
def test_a_painter_the_adapter_does_not_fit_is_refused(pipeline, unet, adapter, why):
    from zoetrope.stages.animatediff import check_fits
    from zoetrope.stages.presets import ModelRef

    motion = ModelRef("motion", "guoyww/animatediff-motion-adapter-v1-5-3", "guoyww/animatediff-motion-adapter-v1-5-3")
    painter = ModelRef("painter", "stabilityai/sd-turbo", "stabilityai/sd-turbo")
    with pytest.raises(UserError, match=why) as caught:
        check_fits(motion, adapter, painter, pipeline, unet)
    text = str(caught.value)
    assert "\n" not in text and "'guoyww/animatediff-motion-adapter-v1-5-3'" in text and "'stabilityai/sd-turbo'" in text
    assert "SD 1.5-family painters" in text
    check_fits(motion, SD_ADAPTER, painter, "StableDiffusionPipeline", SD_UNET)  # SD 1.5 itself fits


def test_an_adapter_of_other_widths_is_refused_on_the_tiny_painter(cpu, tmp_path):
    import torch
    from diffusers import MotionAdapter

    from zoetrope.stages.animatediff import load_animatediff

    torch.manual_seed(0)
    MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
                  motion_norm_num_groups=8, use_motion_mid_block=False).save_pretrained(tmp_path / "adapter")
    with pytest.raises(UserError, match=r"block_out_channels are \[32, 64\], the adapter's \[16, 32\]") as caught:
        load_animatediff(str(tmp_path / "adapter"), "tiny", cpu)
    assert "\n" not in str(caught.value) and "painter 'tiny'" in str(caught.value)


def test_a_missing_hub_adapter_is_one_line_at_once_offline(cpu, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from zoetrope.stages.animatediff import load_animatediff
    from zoetrope.stages.models import resolve
    from zoetrope.stages.presets import ANIMATEDIFF_REVISION

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, whatever this machine holds
    assert resolve("motion", "animatediff-v1-5-3").revision == ANIMATEDIFF_REVISION
    assert ANIMATEDIFF_REVISION is None or re.fullmatch(r"[0-9a-f]{40}", ANIMATEDIFF_REVISION)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        load_animatediff("animatediff-v1-5-3", "tiny", cpu)
    assert time.monotonic() - started < 5
    text = str(caught.value)
    assert "\n" not in text and text.startswith("cannot load motion 'guoyww/animatediff-motion-adapter-v1-5-3'")
    assert "HF_HUB_OFFLINE is set" in text and "models pull animatediff-v1-5-3" in text
