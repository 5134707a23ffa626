"""What a model call takes, as plain data: caption and paint parameters, scheduler names, speed options.

Torch-free, so settings can validate against them and logs can record them without loading a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ROWS = 64  # the widest painter call a walk may make (`rows:`, --rows)
SCHEDULERS = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


SAMPLER_NAMES = {  # AUTOMATIC1111's names, for the PNG `parameters` chunk
    "euler": "Euler", "euler_a": "Euler a", "dpm++": "DPM++ 2M", "dpm++_karras": "DPM++ 2M Karras",
    "ddim": "DDIM", "lcm": "LCM",
}


@dataclass(frozen=True)
class PaintParams:
    steps: int = 1
    guidance: float = 0.0
    width: int = 512
    height: int = 512
    scheduler: str = "euler"
    strength: float | None = None  # image-to-image only

    def as_log(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CaptionParams:
    mode: Literal["beam", "sample"] = "beam"
    num_beams: int = 3
    min_length: int = 5
    max_length: int = 30
    repetition_penalty: float = 1.2
    top_p: float = 0.9
    temperature: float = 1.0

    def as_log(self) -> dict:
        return asdict(self)

    def generate_kwargs(self) -> dict:
        common = dict(min_length=self.min_length, max_length=self.max_length, repetition_penalty=self.repetition_penalty)
        if self.mode == "sample":
            return common | dict(do_sample=True, top_p=self.top_p, temperature=self.temperature, num_beams=1)
        return common | dict(do_sample=False, num_beams=self.num_beams)


@dataclass(frozen=True)
class SpeedOptions:
    """How fast the painter runs. Only `vae` changes the pictures (TAESD is an approximate decoder)."""

    attention: Literal["sdpa", "eager"] = "sdpa"
    channels_last: bool = False
    compile: bool = False
    vae: str | None = None  # None: the model's own VAE; "taesd", a Hub id or a folder: a tiny autoencoder


class UpscaleSpec(BaseModel):
    """`upscale:` of a scene script: every painted frame made `scale` times larger before it is encoded (the
    painted frames stay cached as they are; the upscaled ones have their own cache)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)  # as settings.parsing.Strict
    scale: Literal[2, 4] = Field(description="2: the x2 latent upscaler; 4: the x4 upscaler")
    model: str | None = Field(None, description="preset, diffusers folder, Hub id or ESRGAN-family .pth "
                                                "(default: sd-x2-latent-upscaler or sd-x4-upscaler by scale)")
    steps: int | None = Field(None, ge=1, le=150, description="the upscaler's denoising steps (default: its own)")

    def model_or_default(self) -> str:
        return self.model or ("sd-x2-latent-upscaler" if self.scale == 2 else "sd-x4-upscaler")
