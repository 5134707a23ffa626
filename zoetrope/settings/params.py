"""What a model call takes, as plain data: caption and paint parameters, scheduler names, speed options.

Torch-free, so settings can validate against them and logs can record them without loading a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

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
