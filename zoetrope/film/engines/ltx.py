"""The ltx engine: LTX-Video clips (stages/ltx.py), conditioned on keyframe pictures and on the film's frames.

A segment is one clip from its keyframe's prompt, in chunks of the model's 8k+1-frame calls, starting from the
keyframe's `image:` or the film's previous frame and heading for the next keyframe's picture (engines/clips.py).
Sizes are multiples of 32 (the VAE's downsampling times its patches). bf16 on GPUs: LTX's transformer is not
meant for fp16 (diffusers' advice).
"""

from __future__ import annotations

from zoetrope.film.engines import register
from zoetrope.film.engines.clipbase import ClipEngine
from zoetrope.settings.engines import EngineSpec


def load(device: str | None, spec: str, revision: str | None, vae_tiling: bool = False, cpu_offload: bool = False):
    """The clip painter, here or on a Ray worker."""
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.ltx import load_ltx

    return load_ltx(spec, pick_device(device, "bf16"), revision, vae_tiling=vae_tiling, cpu_offload=cpu_offload)


class Ltx(ClipEngine):
    spec = EngineSpec("ltx", "LTX-Video clips conditioned on keyframe pictures", size_multiple=32, roles=("ltx",),
                      model_fields={"ltx": "ltx_model"})

    def describe(self, names: dict[str, str], why) -> str:
        return f"{self.name} with {names['ltx']}{why('ltx')}"

    def loader(self, choices: dict, memory: dict):
        choice = choices[self.name]
        return load, {"spec": choice.spec, "revision": choice.revision, **memory}


register(Ltx())
