"""Upscalers: the tiny x2 latent and x4 diffusers pipelines, tiling and its seams, seeds, and the load errors
(scale, offline, the spandrel extra). Images are small and steps few: the pipelines are real, the weights tiny."""

from __future__ import annotations

import importlib.util
import sys
import time
import types

import numpy as np
import pytest
import torch
from PIL import Image

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.stages.upscale import Upscaler, load_upscaler, tile_seed, tile_starts, tiled


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


@pytest.fixture(scope="module")
def x2(cpu):
    from zoetrope.stages.models import quiet_libraries

    quiet_libraries()
    return load_upscaler("tiny", 2, cpu)


@pytest.fixture(scope="module")
def x4(cpu):
    from zoetrope.stages.models import quiet_libraries

    quiet_libraries()
    return load_upscaler("tiny", 4, cpu)


def retiled(upscaler: Upscaler, tile: int, overlap: int) -> Upscaler:
    """The same loaded model with other tiles (no second load)."""
    return Upscaler(upscaler._backend, upscaler.plan, tile, overlap)


def direct(upscaler: Upscaler, image: Image.Image, seed: int, index: int, steps: int | None = None) -> np.ndarray:
    """One pipeline call on the whole of `image`, with tile `index`'s generator: float pixels in [0, 255]."""
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
    generator = torch.Generator("cpu").manual_seed(tile_seed(seed, index))
    out = upscaler._backend(tensor, "", generator, steps or upscaler.steps)
    return out[0].permute(1, 2, 0).numpy() * 255.0


# ------------------------------------------------------------------------------------------- the models


def test_tiny_upscalers_are_the_real_pipelines(x2, x4):
    from diffusers import StableDiffusionLatentUpscalePipeline, StableDiffusionUpscalePipeline

    assert isinstance(x2._backend.pipe, StableDiffusionLatentUpscalePipeline) and x2.scale == 2
    assert isinstance(x4._backend.pipe, StableDiffusionUpscalePipeline) and x4.scale == 4
    assert x2.ref.id == x4.ref.id == "tiny" and x2.ref.source != x4.ref.source
    assert x2.ref.revision == x4.ref.revision == "tiny-upscale-v1"


def test_identity_names_everything_that_changes_pixels(x2, x4):
    ident = x4.identity
    assert ident["upscaler"] == x4.ref.as_log() and ident["scale"] == 4 and ident["kind"] == "x4"
    assert {"tile", "overlap", "steps", "guidance", "noise_level", "device", "dtype", "tiling"} <= ident.keys()
    assert (ident["device"], ident["dtype"]) == ("cpu", "float32")
    assert x2.identity != x4.identity
    assert retiled(x4, 16, 4).identity != retiled(x4, 16, 8).identity != retiled(x4, 8, 4).identity


# ------------------------------------------------------------------------------------------- tiling


def test_one_tile_covering_the_image_equals_one_untiled_pipeline_call(x2):
    image = noise_image(64, 96, seed=1)
    (big,) = x2.upscale([image], seed=5, steps=1)  # the default 512 px tile covers it
    assert big.size == (128, 192) and big.mode == "RGB"
    assert np.array_equal(pixels(big), np.clip(direct(x2, image, 5, 0, steps=1).round(), 0, 255))
    assert np.ptp(pixels(big)) > 0  # not a flat image: the pipeline ran


def test_seams_are_linear_ramps_between_the_tiles_own_outputs(x4):
    """26x16 in 16 px tiles: tiles at x = 0 and 10 (any width works above a tile). Outside the overlap a pixel is
    its tile's own output; inside, the two tiles' outputs mixed with complementary linear weights."""
    image, seed = noise_image(26, 16, seed=2), 7
    up = retiled(x4, 16, 4)
    assert tile_starts(26, 16, 4) == [0, 10]
    (out,) = up.upscale([image], seed=seed)
    assert out.size == (104, 64)
    left = direct(up, image.crop((0, 0, 16, 16)), seed, 0)  # output px 0..63
    right = direct(up, image.crop((10, 0, 26, 16)), seed, 1)  # output px 40..103
    got = pixels(out)
    assert np.array_equal(got[:, :40], np.clip(left[:, :40].round(), 0, 255))
    assert np.array_equal(got[:, 64:], np.clip(right[:, 24:].round(), 0, 255))
    w = ((np.arange(24) + 0.5) / 24)[None, :, None]  # the right tile's weight across the overlap
    blend = (1 - w) * left[:, 40:] + w * right[:, :24]
    assert np.abs(got[:, 40:64] - np.clip(blend, 0, 255)).max() <= 1  # rounding only
    assert np.abs(left[:, 40:] - right[:, :24]).max() > 8  # the tiles differ there: the blend is not vacuous


@pytest.mark.parametrize("size, tile, overlap", [((40, 24), 16, 4), ((100, 36), 32, 16), ((130, 64), 64, 16),
                                                 ((124, 20), 64, 16), ((8, 8), 16, 4)])
def test_tiling_a_pointwise_upscale_changes_nothing(size, tile, overlap):
    """Weights form a partition of unity: a per-pixel upscaler (nearest) gives the same image tiled or not, also
    with uneven last tiles and where three tiles meet."""
    width, height = size
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))

    def nearest(piece, index):
        return piece.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    whole = nearest(image[None], 0)[0]
    assert torch.allclose(tiled(image, 2, tile, overlap, nearest), whole, atol=1e-6)
    for starts, length in ((tile_starts(width, tile, overlap), width), (tile_starts(height, tile, overlap), height)):
        assert starts[0] == 0 and starts[-1] == max(0, length - tile)
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_overlaps_blend_with_a_linear_ramp():
    """Tiles painted flat 0 and 1: across their overlap the result rises linearly from the one to the other."""
    image = torch.zeros(3, 8, 24)
    out = tiled(image, 1, 16, 8, lambda piece, index: torch.full_like(piece, float(index)))
    row = out[0, 0]
    assert torch.equal(row[:8], torch.zeros(8)) and torch.equal(row[16:], torch.ones(8))
    assert torch.allclose(row[8:16], (torch.arange(8) + 0.5) / 8)


# ------------------------------------------------------------------------------------------- seeds


def test_seeded_deterministic_and_independent_of_the_batch(x4):
    a, b = noise_image(24, 16, seed=3), noise_image(24, 16, seed=4)
    a1, b1 = x4.upscale([a, b], seed=11)
    (a2,) = x4.upscale([a], seed=11)
    (a3,) = x4.upscale([a], seed=12)
    assert a1.size == b1.size == (96, 64)
    assert np.array_equal(pixels(a1), pixels(a2))
    assert not np.array_equal(pixels(a1), pixels(a3))
    assert not np.array_equal(pixels(a1), pixels(b1))
    assert len({tile_seed(11, 0), tile_seed(11, 1), tile_seed(12, 0), tile_seed(12, 1)}) == 4


# ------------------------------------------------------------------------------------------- bad input


def test_check_inputs_name_the_argument_and_value(x2):
    with pytest.raises(ValueError, match=r"non-empty list .* but is \[\]"):
        x2.upscale([])
    with pytest.raises(ValueError, match="share one size but have 64x64, 96x64"):
        x2.upscale([noise_image(64, 64), noise_image(96, 64)])
    with pytest.raises(ValueError, match=r"sides under the tile \(512 px\) have to be multiples of 32 px of at least "
                                         "64 px for upscaler 'tiny' x2 but are 72x64"):
        x2.upscale([noise_image(72, 64)])
    with pytest.raises(ValueError, match="but are 32x32"):
        x2.upscale([noise_image(32, 32)])
    with pytest.raises(ValueError, match="RGB PIL images but one is a RGBA image"):
        x2.upscale([noise_image(64, 64).convert("RGBA")])
    with pytest.raises(ValueError, match="`steps` has to be a positive int but is 0"):
        x2.upscale([noise_image(64, 64)], steps=0)
    with pytest.raises(ValueError, match="`tile` has to be a multiple of 32 of at least 64 .* but is 48"):
        retiled(x2, 48, 8)
    with pytest.raises(ValueError, match="`overlap` has to be from 0 to half the tile"):
        retiled(x2, 64, 40)


def test_wrong_scale_is_one_line_naming_both(cpu, x4):
    for spec, scale, words in (("sd-x4-upscaler", 2, ("x4", "scale is 2")),
                               ("sd-x2-latent-upscaler", 4, ("x2", "scale is 4")),
                               (x4.ref.source, 2, ("StableDiffusionUpscalePipeline", "x4", "scale is 2"))):
        with pytest.raises(UserError) as info:
            load_upscaler(spec, scale, cpu)
        assert not isinstance(info.value, ModelLoadError) and "\n" not in str(info.value)
        assert all(word in str(info.value) for word in words), str(info.value)
    with pytest.raises(UserError, match=r"upscale.scale: must be 2 or 4, not 3"):
        load_upscaler("tiny", 3, cpu)


def test_offline_missing_hub_id_is_one_model_load_error_at_once(cpu):
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:  # HF_HUB_OFFLINE=1 (conftest) and not cached
        load_upscaler("nobody-zoetrope/no-such-upscaler", 2, cpu)
    message = str(info.value)
    assert time.monotonic() - start < 5
    assert "\n" not in message and "cannot load upscaler 'nobody-zoetrope/no-such-upscaler'" in message
    assert "HF_HUB_OFFLINE is set" in message


# ------------------------------------------------------------------------------------------- spandrel


def test_weights_file_without_spandrel_is_one_line_saying_why(cpu, tmp_path, monkeypatch):
    weights = tmp_path / "4x-UltraSharp.pth"
    weights.write_bytes(b"not really weights")
    if importlib.util.find_spec("spandrel") is None:
        reason = "No module named 'spandrel'"
    else:  # where the extra is installed, hide it: the message is what matters here
        monkeypatch.setitem(sys.modules, "spandrel", None)
        reason = "spandrel"
    with pytest.raises(UserError) as info:
        load_upscaler(str(weights), 4, cpu)
    message = str(info.value)
    assert message.startswith(f"{weights}: ESRGAN-family upscalers need spandrel (.venv/bin/pip install -e '.[esrgan]'), "
                              "which needs torchvision: ")
    assert reason in message and "\n" not in message
    with pytest.raises(UserError, match="no such upscaler weights file"):
        load_upscaler(str(tmp_path / "missing.safetensors"), 4, cpu)


@pytest.fixture
def fake_spandrel(monkeypatch):
    """A stand-in for spandrel's documented API (ModelLoader().load_from_file -> ImageModelDescriptor with
    scale, channels, supports_half, to(), eval(), __call__ on (1, 3, H, W) in [0, 1]) around nearest upscaling."""
    module = types.ModuleType("spandrel")

    class ImageModelDescriptor:
        architecture = types.SimpleNamespace(name="ESRGAN")
        input_channels = output_channels = 3
        supports_half = supports_bfloat16 = True

        def __init__(self, scale):
            self.scale, self.device, self.calls = scale, torch.device("cpu"), []

        def to(self, device, dtype):
            self.dtype = dtype
            return self

        def eval(self):
            return self

        def __call__(self, image):
            self.calls.append(tuple(image.shape))
            return image.repeat_interleave(self.scale, dim=2).repeat_interleave(self.scale, dim=3)

    class ModelLoader:
        def __init__(self, device=None):
            pass

        def load_from_file(self, path):
            return ImageModelDescriptor(4 if "4x" in path.name else 2)

    module.ModelLoader, module.ImageModelDescriptor = ModelLoader, ImageModelDescriptor
    monkeypatch.setitem(sys.modules, "spandrel", module)
    return module


def test_spandrel_models_tile_and_check_their_scale(cpu, tmp_path, fake_spandrel):
    weights = tmp_path / "4x-esrgan.pth"
    weights.write_bytes(b"weights")
    with pytest.raises(UserError, match=r"4x-esrgan.pth: this ESRGAN model upscales x4, but upscale.scale is 2"):
        load_upscaler(str(weights), 2, cpu)
    up = load_upscaler(str(weights), 4, cpu, tile=32, overlap=8)
    image = noise_image(40, 24)
    (out,) = up.upscale([image], prompt="ignored", seed=3)
    assert out.size == (160, 96) and np.array_equal(pixels(out), pixels(image.resize((160, 96), Image.NEAREST)))
    assert up._backend.model.calls == [(1, 3, 24, 32), (1, 3, 24, 32)]
    assert up.identity["kind"] == "spandrel" and up.identity["architecture"] == "ESRGAN"
    assert up.ref.weights_hash and up.identity["sha256"].startswith(up.ref.weights_hash)
