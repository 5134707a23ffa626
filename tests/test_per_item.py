"""Per-item kernels: a loop image or caption is the same alone and inside any batch."""

import numpy as np
import pytest
import torch
from PIL import Image

from zoetrope.settings.params import CaptionParams, PaintParams
from zoetrope.stages import per_item

PROMPTS, SEEDS = ["a lighthouse in fog", "a red house", "two cats", "x"], [11, 7, 9, 3]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


@pytest.mark.parametrize("guidance", [0.0, 4.0])  # 4.0: classifier-free guidance doubles every call
def test_text_to_image_rows_equal_lone_images(tiny_painter, guidance):
    params = PaintParams(steps=2, width=256, height=256, guidance=guidance)
    batch = tiny_painter.paint(PROMPTS, params=params, seeds=SEEDS)
    for i in (0, 2):
        alone = tiny_painter.paint([PROMPTS[i]], params=params, seeds=[SEEDS[i]])[0]
        assert np.array_equal(pixels(alone), pixels(batch[i])), i


def test_image_to_image_rows_equal_lone_images(tiny_painter):
    starts = tiny_painter.paint(PROMPTS[:3], params=PaintParams(steps=1, width=128, height=128), seeds=SEEDS[:3])
    params = PaintParams(steps=4, width=128, height=128, strength=0.5)
    batch = tiny_painter.paint(PROMPTS[:3], params=params, seeds=SEEDS[:3], init_images=starts)
    alone = tiny_painter.paint([PROMPTS[1]], params=params, seeds=[SEEDS[1]], init_images=[starts[1]])[0]
    assert np.array_equal(pixels(alone), pixels(batch[1]))


def test_captions_and_their_scores_equal_lone_ones(tiny_painter, tiny_captioner):
    images = tiny_painter.paint(PROMPTS, params=PaintParams(steps=1, width=128, height=128), seeds=SEEDS)
    model, processor = tiny_captioner.model, tiny_captioner.processor
    kwargs = CaptionParams(mode="beam").generate_kwargs() | dict(output_scores=True, return_dict_in_generate=True)

    def generate(ims):
        with torch.inference_mode(), per_item.active(items=len(ims)):
            return model.generate(pixel_values=processor(images=ims, return_tensors="pt")["pixel_values"], **kwargs)

    batch, alone = generate(images), generate(images[:1])
    beams = alone.scores[0].shape[0]
    assert all(torch.equal(a, b[:beams]) for a, b in zip(alone.scores, batch.scores, strict=False))
    assert torch.equal(alone.sequences[0], batch.sequences[0])


def test_layers_split_by_row_or_by_item_and_only_when_active():
    calls = []
    layer = torch.nn.Linear(4, 2)
    forward = layer.forward
    layer.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    per_item.install(layer)
    per_item.install(layer)  # idempotent: no second wrapper
    x = torch.randn(4, 4)
    layer(x)
    with per_item.active():
        by_row = layer(x)
    with per_item.active(items=2):  # two items of two consecutive rows (beams)
        by_item = layer(x)
    with per_item.active(items=1):  # one item: its call is not split
        layer(x)
    assert calls == [4, 1, 1, 1, 1, 2, 2, 4]
    assert torch.allclose(by_row, forward(x)) and torch.allclose(by_item, forward(x))


def test_layers_are_wrapped_only_once_a_per_item_call_is_made(cpu):
    """A film render never enters active(): its models keep their own forwards, no wrapper in any layer."""
    from zoetrope.stages.models import load_painter

    painter = load_painter("tiny", cpu)
    unet = painter.text2img.unet
    params = PaintParams(steps=1, width=64, height=64)
    embeds = painter.encode(["a red moon"], None, 0.0)
    painter.paint(params=params, prompt_embeds=embeds, latents=painter.noise([1], 64, 64))  # a walk's call
    assert not per_item.is_wrapped(unet) and not per_item.is_wrapped(painter.text2img.vae)
    painter.paint(["a red moon"], params=params, seeds=[1])  # a loop's call: per-item from here on
    assert per_item.is_wrapped(unet) and per_item.is_wrapped(painter.text2img.vae)


def test_batched_turns_splitting_off_inside_active():
    calls = []
    layer = torch.nn.Linear(4, 2)
    forward = layer.forward
    layer.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    per_item.install(layer)
    x = torch.randn(3, 4)
    with per_item.batched(), per_item.active():
        layer(x)
    with per_item.active():
        layer(x)
    assert calls == [3, 1, 1, 1]
