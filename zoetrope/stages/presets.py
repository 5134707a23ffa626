"""Model names: presets, `tiny`, where Zoetrope keeps what it builds, and the resolved reference that a log
records. Torch-free, so listing presets or reading a log's model ids loads no framework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["painter", "captioner", "decoder", "ltx", "motion", "upscaler"]  # motion: an AnimateDiff adapter


TINY = "tiny"


TINY_BUILD_VERSION = "1"  # bump when the tiny builder changes: it names the cache folder
# Pinned Hub commits of the video presets (set by stages/ltx.py's and stages/animatediff.py's owners).
LTX_REVISION: str | None = "e58e28c39631af4d1468ee57a853764e11c1d37e"  # Lightricks/LTX-Video-0.9.5
ANIMATEDIFF_REVISION: str | None = "449d8993ead63a068e1030eb26925132814db1c8"


@dataclass(frozen=True)
class Preset:
    name: str
    role: Role
    repo_id: str
    note: str
    revision: str | None = None  # pinned Hub commit: the exact weights a film's cache keys and sidecar name


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sd-turbo", "painter", "stabilityai/sd-turbo", "SD 2.1 distilled: 1-4 steps, guidance 0, 512 px"),
        Preset("sdxl-turbo", "painter", "stabilityai/sdxl-turbo", "SDXL distilled: 1-4 steps, guidance 0, 512 px"),
        Preset("sd15", "painter", "stable-diffusion-v1-5/stable-diffusion-v1-5", "SD 1.5: 25+ steps, guidance 7"),
        Preset("blip-base", "captioner", "Salesforce/blip-image-captioning-base", "BLIP base captioner"),
        Preset("blip-large", "captioner", "Salesforce/blip-image-captioning-large", "BLIP large captioner"),
        Preset("taesd", "decoder", "madebyollin/taesd", "tiny SD 1/2 decoder for previews and fast films (--vae taesd)"),
        Preset("taesdxl", "decoder", "madebyollin/taesdxl", "tiny SDXL decoder (--vae taesd with an SDXL painter)"),
        Preset("ltx-video", "ltx", "Lightricks/LTX-Video-0.9.5",
               "LTX-Video 0.9.5 (2B): keyframe/video-conditioned clips, 8k+1 frames, sizes /32", LTX_REVISION),
        Preset("sd-x2-latent-upscaler", "upscaler", "stabilityai/sd-x2-latent-upscaler",
               "x2 latent upscaler (StableDiffusionLatentUpscalePipeline)"),
        Preset("sd-x4-upscaler", "upscaler", "stabilityai/stable-diffusion-x4-upscaler",
               "x4 upscaler (StableDiffusionUpscalePipeline)"),
        Preset("animatediff-v1-5-3", "motion", "guoyww/animatediff-motion-adapter-v1-5-3",
               "AnimateDiff motion adapter for SD 1.5-family painters", ANIMATEDIFF_REVISION),
    )
}


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what to load (`source`, a folder or Hub id) and what to log (`id`, `revision`)."""

    role: Role
    id: str
    source: str
    revision: str | None = None
    weights_hash: str | None = None  # A1111's short "Model hash" of the weights file, when there is one

    def as_log(self) -> dict:
        """The identity of the weights: what frame cache keys and the header's model check compare."""
        return {"id": self.id, "revision": self.revision}

    def as_header(self) -> dict:
        """What a chain header records: the identity, and the short hash image tools show as `Model hash`."""
        return self.as_log() | ({"hash": self.weights_hash} if self.weights_hash else {})


def cache_dir() -> Path:
    """Where Zoetrope keeps what it builds (tiny models); `ZOETROPE_CACHE` overrides."""
    return Path(os.environ.get("ZOETROPE_CACHE") or Path.home() / ".cache" / "zoetrope")


def pickle_only_weights(files: list[str]) -> list[str]:
    """The PyTorch-pickle weights of each folder that has no `.safetensors`: Salesforce/blip-image-captioning-base's
    main holds only `pytorch_model.bin`, so without them a pull fetched no weights and the load then failed."""
    import re

    with_safetensors = {f.rpartition("/")[0] for f in files if f.endswith(".safetensors")}
    weights = re.compile(r"(diffusion_)?pytorch_model(-\d+-of-\d+)?\.bin")
    return [f for f in files if weights.fullmatch(f.rpartition("/")[2]) and f.rpartition("/")[0] not in with_safetensors]
