"""Fakes with the Captioner/Painter contracts: fast, deterministic, and scriptable (attractors, failures).

They are `CaptionerLike` and `PainterLike` (zoetrope.stages.protocols), the contracts the loop relies on;
test_stage_inputs checks that, so a fake cannot drift from what the real stages offer. They paint by prompts
and seeds only: the walk's embeddings and latents (`WalkPainterLike`) need the real tiny Painter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from zoetrope.settings.params import CaptionParams, PaintParams
from zoetrope.stages.presets import ModelRef


def _image_key(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()[:8]


@dataclass
class FakeCaptioner:
    """Captions an image by a script `(image_key, mode, seed) -> caption`; records every call."""

    script: Callable[[str, str, int | None], str] = lambda key, mode, seed: f"a picture numbered {key}"
    calls: list[tuple[str, str, int | None]] = field(default_factory=list)
    ref: ModelRef = ModelRef("captioner", "fake-captioner", "fake")

    def caption(self, images: list[Image.Image], params: CaptionParams, seeds: list[int] | None = None) -> list[str]:
        seeds = seeds or [None] * len(images)
        out = []
        for image, seed in zip(images, seeds, strict=True):
            key = _image_key(image)
            self.calls.append((key, params.mode, seed))
            out.append(self.script(key, params.mode, seed))
        return out


@dataclass
class FakePainter:
    """Paints a flat colour derived from (prompt, seed, init image); records every call."""

    calls: list[dict] = field(default_factory=list)
    token_limit: int = 77
    ref: ModelRef = ModelRef("painter", "fake-painter", "fake")

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split()) + 2

    def paint(self, prompts: list[str], *, params: PaintParams, seeds: list[int],
              negative_prompts: list[str] | None = None, init_images: list[Image.Image] | None = None,
              **_) -> list[Image.Image]:
        self.calls.append({"prompts": list(prompts), "seeds": list(seeds), "params": params,
                           "init": [_image_key(i) for i in init_images] if init_images else None})
        images = []
        for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
            basis = f"{prompt}|{seed}|{self.calls[-1]['init'][i] if init_images else ''}"
            rgb = np.frombuffer(hashlib.sha256(basis.encode()).digest()[:3], dtype=np.uint8)
            images.append(Image.fromarray(np.broadcast_to(rgb, (params.height, params.width, 3)).copy()))
        return images
