"""Painter: prompts (or prompt embeddings) and seeds (or noise latents) in, images out.

One contract for the loop and the walk. Noise is drawn on the CPU from one `torch.Generator` per item, so a
seed means the same image on every device. Items named by seeds (the loop's) run under `per_item.active()`, so
an item's image does not depend on what else is in its batch either; walks pad to a fixed batch instead.
"""

from __future__ import annotations

import copy
import logging
import reprlib
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import torch
from PIL import Image

from zoetrope.settings.params import SCHEDULERS, PaintParams
from zoetrope.stages import per_item
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.lanes import check_cancelled
from zoetrope.stages.presets import ModelRef

log = logging.getLogger(__name__)

# Non-ancestral first: ancestral samplers add fresh noise every step, which makes walks flicker.

PromptEmbeds = dict[str, torch.Tensor]


_repr = reprlib.Repr()
_repr.maxlist, _repr.maxstring = 6, 60


def _show(values) -> str:
    """A value for an error message, kept to one short line (long lists and prompts are elided)."""
    return _repr.repr(values)


def _shapes(embeds: PromptEmbeds) -> str:
    return "{" + ", ".join(f"{name!r}: {tuple(t.shape)}" for name, t in embeds.items()) + "}"


def _listed(name: str, value) -> Sequence:
    """`value` if it is a list of items; a bare string (or seed, or image) would be counted wrongly, so refuse it."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"`{name}` must be a list with one entry per image but is a {type(value).__name__} "
                         f"({_show(value)}); wrap it in a list.")
    return value


def unit_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """Unit-variance noise, one CPU generator per seed: the pipeline scales it by `init_noise_sigma`."""
    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])


class Painter:
    def __init__(self, text2img, img2img, ref: ModelRef, plan: DevicePlan):
        self.text2img = text2img
        self.img2img = img2img
        self.ref = ref
        self.plan = plan
        self._scheduler_name: str | None = None
        self._base_scheduler_config = text2img.scheduler.config
        for component in text2img.components.values():
            if isinstance(component, torch.nn.Module):
                per_item.install(component)

    @property
    def token_limit(self) -> int:
        return int(self.text2img.tokenizer.model_max_length)

    @property
    def latent_channels(self) -> int:
        return int(self.text2img.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        return int(self.text2img.vae_scale_factor)

    def count_tokens(self, prompt: str) -> int:
        """Tokens the text encoder would see, begin/end markers included."""
        return len(self.text2img.tokenizer(prompt, truncation=False).input_ids)

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        f = self.vae_scale_factor
        return (self.latent_channels, height // f, width // f)

    def noise(self, seeds: list[int], width: int, height: int) -> torch.Tensor:
        return unit_noise(seeds, self.latent_shape(width, height))

    def check_inputs(
        self,
        prompts: list[str] | None = None,
        *,
        params: PaintParams,
        seeds: list[int] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: PromptEmbeds | None = None,
        negative_prompts: list[str] | None = None,
        init_images: list[Image.Image] | None = None,
    ) -> int:
        """Refuse, before any work, a call the pipelines would half-ignore or fail on deep inside; returns the
        number of images. As diffusers' `check_inputs`: a one-line ValueError naming the argument and its value.
        """
        f = self.vae_scale_factor  # the latents are 1/f of the image on each side; the decoder multiplies back
        if params.width <= 0 or params.height <= 0 or params.width % f or params.height % f:
            raise ValueError(f"`params.height` and `params.width` have to be positive and divisible by {f} but are "
                             f"{params.height} and {params.width}: the VAE scales images by {f}.")
        if params.scheduler not in SCHEDULERS:
            raise ValueError(f"`params.scheduler` must be one of {sorted(SCHEDULERS)} but is {params.scheduler!r}.")
        if params.strength is not None:
            if not 0.0 < params.strength <= 1.0:
                raise ValueError(f"`params.strength` must be in (0, 1] but is {params.strength}.")
            if int(params.steps * params.strength) < 1:
                raise ValueError(f"image-to-image runs int(steps x strength) steps, but {params.steps} x "
                                 f"{params.strength} gives none: raise `params.steps` or `params.strength`.")

        # What to paint: prompts xor their embeddings
        if prompt_embeds is not None and not isinstance(prompt_embeds, Mapping):
            raise ValueError(f"`prompt_embeds` must be a dict of tensors, as Painter.encode returns, but is a "
                             f"{type(prompt_embeds).__name__} of shape {tuple(getattr(prompt_embeds, 'shape', ()))}.")
        if prompts is not None and prompt_embeds is not None:
            raise ValueError(f"`prompts` and `prompt_embeds` were both given (`prompts`={_show(prompts)}, "
                             f"`prompt_embeds` {_shapes(prompt_embeds)}); pass one of them.")
        if prompts is None and prompt_embeds is None:
            raise ValueError("`prompts` and `prompt_embeds` are both None; pass one of them.")
        if prompts is not None:
            n, what = len(_listed("prompts", prompts)), "prompts"
        else:
            if "prompt_embeds" not in prompt_embeds:
                raise ValueError(f"`prompt_embeds` has no 'prompt_embeds' tensor (it holds {_shapes(prompt_embeds)}); "
                                 "make it with Painter.encode.")
            rows = {name: int(t.shape[0]) for name, t in prompt_embeds.items()}
            if len(set(rows.values())) > 1:
                raise ValueError(f"`prompt_embeds` tensors disagree on their rows ({_shapes(prompt_embeds)}); "
                                 "pass one row per image in each.")
            n, what = rows["prompt_embeds"], "rows of `prompt_embeds`"
        if n == 0:
            empty = "`prompts` is an empty list" if prompts is not None else "`prompt_embeds` has 0 rows"
            raise ValueError(f"{empty}; pass at least one image's worth.")
        if negative_prompts is not None:
            if prompt_embeds is not None:
                raise ValueError(f"`negative_prompts` ({_show(negative_prompts)}) cannot go with `prompt_embeds`, "
                                 "which would ignore them; put negative_prompt_embeds in `prompt_embeds` (Painter.encode does).")
            if len(_listed("negative_prompts", negative_prompts)) != n:
                raise ValueError(f"got {n} {what} but {len(negative_prompts)} negative prompts "
                                 f"(`negative_prompts`={_show(negative_prompts)}); pass one per prompt.")

        # Where to start: seeds xor their noise
        if seeds is not None and latents is not None:
            raise ValueError(f"`seeds` and `latents` were both given ({len(_listed('seeds', seeds))} seeds, latents "
                             f"of shape {tuple(latents.shape)}); pass one of them.")
        if seeds is None and latents is None:
            raise ValueError("`seeds` and `latents` are both None; pass `seeds` (one per image) or `latents`.")
        if seeds is not None and len(_listed("seeds", seeds)) != n:
            raise ValueError(f"got {n} {what} but {len(seeds)} seeds (`seeds`={_show(seeds)}); "
                             "pass one seed per image.")
        if latents is not None:
            if int(latents.shape[0]) != n:
                raise ValueError(f"got {n} {what} but `latents` of shape {tuple(latents.shape)}, "
                                 f"{latents.shape[0]} rows; pass one row of latents per image.")
            want = self.latent_shape(params.width, params.height)
            if tuple(latents.shape[1:]) != want:
                raise ValueError(f"`latents` of shape {tuple(latents.shape)} do not fit a {params.width}x"
                                 f"{params.height} image, which needs rows of shape {want}; make them with Painter.noise.")

        # Image-to-image: one start per image, noise from seeds, and a strength
        if init_images is not None:
            if len(_listed("init_images", init_images)) != n:
                raise ValueError(f"got {n} {what} but {len(init_images)} init images (`init_images`); "
                                 "pass one init image per prompt.")
            if latents is not None:
                raise ValueError(f"`init_images` and `latents` were both given (latents of shape "
                                 f"{tuple(latents.shape)}); image-to-image draws its noise from `seeds`: pass those.")
            if params.strength is None:
                raise ValueError("`init_images` were given but `params.strength` is None; image-to-image needs "
                                 "a strength in (0, 1].")
        return n

    def use_scheduler(self, name: str) -> None:
        """Swap the scheduler on both pipelines (they share weights, not schedulers); a no-op when unchanged."""
        if name == self._scheduler_name:
            return
        import diffusers

        cls_name, overrides = SCHEDULERS[name]
        scheduler = getattr(diffusers, cls_name).from_config(self._base_scheduler_config, **overrides)
        self.text2img.scheduler = scheduler
        self.img2img.scheduler = scheduler
        self._scheduler_name = name

    @torch.inference_mode()
    def encode(self, prompts: list[str], negative_prompts: list[str] | None, guidance: float) -> PromptEmbeds:
        """Prompt embeddings as keyword arguments for `paint`; every tensor in it can be lerped."""
        pipe = self.text2img
        cfg = guidance > 1.0
        if hasattr(pipe, "text_encoder_2"):  # SDXL: two encoders and pooled embeddings
            pe, ne, pp, npp = pipe.encode_prompt(
                prompts, device=self.plan.device, num_images_per_prompt=1,
                do_classifier_free_guidance=cfg, negative_prompt=negative_prompts,
            )
            embeds = {"prompt_embeds": pe, "pooled_prompt_embeds": pp}
            if cfg:
                embeds |= {"negative_prompt_embeds": ne, "negative_pooled_prompt_embeds": npp}
            return embeds
        pe, ne = pipe.encode_prompt(
            prompts, self.plan.device, 1, cfg, negative_prompt=negative_prompts
        )
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne} if cfg else {"prompt_embeds": pe}

    @torch.inference_mode()
    def paint(
        self,
        prompts: list[str] | None = None,
        *,
        params: PaintParams,
        seeds: list[int] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: PromptEmbeds | None = None,
        negative_prompts: list[str] | None = None,
        init_images: list[Image.Image] | None = None,
        guidance_rows: list[float] | None = None,
        keep: int | None = None,
    ) -> list[Image.Image]:
        """Text-to-image, or image-to-image when `init_images` is given (then `params.strength` applies).
        `guidance_rows`: one guidance per latent row (a film's guidance schedule), with `params.guidance` the
        highest of them (it decides whether guidance runs at all). `keep`: decode only the first `keep` rows
        (a walk's padding rows are not decoded; see `decode`); where the pipeline decodes, all are."""
        # 1. Check inputs
        self.check_inputs(prompts, params=params, seeds=seeds, latents=latents, prompt_embeds=prompt_embeds,
                          negative_prompts=negative_prompts, init_images=init_images)
        self.use_scheduler(params.scheduler)
        text = {"prompt": prompts} if prompt_embeds is None else dict(prompt_embeds)
        if prompt_embeds is None and params.guidance > 1.0 and negative_prompts is not None:
            text["negative_prompt"] = negative_prompts
        common = dict(num_inference_steps=params.steps, guidance_scale=params.guidance, output_type="pil", **text)

        # 2. Image-to-image: the pipeline draws its noise from our per-item CPU generators
        if init_images is not None:
            images = [im.convert("RGB").resize((params.width, params.height), Image.LANCZOS) for im in init_images]
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            with per_item.active():
                return self.img2img(image=images, strength=params.strength, generator=generators, **common).images

        # 3. Text-to-image: unit-variance noise in (the pipeline scales it by the scheduler's init sigma)
        seeded = latents is None
        if seeded:
            latents = self.noise(seeds, params.width, params.height)
        latents = latents.to(self.plan.device, self.plan.dtype)
        if guidance_rows is not None and len(guidance_rows) != latents.shape[0]:
            raise ValueError(f"`guidance_rows` needs one value per latent row ({latents.shape[0]}) but got "
                             f"{len(guidance_rows)}: {_show(guidance_rows)}.")
        if guidance_rows is not None:
            common["guidance_scale"] = RowGuidance(params.guidance, guidance_rows)
        per_row = self.decodes_per_row and not seeded  # seeded calls (the loop's) decode as logged chains did
        with per_item.active() if seeded else nullcontext():
            out = self._call_view()(latents=latents, width=params.width, height=params.height,
                                    callback_on_step_end=_stop_if_cancelled,
                                    **common | {"output_type": "latent" if per_row else "pil"}).images
        return self.decode(out, keep) if per_row else out

    @property
    def decodes_per_row(self) -> bool:
        """Whether `paint` decodes its latents one at a time (`decode`): Stable Diffusion 1/2 pipelines, whose
        decode is the VAE and the image processor alone. A latent decoded alone does not depend on its batch
        (a kernel's sums may), and the VAE at full resolution holds one image's activations, not a call's."""
        from diffusers import StableDiffusionPipeline

        return type(self.text2img) is StableDiffusionPipeline

    def concurrent(self, params: PaintParams) -> bool:
        """Whether text-to-image calls with prompt embeddings may run side by side on threads (stages/lanes.py):
        each call runs on a view of the pipeline of its own (`_call_view`). A compiled UNet (`--compile`) runs
        one call at a time: its graphs are built on first use, once. The scheduler is swapped in here, before
        any lane starts."""
        self.use_scheduler(params.scheduler)
        return not hasattr(self.text2img.unet, "_orig_mod")

    def _call_view(self):
        """The text-to-image pipeline for one call: a shallow copy sharing every model, with a scheduler of its
        own. `__call__` keeps its state (timesteps, step index, guidance) on the pipeline and its scheduler, so
        calls on CPU lanes each need their own; the weights are shared and read-only."""
        view = copy.copy(self.text2img)
        view.scheduler = copy.deepcopy(self.text2img.scheduler)
        view.set_progress_bar_config(disable=True)
        return view

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, keep: int | None = None) -> list[Image.Image]:
        """Latents -> 8-bit RGB images, as the Stable Diffusion pipeline decodes and post-processes them, one
        latent per VAE call (see `decodes_per_row`), only the first `keep` (None: all; a walk's padding rows are
        not decoded, and skipping them changes no other row)."""
        pipe = self.text2img
        images: list[Image.Image] = []
        for row in range(latents.shape[0] if keep is None else keep):
            image = pipe.vae.decode(latents[row:row + 1] / pipe.vae.config.scaling_factor, return_dict=False)[0]
            images += pipe.image_processor.postprocess(image, output_type="pil", do_denormalize=[True])
        return images


class RowGuidance(float):
    """A guidance scale with one value per latent row, for the pipeline's own `__call__`: it compares as the
    call's peak (which decides whether classifier-free guidance runs at all, for every row alike) and
    multiplies the guidance difference row by row, as `noise_uncond + scale * (noise_text - noise_uncond)` is
    written in diffusers' Stable Diffusion pipelines. A row's numbers then do not depend on the others'."""

    def __new__(cls, peak: float, rows: Sequence[float]) -> RowGuidance:
        value = super().__new__(cls, peak)
        value.rows = tuple(float(g) for g in rows)
        return value

    def __mul__(self, other):
        if isinstance(other, torch.Tensor):
            return torch.tensor(self.rows, dtype=other.dtype, device=other.device).view(-1, 1, 1, 1) * other
        return float(self) * other


def _stop_if_cancelled(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
    """The pipeline's step-end callback: on a CPU lane whose walk ended early, stop here (stages/lanes.py)."""
    check_cancelled()
    return callback_kwargs
