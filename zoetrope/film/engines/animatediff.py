"""The animatediff engine: AnimateDiff's motion adapter over an SD 1.5-family painter (stages/animatediff.py).

A segment's prompt holds through the hold and travels to the next keyframe's over the transition (FreeNoise
prompt interpolation); chunks of a long segment are independent clips. No conditions, no LoRAs yet (the
adapter's pipeline loads its own painter).
"""

from __future__ import annotations

from zoetrope.film.engines import register
from zoetrope.film.engines.clipbase import ClipEngine
from zoetrope.settings.engines import EngineSpec


def load(device: str | None, adapter: str, painter: str, adapter_revision: str | None = None,
         painter_revision: str | None = None, vae_tiling: bool = False, cpu_offload: bool = False):
    """The clip painter, here or on a Ray worker."""
    from zoetrope.stages.animatediff import load_animatediff
    from zoetrope.stages.device import pick_device

    return load_animatediff(adapter, painter, pick_device(device), adapter_revision=adapter_revision,
                            painter_revision=painter_revision, vae_tiling=vae_tiling, cpu_offload=cpu_offload)


class AnimateDiff(ClipEngine):
    spec = EngineSpec("animatediff", "AnimateDiff clips over the painter, travelling between prompts",
                      roles=("animatediff", "painter"),
                      model_fields={"animatediff": "motion_adapter", "painter": "model"}, loras=False)
    kinds = {"animatediff": "motion"}

    def describe(self, names: dict[str, str], why) -> str:
        return (f"{self.name} with motion {names['animatediff']}{why('animatediff')} over painter "
                f"{names['painter']}")

    def loader(self, choices: dict, memory: dict):
        adapter, painter = choices[self.name], choices["painter"]
        return load, {"adapter": adapter.spec, "painter": painter.spec, "adapter_revision": adapter.revision,
                      "painter_revision": painter.revision, **memory}


register(AnimateDiff())
