"""The narrow contracts the rooms above rely on, so a fake (or a wrapper) can stand in for a real stage.

What each consumer really touches, and no more:

- `CaptionerLike`: the loop (chain, multichain's gate) and replay call `caption`; run headers read `ref`.
- `PainterLike`: the loop paints by prompts and seeds (text-to-image, or image-to-image from `init_images`),
  checks prompt length against `count_tokens`/`token_limit`, and logs `ref`. The fakes in tests/fakes.py and
  the loop's wrappers (GatedPainter, GuardedPainter) are PainterLike.
- `WalkPainterLike`: the film walk (and rows.py's memory probe) also encodes prompts once, draws each
  keyframe's noise, paints from embeddings and latents, and keys its frame cache on `plan`. Only the real
  Painter is one; a loop fake need not be. (Latent channels and the VAE's scale factor stay inside `noise`:
  nothing above the stages reads them.)

Torch-free at import (the tensor and device types are for type checkers only), so settings-level code and
tests can import the contracts without loading a framework. `runtime_checkable` lets a test or an assertion
ask `isinstance(x, PainterLike)`; that checks that the members exist, not their signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from zoetrope.settings.params import CaptionParams, PaintParams
    from zoetrope.stages.device import DevicePlan
    from zoetrope.stages.presets import ModelRef


@runtime_checkable
class CaptionerLike(Protocol):
    """Images in, one caption each; `seeds` (one per image) make sampled captions reproducible."""

    @property
    def ref(self) -> ModelRef: ...

    def caption(
        self, images: list[Image.Image], params: CaptionParams, seeds: list[int] | None = None
    ) -> list[str]: ...


@runtime_checkable
class PainterLike(Protocol):
    """What the loop needs: paint by prompts and seeds, count prompt tokens against the encoder's limit."""

    @property
    def ref(self) -> ModelRef: ...

    @property
    def token_limit(self) -> int: ...

    def count_tokens(self, prompt: str) -> int: ...

    def paint(
        self,
        prompts: list[str],
        *,
        params: PaintParams,
        seeds: list[int],
        negative_prompts: list[str] | None = None,
        init_images: list[Image.Image] | None = None,
    ) -> list[Image.Image]: ...


@runtime_checkable
class WalkPainterLike(PainterLike, Protocol):
    """What the film walk needs on top: embeddings to lerp, noise to slerp, and paint from both."""

    @property
    def plan(self) -> DevicePlan: ...

    def encode(
        self, prompts: list[str], negative_prompts: list[str] | None, guidance: float
    ) -> dict[str, torch.Tensor]: ...

    def noise(self, seeds: list[int], width: int, height: int) -> torch.Tensor: ...

    def paint(
        self,
        prompts: list[str] | None = None,
        *,
        params: PaintParams,
        seeds: list[int] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: dict[str, torch.Tensor] | None = None,
        negative_prompts: list[str] | None = None,
        init_images: list[Image.Image] | None = None,
    ) -> list[Image.Image]: ...
