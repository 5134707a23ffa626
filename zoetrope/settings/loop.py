"""Loop configuration: pydantic schemas (unknown keys rejected, limits in the fields) and YAML loading that
reports every mistake as one line `file:line: field: what was expected`.

`load_yaml_model` is shared with the scene scripts so both report errors the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from zoetrope.settings.params import SCHEDULERS, CaptionParams, PaintParams, UpscaleSpec
from zoetrope.settings.parsing import Strict, load_yaml_model

SCHEMA_VERSION = 1
Multiple8 = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


class ModelSettings(BaseModel):
    model_config = Strict
    painter: str = Field("sd-turbo", description="preset, local folder, Hub id, or tiny")
    captioner: str = Field("blip-base", description="preset, local folder, Hub id, or tiny")
    painter_revision: str | None = None
    captioner_revision: str | None = None


class LoraSettings(BaseModel):
    """A LoRA style fused into the painter: a .safetensors file (or a folder as diffusers' save_lora_weights
    writes it), relative to the config's folder, and how strongly it applies (A1111's `<lora:name:weight>`)."""

    model_config = Strict
    path: str = Field(min_length=1, description="LoRA .safetensors file or diffusers LoRA folder")
    weight: float = Field(1.0, ge=-10.0, le=10.0, description="0 leaves the painter as it is; negative inverts")

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str, info: ValidationInfo) -> str:
        """Found now, relative to the config's folder (context["base"]), and kept as an absolute path, so a
        resumed chain finds it from any working folder. Without a context (a logged config) it is taken as
        given; the loader then names a file that has gone."""
        base = (info.context or {}).get("base")
        if base is None:
            return value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else Path(base) / path
        if not (path.is_file() or path.is_dir()):
            raise ValueError(f"LoRA file not found: {path}")
        return str(path.resolve())


class StartSettings(BaseModel):
    """Where the chain begins: an image file, or a prompt that paints the first image."""

    model_config = Strict
    image: str | None = None
    prompt: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.image is None) == (self.prompt is None):
            raise ValueError("give exactly one of `image` or `prompt`")
        return self


class CaptionSettings(BaseModel):
    model_config = Strict
    mode: Literal["beam", "sample"] = "beam"
    num_beams: int = Field(3, ge=1, le=16)
    min_length: int = Field(5, ge=0, le=100)
    max_length: int = Field(30, ge=2, le=200)
    repetition_penalty: float = Field(1.2, ge=1.0, le=10.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0, le=5.0)

    @model_validator(mode="after")
    def _lengths(self):
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")
        return self

    def params(self, **changes) -> CaptionParams:
        return CaptionParams(**(self.model_dump() | changes))


class PaintSettings(BaseModel):
    model_config = Strict
    mode: Literal["text", "drift"] = Field("text", description="text-to-image (Counterfeits) or image-to-image drift")
    strength: float = Field(0.6, gt=0.0, le=1.0, description="drift mode: how far each image departs from the last")
    steps: int = Field(1, ge=1, le=150)
    guidance: float = Field(0.0, ge=0.0, le=30.0)
    width: Multiple8 = 512
    height: Multiple8 = 512
    scheduler: str = "euler"

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(f"must be one of {', '.join(sorted(SCHEDULERS))}")
        return value

    @model_validator(mode="after")
    def _drift_denoises(self):
        if self.mode == "drift" and int(self.steps * self.strength) < 1:
            raise ValueError(
                f"drift mode denoises int(steps x strength) steps, and {self.steps} x {self.strength} gives none: "
                f"raise steps to at least {math.ceil(1 / self.strength)} or strength"
            )
        return self

    def params(self) -> PaintParams:
        return PaintParams(
            steps=self.steps, guidance=self.guidance, width=self.width, height=self.height,
            scheduler=self.scheduler, strength=self.strength if self.mode == "drift" else None,
        )


class PromptSettings(BaseModel):
    """How a caption becomes a prompt: `template` with {caption}, {prefix}, {suffix}."""

    model_config = Strict
    prefix: str = ""
    suffix: str = ""
    template: str = "{prefix}{caption}{suffix}"
    negative: str = ""

    @field_validator("template")
    @classmethod
    def _has_caption(cls, value: str) -> str:
        if "{caption}" not in value:
            raise ValueError("must contain {caption}")
        try:
            value.format(prefix="", caption="", suffix="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{prefix}}, {{caption}} and {{suffix}} may appear ({exc})") from None
        return value

    def build(self, caption: str) -> str:
        return self.template.format(prefix=self.prefix, caption=caption, suffix=self.suffix).strip()


class GuardSettings(BaseModel):
    """The repetition guard: loops fall into attractors; a near-repeat of a recent caption perturbs the step."""

    model_config = Strict
    enabled: bool = True
    window: int = Field(8, ge=1, le=1000, description="compare with the last K captions")
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="similarity at or above which a caption repeats")
    lexicon: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["dream", "ruin", "mirror", "storm", "garden", "machine", "ocean", "ghost", "glass",
                                 "fire", "map", "orchard", "tide", "archive", "lantern", "desert"],
        min_length=1,
    )


class SpeedSettings(BaseModel):
    """How fast the painter runs; only `vae` changes the pictures (TAESD is an approximate decoder)."""

    model_config = Strict
    attention: Literal["sdpa", "eager"] = Field("sdpa", description="PyTorch scaled-dot-product attention or eager")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the UNet for fixed shapes (warns on recompiles)")
    vae: str | None = Field(None, description="taesd (or a folder/Hub id) for a tiny autoencoder decoder")

    def options(self):
        from zoetrope.settings.params import SpeedOptions

        return SpeedOptions(**self.model_dump())


# ------------------------------------------------------------------ gallery: running unattended for weeks


class ResilienceSettings(BaseModel):
    """What the loop does when a step fails: retry with backoff, then exit non-zero for the supervisor."""

    model_config = Strict
    retries: int = Field(3, ge=0, le=100, description="retries of a failed step before the process exits")
    backoff_s: float = Field(2.0, ge=0.0, le=3600.0, description="first retry delay; doubles each time")
    backoff_max_s: float = Field(300.0, ge=0.0, le=86400.0)
    oom_shrink: float = Field(0.75, gt=0.1, lt=1.0, description="size factor of the one retry after out-of-memory")
    black_max_attempts: int = Field(3, ge=1, le=100, description="re-seeds of a black (or NaN) image")
    min_free_mb: int = Field(200, ge=0, description="below this much free disk the loop pauses")
    disk_retry_s: float = Field(30.0, gt=0.0, le=3600.0, description="how often a paused loop looks for space")


class RetentionSettings(BaseModel):
    """Which step images stay on disk. Log lines are never deleted; the last image and start.png always stay."""

    model_config = Strict
    keep_last: int | None = Field(None, ge=1, description="keep the last N step images whole")
    thin_every: int | None = Field(None, ge=2, description="older than keep_last: keep only every k-th step image")
    max_gb: float | None = Field(None, gt=0.0, description="then delete the oldest images until under this size")
    check_every: int = Field(20, ge=1, le=100000, description="apply the policy every N committed steps")

    @model_validator(mode="after")
    def _thin_needs_window(self):
        if self.thin_every is not None and self.keep_last is None:
            raise ValueError("thin_every needs keep_last (the recent steps kept whole)")
        return self


class PolicySettings(BaseModel):
    """The curator's content policy: a word blocklist on captions and prompts, and an optional image checker."""

    model_config = Strict
    blocklist: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    blocklist_file: str | None = Field(None, description="one word or phrase per line; # comments")
    safety_checker: bool = Field(False, description="diffusers' StableDiffusionSafetyChecker (weights required)")
    safety_checker_model: str = "CompVis/stable-diffusion-safety-checker"
    on_block: Literal["reseed", "skip"] = Field(
        "reseed", description="reseed: paint the step again (sampled caption, new seed); skip: restart from the start")
    max_attempts: int = Field(5, ge=1, le=100, description="re-seeds before the step is skipped")


class BudgetSettings(BaseModel):
    """Optional limits: the loop waits instead of generating past them."""

    model_config = Strict
    images_per_hour: float | None = Field(None, gt=0.0, le=360000.0)
    kwh_per_day: float | None = Field(None, gt=0.0, description="needs a measurable GPU (NVML); else an error")


class DisplayUpscale(UpscaleSpec):
    """`display.upscale`: an upscaled copy of each step's image for a 4K screen (loop/display.py), a display
    cache beside the chain that never changes its images or log; `hold_s` bounds how long the kiosk waits for
    a step's copy before showing the original (it is made off the chain's path, so it comes a little later)."""

    hold_s: float = Field(30.0, ge=0.0, le=3600.0, description="wait this long for the copy, then show the original")


class DisplaySettings(BaseModel):
    """The kiosk page and the health endpoint."""

    model_config = Strict
    font_size: str = Field("2.2vw", pattern=r"^\d+(\.\d+)?(px|vw|vh|em|rem|pt)$")
    position: Literal["bottom", "top", "middle"] = "bottom"
    align: Literal["start", "center", "end"] = "center"
    caption_effect: Literal["type", "fade", "none"] = "type"
    show_step: bool = False
    crossfade_s: float = Field(1.5, ge=0.0, le=30.0)
    healthz_silence_s: float = Field(600.0, gt=0.0, description="/healthz turns 503 after this long without a step")
    upscale: DisplayUpscale | None = Field(None, description="x2 or x4 copies of the steps for the kiosk only")


class ServiceSettings(BaseModel):
    """Unattended running: what a restart does, and the watchdog's heartbeat file."""

    model_config = Strict
    on_restart: Literal["resume", "new"] = "resume"
    heartbeat_file: str | None = Field(None, description="default: <chain folder>/heartbeat.json")
    watchdog_sec: int = Field(300, ge=10, le=86400, description="systemd WatchdogSec: longer than the slowest step")


class LoopConfig(BaseModel):
    model_config = Strict
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field("chain", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="names the run folder")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: int | None = Field(None, ge=1, description="stop after this many steps; none = endless")
    start: StartSettings = Field(default_factory=lambda: StartSettings(prompt="a photograph of an empty gallery"))
    models: ModelSettings = Field(default_factory=ModelSettings)
    loras: list[LoraSettings] = Field(default_factory=list, max_length=16, description="LoRA styles of the painter")
    caption: CaptionSettings = Field(default_factory=CaptionSettings)
    paint: PaintSettings = Field(default_factory=PaintSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    speed: SpeedSettings = Field(default_factory=SpeedSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    display: DisplaySettings = Field(default_factory=DisplaySettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)


# ------------------------------------------------------------------------------------------- loading


def load_loop_config(path: Path | None) -> LoopConfig:
    # Paths in the file (loras) are relative to its folder.
    return LoopConfig() if path is None else load_yaml_model(path, LoopConfig, {"base": str(Path(path).parent)})
