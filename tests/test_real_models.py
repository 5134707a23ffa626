"""Real-weight smoke tests (`slow`): the presets load from the Hugging Face cache and make sense.

Deselected by `scripts/test.sh` (`-m "not slow"`): weights cannot be downloaded on the CI machine. Run them
where the presets are cached (`run_loop.py models pull sd-turbo` and `blip-base` first), on a GPU or CPU:
`HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m slow tests/test_real_models.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plan():
    from zoetrope.stages.device import pick_device

    return pick_device()


def test_sd_turbo_paints_a_non_trivial_image_in_one_step(plan):
    from zoetrope.settings.params import PaintParams
    from zoetrope.stages.models import load_painter

    painter = load_painter("sd-turbo", plan)
    assert painter.ref.id == "stabilityai/sd-turbo" and painter.ref.revision  # the cached snapshot is pinned
    image = painter.paint(["a red apple on a white table"], params=PaintParams(steps=1, guidance=0.0),
                          seeds=[1])[0]
    pixels = np.asarray(image, np.float32)
    assert image.size == (512, 512) and pixels.std() > 10  # not black, not flat noise-free grey
    assert pixels[..., 0].mean() > pixels[..., 2].mean()  # a red apple: more red than blue overall


def test_blip_base_captions_a_picture_in_english(plan):
    from PIL import Image, ImageDraw

    from zoetrope.settings.params import CaptionParams
    from zoetrope.stages.models import load_captioner

    captioner = load_captioner("blip-base", plan)
    picture = Image.new("RGB", (384, 384), "white")
    ImageDraw.Draw(picture).ellipse((92, 92, 292, 292), fill="red")
    caption = captioner.caption([picture], CaptionParams(), seeds=[0])[0]
    assert caption and any(word in caption.lower() for word in ("red", "circle", "ball", "dot", "sphere"))
