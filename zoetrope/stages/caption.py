"""Captioner: images in, one caption each (BLIP through transformers).

Beam search is deterministic and batched. Sampling draws from the global RNG, so each sampled caption runs
under its own seed inside `torch.random.fork_rng`: the same seed gives the same caption whatever the batch.
"""

from __future__ import annotations

import torch
from PIL import Image

from zoetrope.settings.params import CaptionParams
from zoetrope.stages import per_item
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.presets import ModelRef


class Captioner:
    def __init__(self, model, processor, ref: ModelRef, plan: DevicePlan):
        self.model = model
        self.processor = processor
        self.ref = ref
        self.plan = plan
        per_item.install(model)

    @torch.inference_mode()
    def _generate(self, images: list[Image.Image], params: CaptionParams) -> list[str]:
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.plan.device, self.plan.dtype)
        with per_item.active(items=len(images)):  # a caption must not depend on the other images in its batch
            out = self.model.generate(pixel_values=pixels, **params.generate_kwargs())
        return [c.strip() for c in self.processor.batch_decode(out, skip_special_tokens=True)]

    def caption(self, images: list[Image.Image], params: CaptionParams, seeds: list[int] | None = None) -> list[str]:
        if params.mode == "beam":
            return self._generate(images, params)
        if seeds is None or len(seeds) != len(images):
            raise ValueError(f"sampling captions needs one seed per image, got {seeds!r} for {len(images)} images.")
        devices = [torch.device(self.plan.device).index or 0] if self.plan.device == "cuda" else []
        captions = []
        for image, seed in zip(images, seeds, strict=True):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                captions += self._generate([image], params)
        return captions
