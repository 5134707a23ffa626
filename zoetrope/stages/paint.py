"""Painter: prompts (or prompt embeddings) and seeds (or noise latents) in, images out.

One contract for the loop and the walk. Noise is drawn on the CPU from one `torch.Generator` per item, so a
seed means the same image on every device. Items named by seeds (the loop's) run under `per_item.active()`, so
an item's image does not depend on what else is in its batch either; walks pad to a fixed batch instead.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch
from PIL import Image

from zoetrope.settings.params import SCHEDULERS, PaintParams
from zoetrope.stages import per_item
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.presets import ModelRef

log = logging.getLogger(__name__)

# Non-ancestral first: ancestral samplers add fresh noise every step, which makes walks flicker.

PromptEmbeds = dict[str, torch.Tensor]


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

    def check_inputs(self, params: PaintParams, n_prompts: int, n_seeds: int) -> None:
        if params.width % 8 or params.height % 8:
            raise ValueError(f"`height` and `width` have to be divisible by 8 but are {params.height} and {params.width}.")
        if params.scheduler not in SCHEDULERS:
            raise ValueError(f"`scheduler` must be one of {sorted(SCHEDULERS)} but is {params.scheduler!r}.")
        if params.strength is not None and int(params.steps * params.strength) < 1:
            raise ValueError(f"image-to-image runs int(steps x strength) steps, but {params.steps} x {params.strength} "
                             "gives none: raise `steps` or `strength`.")
        if n_prompts != n_seeds:
            raise ValueError(f"got {n_prompts} prompts but {n_seeds} seeds or latents: one of each per image.")

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
    ) -> list[Image.Image]:
        """Text-to-image, or image-to-image when `init_images` is given (then `params.strength` applies)."""
        # 1. Check inputs
        n = len(prompts) if prompts is not None else next(iter(prompt_embeds.values())).shape[0]
        n_noise = len(seeds) if seeds is not None else (latents.shape[0] if latents is not None else -1)
        self.check_inputs(params, n, n_noise)
        self.use_scheduler(params.scheduler)
        text = {"prompt": prompts} if prompt_embeds is None else dict(prompt_embeds)
        if prompt_embeds is None and params.guidance > 1.0 and negative_prompts is not None:
            text["negative_prompt"] = negative_prompts
        common = dict(num_inference_steps=params.steps, guidance_scale=params.guidance, output_type="pil", **text)

        # 2. Image-to-image: the pipeline draws its noise from our per-item CPU generators
        if init_images is not None:
            if seeds is None:
                raise ValueError("image-to-image needs `seeds` (one per image), not `latents`.")
            images = [im.convert("RGB").resize((params.width, params.height), Image.LANCZOS) for im in init_images]
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            with per_item.active():
                return self.img2img(image=images, strength=params.strength, generator=generators, **common).images

        # 3. Text-to-image: pass unit-variance noise; the pipeline scales it by the scheduler's init sigma
        seeded = latents is None
        if seeded:
            latents = self.noise(seeds, params.width, params.height)
        latents = latents.to(self.plan.device, self.plan.dtype)
        with per_item.active() if seeded else nullcontext():
            return self.text2img(latents=latents, width=params.width, height=params.height, **common).images
