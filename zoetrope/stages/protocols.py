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

from collections.abc import Iterator
from dataclasses import dataclass
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
    """What the film walk needs on top: embeddings to lerp, noise to slerp, and paint from both; how it decodes
    (part of the walk's call shape) and whether its calls may run side by side (CPU lanes)."""

    @property
    def plan(self) -> DevicePlan: ...

    @property
    def decodes_per_row(self) -> bool:
        """Latents are decoded one at a time (film/walk.py call_shape; it is in every frame key)."""
        ...

    def concurrent(self, params: PaintParams) -> bool:
        """Calls with `params` may run on several threads at once (stages/lanes.py)."""
        ...

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
        guidance_rows: list[float] | None = None,
        keep: int | None = None,
    ) -> list[Image.Image]: ...


# ------------------------------------------------------------------------------------------ video clips


@dataclass(frozen=True)
class ClipCondition:
    """Frames the clip must pass through: `images` (one still, or several consecutive frames such as the
    previous chunk's tail) placed from clip frame `frame` on, held with `strength` (1.0: exactly)."""

    frame: int
    images: tuple[Image.Image, ...]
    strength: float = 1.0


@dataclass(frozen=True)
class ClipRequest:
    """One call of a video model. `prompts` maps a clip frame to its prompt ({0: p} for one prompt; with more
    entries an engine that can travel reaches each prompt exactly at its frame, moving gradually between keys,
    and holds the last to the end; AnimateDiff can, LTX cannot). `frames` must be a count the
    engine takes (`ClipPainterLike.call_frames` of the frames wanted); the film engine trims the surplus."""

    prompts: dict[int, str]
    negative_prompt: str
    seed: int
    frames: int
    width: int
    height: int
    steps: int
    guidance: float
    fps: int
    conditions: tuple[ClipCondition, ...] = ()
    # Drift (motion) engine only: per call frame values of each motion parameter (zoom, angle, translate_x,
    # translate_y, strength; one value per frame of the call) and the colour reference for `match_first`.
    motion: dict[str, tuple[float, ...]] | None = None
    color_reference: Image.Image | None = None


@runtime_checkable
class ClipPainterLike(Protocol):
    """A video model behind one call: the film's ltx and animatediff engines use nothing else of it."""

    @property
    def ref(self) -> ModelRef: ...

    @property
    def identity(self) -> dict:
        """Everything about the loaded model that changes a frame: model refs (as_log) of every component,
        device, dtype, memory options that change pixels. Part of each chunk's cache key."""
        ...

    @property
    def max_frames(self) -> int:
        """The most frames one call may produce (a chunk); longer segments are continued in chunks."""
        ...

    @property
    def takes_conditions(self) -> bool:
        """Whether `ClipRequest.conditions` is honoured (LTX: yes; AnimateDiff: no, it raises)."""
        ...

    def call_frames(self, wanted: int) -> int:
        """The smallest frame count >= `wanted` that one call can produce (LTX: 8k+1)."""
        ...

    def paint_clip(self, request: ClipRequest) -> list[Image.Image]:
        """Exactly `request.frames` RGB frames of `request.width` x `request.height`; deterministic for equal
        requests on one device (explicit generator seeded with `request.seed`)."""
        ...


WAIT = object()  # what an Executor's task source returns when its next task waits on a result still in flight


@runtime_checkable
class Executor(Protocol):
    """Where a film's units are painted (film/engines/run.py): this process (`stages.lanes.LocalPool`) or Ray
    workers (`stages.cluster.WorkerPool`). The same tasks and the same `fn` run on either, so where a unit is
    painted never changes its frames."""

    lanes: int  # calls run side by side in this process (CPU lanes); 1 for Ray workers
    remote: bool  # results travel back from other processes (frames come as PNG bytes, encoded there)

    def ordered(self, next_task, fn) -> Iterator[tuple[tuple, object]]:
        """`fn(worker, *task)` for each task `next_task()` gives (None: no more; WAIT: ask again after the next
        result), yielded as (task, result) in task order. `worker` holds the models: `painter`, `clips`
        (engine -> clip painter) and `state` (a dict a callable keeps between calls)."""
        ...

    def put(self, value: object) -> object:
        """A value sent to the workers once however many tasks name it (`unbox` reads it there)."""
        ...


def unbox(value: object) -> object:
    """On a worker: what `Executor.put` stored (a Ray object reference is fetched; a local value is itself)."""
    if type(value).__name__ == "ObjectRef":
        import ray

        return ray.get(value)
    return value
