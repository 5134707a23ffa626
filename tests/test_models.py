"""Tiny real pipelines (diffusers + transformers classes with random weights), device choice, load errors."""

import numpy as np
import pytest
import torch

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.settings.params import CaptionParams, PaintParams
from zoetrope.stages.device import pick_device
from zoetrope.stages.models import load_captioner, load_painter, resolve
from zoetrope.stages.presets import PRESETS, TINY, cache_dir

SMALL = PaintParams(steps=2, width=64, height=64)


def test_tiny_models_are_real_library_classes_loaded_from_disk(tiny_painter, tiny_captioner):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    from transformers import BlipForConditionalGeneration

    assert isinstance(tiny_painter.text2img, StableDiffusionPipeline)
    assert isinstance(tiny_painter.img2img, StableDiffusionImg2ImgPipeline)
    assert isinstance(tiny_captioner.model, BlipForConditionalGeneration)
    assert tiny_painter.ref.id == TINY and (cache_dir() / "tiny-v1" / "painter" / "model_index.json").is_file()
    assert tiny_painter.text2img.unet.device.type == "cpu" and tiny_painter.text2img.unet.dtype == torch.float32


def test_text_to_image_is_seeded_per_item(tiny_painter):
    a, b = tiny_painter.paint(["a red boat", "a red boat"], params=SMALL, seeds=[1, 2])
    (a_again,) = tiny_painter.paint(["a red boat"], params=SMALL, seeds=[1])
    assert a.size == (64, 64) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(a_again))  # same seed, same image, alone or in a batch
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_image_to_image_uses_strength(tiny_painter):
    (start,) = tiny_painter.paint(["a house"], params=SMALL, seeds=[3])
    params = PaintParams(steps=4, width=64, height=64, strength=0.5)
    (x,) = tiny_painter.paint(["a house"], params=params, seeds=[4], init_images=[start])
    (y,) = tiny_painter.paint(["a house"], params=params, seeds=[4], init_images=[start])
    assert np.array_equal(np.asarray(x), np.asarray(y)) and x.size == (64, 64)


def test_schedulers_and_non_latin_prompts(tiny_painter):
    for name in ("euler", "dpm++", "ddim"):
        params = PaintParams(steps=2, width=64, height=64, scheduler=name)
        (image,) = tiny_painter.paint(["שלום עולם 猫が座っている"], params=params, seeds=[0])
        assert image.size == (64, 64)
    assert tiny_painter.count_tokens("a cat " * 100) > tiny_painter.token_limit == 77


def test_painter_check_inputs(tiny_painter):
    with pytest.raises(ValueError, match="divisible by 8 but are 60 and 64"):
        tiny_painter.paint(["x"], params=PaintParams(width=64, height=60), seeds=[0])
    with pytest.raises(ValueError, match="1 x 0.5 gives none"):
        tiny_painter.paint(["x"], params=PaintParams(steps=1, width=64, height=64, strength=0.5), seeds=[0],
                           init_images=[tiny_painter.paint(["x"], params=SMALL, seeds=[0])[0]])
    with pytest.raises(ValueError, match="1 prompts but 2 seeds"):
        tiny_painter.paint(["x"], params=SMALL, seeds=[0, 1])


def test_captions_are_batched_and_seeded(tiny_painter, tiny_captioner):
    images = tiny_painter.paint(["a", "b"], params=SMALL, seeds=[5, 6])
    beam = CaptionParams(max_length=12)
    batch = tiny_captioner.caption(images, beam)
    assert batch == [tiny_captioner.caption([im], beam)[0] for im in images] and all(batch)
    sample = CaptionParams(mode="sample", max_length=12)
    assert tiny_captioner.caption(images, sample, seeds=[1, 2]) == tiny_captioner.caption(images, sample, seeds=[1, 2])
    assert tiny_captioner.caption(images[:1], sample, seeds=[1]) == tiny_captioner.caption(images, sample, seeds=[1, 2])[:1]
    with pytest.raises(ValueError, match="one seed per image"):
        tiny_captioner.caption(images, sample)


def test_presets_and_resolution(tmp_path):
    assert PRESETS["sd-turbo"].repo_id == "stabilityai/sd-turbo"
    assert PRESETS["blip-base"].repo_id == "Salesforce/blip-image-captioning-base"
    assert {"sdxl-turbo", "sd15", "blip-large"} <= set(PRESETS)
    assert resolve("painter", str(tmp_path)).source == str(tmp_path.resolve())
    assert resolve("painter", "someone/model", "abc123").revision == "abc123"
    with pytest.raises(UserError, match="'blip-base' is a captioner preset"):
        resolve("painter", "blip-base")
    with pytest.raises(UserError, match="not a preset"):
        resolve("painter", "./no/such/folder")


def test_unloadable_models_say_what_to_do(tmp_path, cpu):
    with pytest.raises(ModelLoadError) as info:  # offline (HF_HUB_OFFLINE=1) and not cached
        load_painter("sd-turbo", cpu)
    message = str(info.value)
    assert "models pull sd-turbo" in message and "--models tiny" in message and "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load captioner"):
        load_captioner(str(tmp_path / "empty"), cpu)


def test_device_plan_on_cpu():
    plan = pick_device("cpu")
    assert plan.device == "cpu" and plan.dtype == torch.float32
    assert pick_device("cuda", half="bf16").dtype == torch.bfloat16


def test_asking_for_quiet_imports_no_model_library():
    """`quiet_libraries()` comes before a load (loop, render, inspect); it must not cost the seconds of importing
    diffusers before the loader has found out that the model cannot be had (offline, not cached)."""
    import subprocess
    import sys

    code = ("import sys; from zoetrope.stages.models import quiet_libraries; quiet_libraries(); "
            "print(sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr

