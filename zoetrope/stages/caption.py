"""Captioner: images in, one caption each (BLIP through transformers).

Beam search is deterministic and batched. Sampling draws from the global RNG, so each sampled caption runs
under its own seed inside `torch.random.fork_rng`: the same seed gives the same caption whatever the batch.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence

import torch
from PIL import Image

from zoetrope.settings.params import CaptionParams
from zoetrope.stages import per_item
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.presets import ModelRef

_repr = reprlib.Repr()
_repr.maxlist = 6


def _show(values) -> str:
    """A value for an error message, kept to one short line."""
    return _repr.repr(values)


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

    def check_inputs(self, images: list[Image.Image], params: CaptionParams, seeds: list[int] | None = None) -> None:
        """Refuse, before the processor runs, a call it would fail on obscurely or half-ignore. As diffusers'
        `check_inputs`: a one-line ValueError naming the argument and the value received."""
        if isinstance(images, Image.Image) or not isinstance(images, Sequence):
            what = "a single PIL image" if isinstance(images, Image.Image) else f"a {type(images).__name__}"
            raise ValueError(f"`images` must be a list of PIL images but is {what}; wrap it in a list.")
        if not images:
            raise ValueError("`images` is an empty list; pass at least one image to caption.")
        if params.mode not in ("beam", "sample"):
            raise ValueError(f"`params.mode` must be 'beam' or 'sample' but is {params.mode!r}.")
        if seeds is None:
            if params.mode == "sample":  # each sampled caption runs under its own seed
                raise ValueError(f"sampling captions (`params.mode`='sample') needs `seeds`, one seed per image, "
                                 f"but `seeds` is None for {len(images)} images.")
            return
        if isinstance(seeds, str) or not isinstance(seeds, Sequence):
            raise ValueError(f"`seeds` must be a list of ints but is a {type(seeds).__name__} ({_show(seeds)}); "
                             "wrap it in a list.")
        if len(seeds) != len(images):
            raise ValueError(f"got {len(images)} images but {len(seeds)} seeds (`seeds`={_show(seeds)}); "
                             "pass one seed per image.")

    def caption(self, images: list[Image.Image], params: CaptionParams, seeds: list[int] | None = None) -> list[str]:
        """One caption per image; `seeds` (one per image) are needed to sample and optional for beam search."""
        self.check_inputs(images, params, seeds)
        if params.mode == "beam":
            return self._generate(images, params)
        devices = [torch.device(self.plan.device).index or 0] if self.plan.device == "cuda" else []
        captions = []
        for image, seed in zip(images, seeds, strict=True):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                captions += self._generate([image], params)
        return captions
