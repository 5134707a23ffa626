"""The AnimateDiff clip painter: an SD 1.5-family painter animated by a motion adapter (diffusers'
AnimateDiffPipeline), behind the `ClipPainterLike` contract that the film's `animatediff` engine uses.

- Weights: the adapter is resolved and checked like every model (models.resolve, from_cache_only: offline is
  said at once, in one ModelLoadError line); the painter's components come from models.load_painter_pipelines
  and are reused by `AnimateDiffPipeline.from_pipe` (which copies the UNet into a UNetMotionModel; the 2-D UNet
  is freed with the painter's pipelines). A painter the adapter was not trained for is refused, not tried.
- Prompt travel and long clips: diffusers' FreeNoise (arXiv:2310.15169). The motion modules saw 16-frame clips in
  training, so a longer clip is denoised in overlapping 16-frame windows whose motion-module outputs are blended
  (pyramid weights), from noise that repeats shuffled within the window (noise_type "shuffle_context"). A dict
  prompt {frame: prompt} is encoded per key and lerped between keys (diffusers' default interpolation, as the
  walk lerps embeddings): frame k of key k is exactly that prompt, the frames between travel; the last prompt
  holds to the clip's end. FreeNoise is switched on only for a clip longer than the context or with more than
  one prompt, so a short one-prompt clip is plain AnimateDiff.
- Scheduler: the painter's scheduler class and settings, but with AnimateDiff's `beta_schedule="linear"`: the
  motion modules were trained under linear betas (AnimateDiff's training and inference configs; SD 1.5's own is
  "scaled_linear"), and diffusers' AnimateDiff examples switch the same way.
- Memory: one call holds the latents of all its frames and passes every frame through the spatial layers at
  once (FreeNoise windows only the motion modules), so peak memory grows linearly with `frames`; hence a per-call
  `max_frames` (default 64: four 16-frame contexts), and the VAE decodes `DECODE_CHUNK` frames at a time (one
  with vae_slicing). Model CPU offload keeps only the running model on the GPU.
- Determinism: noise comes from one CPU generator seeded with the request's seed (same noise on every device).
"""

from __future__ import annotations

import reprlib

import torch
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.models import from_cache_only, load_error, load_painter_pipelines, pin_revision, resolve
from zoetrope.stages.presets import TINY, ModelRef
from zoetrope.stages.protocols import ClipRequest

MAX_FRAMES = 64  # default per-call limit (see the module docstring); longer segments are painted in chunks
TRAINED_FRAMES = 16  # the clip length AnimateDiff's SD 1.5 motion modules were trained on: FreeNoise's window
DECODE_CHUNK = 8  # frames per VAE decode (diffusers' decode_chunk_size)
BETA_SCHEDULE = "linear"  # AnimateDiff's training schedule
FREE_NOISE = {"weighting_scheme": "pyramid", "noise_type": "shuffle_context", "prompt_interpolation": "lerp"}

# An adapter at SD's full size (these block widths) was trained on SD 1.5, whose UNet attends to 768-wide CLIP
# ViT-L text features; SD 2.x's UNet has the same widths but 1024-wide text features, so widths alone let it by.
SD_BLOCK_OUT_CHANNELS = (320, 640, 1280, 1280)
SD15_CROSS_ATTENTION_DIM = 768

_repr = reprlib.Repr()
_repr.maxdict, _repr.maxstring = 4, 40


def load_animatediff(
    adapter_spec: str,
    painter_spec: str,
    plan: DevicePlan,
    *,
    adapter_revision: str | None = None,
    painter_revision: str | None = None,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    cpu_offload: bool = False,
    max_frames: int = MAX_FRAMES,
) -> AnimateDiffClipPainter:
    """The motion adapter `adapter_spec` (preset, folder, Hub id or tiny) on the painter `painter_spec`."""
    adapter_ref = resolve("motion", adapter_spec, adapter_revision)
    painter_ref = resolve("painter", painter_spec, painter_revision)
    if cpu_offload and not plan.device.startswith("cuda"):
        raise UserError(f"cpu_offload: model CPU offload moves each model onto a CUDA device only while it runs, but "
                        f"the device is {plan.device}; leave cpu_offload off there")
    if max_frames < 1:
        raise ValueError(f"`max_frames` has to be a positive integer but is {max_frames}.")
    adapter = _load_adapter(adapter_ref, plan)  # first: it is the smaller load, and the one more often missing
    text2img, _ = load_painter_pipelines(painter_ref, plan)
    unet = getattr(text2img, "unet", None)  # a transformer painter (SD3, Flux) has none
    check_fits(adapter_ref, dict(adapter.config), painter_ref, type(text2img).__name__,
               dict(unet.config) if unet is not None else {})

    from diffusers import AnimateDiffPipeline

    # from_pipe casts every component to `dtype` (float32 unless told), the shared ones in place: name ours.
    pipe = AnimateDiffPipeline.from_pipe(text2img, motion_adapter=adapter, dtype=plan.dtype)
    del text2img  # with the painter's pipelines goes its 2-D UNet: the motion UNet holds a copy of its weights
    if plan.device != "cpu":  # copied into the motion UNet; after this only its config is read
        pipe.motion_adapter.to("cpu")
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, beta_schedule=BETA_SCHEDULE)
    pipe.set_progress_bar_config(disable=True)
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=plan.device)
    return AnimateDiffClipPainter(pipe, pin_revision(adapter_ref), pin_revision(painter_ref), plan,
                                  max_frames=max_frames, vae_slicing=vae_slicing, vae_tiling=vae_tiling,
                                  cpu_offload=cpu_offload)


def _load_adapter(ref: ModelRef, plan: DevicePlan):
    """The MotionAdapter of `ref` on the CPU in `plan.dtype`; one ModelLoadError line when it cannot be had."""
    cache_only = from_cache_only(ref)  # before diffusers is imported: offline and uncached is said at once
    from diffusers import MotionAdapter

    kwargs = {"dtype": plan.dtype, "local_files_only": cache_only}
    if ref.revision and ref.id != TINY:
        kwargs["revision"] = ref.revision
    try:
        return MotionAdapter.from_pretrained(ref.source, **kwargs)
    except Exception as exc:  # any failure is reported as one actionable line; nothing is substituted
        raise load_error(ref, exc) from exc


def check_fits(adapter: ModelRef, adapter_config: dict, painter: ModelRef, pipeline_class: str,
               unet_config: dict) -> None:
    """Refuse, with one UserError line naming both models, a painter the motion adapter was not made for: the
    UNet must be an SD 1.5-family one (StableDiffusionPipeline) with the adapter's block widths and layers."""
    fits = ("the SD 1.5 adapters animate SD 1.5-family painters (sd15 or a fine-tune of it); the tiny adapter "
            "fits the tiny painter")

    def refuse(why: str) -> None:
        raise UserError(f"motion adapter '{adapter.id}' does not fit painter '{painter.id}': {why}; {fits}")

    if pipeline_class != "StableDiffusionPipeline" or not unet_config:
        refuse(f"the painter loads as a {pipeline_class}, not a StableDiffusionPipeline (SDXL painters need an "
               "SDXL motion adapter and AnimateDiffSDXLPipeline, which Zoetrope does not use)")
    widths, adapter_widths = tuple(unet_config["block_out_channels"]), tuple(adapter_config["block_out_channels"])
    if widths != adapter_widths:
        refuse(f"its UNet's block_out_channels are {list(widths)}, the adapter's {list(adapter_widths)}")
    layers, motion_layers = unet_config["layers_per_block"], adapter_config["motion_layers_per_block"]
    layers = [layers] * len(widths) if isinstance(layers, int) else list(layers)
    motion_layers = [motion_layers] * len(widths) if isinstance(motion_layers, int) else list(motion_layers)
    if layers != motion_layers:
        refuse(f"its UNet has {layers} layers per block, the adapter {motion_layers} motion layers per block")
    cross = unet_config.get("cross_attention_dim")
    if adapter_widths == SD_BLOCK_OUT_CHANNELS and cross != SD15_CROSS_ATTENTION_DIM:
        refuse(f"its UNet's cross_attention_dim is {cross} (SD 2.x: 1024), the adapter was trained on SD 1.5 "
               f"({SD15_CROSS_ATTENTION_DIM})")
    if adapter_config.get("conv_in_channels"):
        refuse(f"the adapter takes image-conditioned input (conv_in_channels {adapter_config['conv_in_channels']}: "
               "a PIA adapter), which AnimateDiffPipeline does not feed")


class AnimateDiffClipPainter:
    """ClipPainterLike over an AnimateDiffPipeline: prompts (travelling) and a seed in, `frames` PIL frames out."""

    def __init__(self, pipe, ref: ModelRef, painter_ref: ModelRef, plan: DevicePlan, *, max_frames: int = MAX_FRAMES,
                 vae_slicing: bool = False, vae_tiling: bool = False, cpu_offload: bool = False):
        self.pipe = pipe
        self._ref, self._painter_ref, self.plan = ref, painter_ref, plan
        self._max_frames = max_frames
        self._vae = {"slicing": vae_slicing, "tiling": vae_tiling, "decode_chunk_size": DECODE_CHUNK}
        self.cpu_offload = cpu_offload  # moves weights, not arithmetic: not part of the identity
        self.context = min(TRAINED_FRAMES, int(pipe.motion_adapter.config.motion_max_seq_length))
        self.context_stride = max(1, self.context // 4)  # diffusers' default 4 for a 16-frame context

    @property
    def ref(self) -> ModelRef:
        return self._ref

    @property
    def painter_ref(self) -> ModelRef:
        return self._painter_ref

    @property
    def identity(self) -> dict:
        scheduler = self.pipe.scheduler
        return {
            "motion": self._ref.as_log(),
            "painter": self._painter_ref.as_log(),
            "device": self.plan.device,
            "dtype": self.plan.dtype_name,
            "scheduler": {"class": type(scheduler).__name__, "beta_schedule": scheduler.config.beta_schedule,
                          "timestep_spacing": scheduler.config.get("timestep_spacing")},
            "free_noise": {"context_length": self.context, "context_stride": self.context_stride, **FREE_NOISE},
            "vae": dict(self._vae),
        }

    @property
    def max_frames(self) -> int:
        return self._max_frames

    @property
    def takes_conditions(self) -> bool:
        return False

    def call_frames(self, wanted: int) -> int:
        """Any count from 1 on: AnimateDiff takes every frame count (FreeNoise windows the long ones)."""
        if wanted < 1:
            raise ValueError(f"`wanted` has to be at least 1 frame but is {wanted}.")
        return wanted

    def free_noise_context(self, request: ClipRequest) -> int | None:
        """The FreeNoise window this request is painted with, or None for one plain AnimateDiff pass. A window
        never exceeds the clip (diffusers' FreeNoise blocks need at least one full window)."""
        if request.frames > self.context or len(request.prompts) > 1:
            return min(self.context, request.frames)
        return None

    def check_inputs(self, request: ClipRequest) -> None:
        """Refuse, before any work, what the pipeline would fail on deep inside or silently bend: one ValueError
        line naming the argument and the value it got, as diffusers' check_inputs."""
        r = request
        if r.conditions:
            raise ValueError(f"`conditions` are not taken by AnimateDiff (takes_conditions is False) but "
                             f"{len(r.conditions)} were given, from frame {r.conditions[0].frame}.")
        if not isinstance(r.frames, int) or not 1 <= r.frames <= self._max_frames:
            raise ValueError(f"`frames` has to be an integer from 1 to max_frames {self._max_frames} but is "
                             f"{r.frames!r}.")
        if r.height <= 0 or r.width <= 0 or r.height % 8 or r.width % 8:
            raise ValueError(f"`height` and `width` have to be positive and divisible by 8 but are {r.height} and "
                             f"{r.width}.")
        if not isinstance(r.steps, int) or r.steps < 1:
            raise ValueError(f"`steps` has to be a positive integer but is {r.steps!r}.")
        if r.guidance < 0:
            raise ValueError(f"`guidance` has to be >= 0 but is {r.guidance}.")
        if not isinstance(r.seed, int) or not 0 <= r.seed < 2**63:
            raise ValueError(f"`seed` has to be an integer from 0 to 2**63 - 1 but is {r.seed!r}.")
        if not isinstance(r.negative_prompt, str):
            raise ValueError(f"`negative_prompt` has to be a str but is a {type(r.negative_prompt).__name__}.")
        prompts = r.prompts
        if (not isinstance(prompts, dict) or not prompts
                or not all(isinstance(k, int) and isinstance(v, str) for k, v in prompts.items())):
            raise ValueError(f"`prompts` has to be a non-empty dict of frame (int) -> prompt (str) but is "
                             f"{_repr.repr(prompts)}.")
        if min(prompts) != 0:
            raise ValueError(f"`prompts` has to start at frame 0 but its first key is {min(prompts)}.")
        if max(prompts) >= r.frames:
            raise ValueError(f"`prompts` keys have to be frames of the clip (0 to {r.frames - 1}) but include "
                             f"{max(prompts)}.")

    def paint_clip(self, request: ClipRequest) -> list[Image.Image]:
        """Exactly `request.frames` RGB frames of width x height; equal requests give equal frames on one device."""
        # 1. Check the request, and choose a plain pass or FreeNoise windows for it
        self.check_inputs(request)
        window = self.free_noise_context(request)
        self._use_free_noise(window)
        prompt = dict(sorted(request.prompts.items())) if window else request.prompts[0]

        # 2. Paint: the noise (and FreeNoise's shuffles) come from one CPU generator
        out = self.pipe(
            prompt=prompt,
            negative_prompt=request.negative_prompt or None,
            num_frames=request.frames,
            height=request.height,
            width=request.width,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="pil",
            decode_chunk_size=DECODE_CHUNK,
        )
        frames = [frame.convert("RGB") for frame in out.frames[0]]
        if len(frames) != request.frames:  # the contract: the film engine counts on it
            raise RuntimeError(f"AnimateDiff returned {len(frames)} frames for a {request.frames}-frame request")
        return frames

    def _use_free_noise(self, window: int | None) -> None:
        """Switch the motion modules to FreeNoise windows of `window` frames, or back to plain blocks (None)."""
        pipe = self.pipe
        if window is not None:
            pipe.enable_free_noise(context_length=window, context_stride=self.context_stride,
                                   weighting_scheme=FREE_NOISE["weighting_scheme"], noise_type=FREE_NOISE["noise_type"])
            return
        if not pipe.free_noise_enabled:
            return
        # diffusers 0.42's disable_free_noise also visits a mid block without motion modules (v1-5-3 has none) and
        # raises half-way; switch back only the blocks that have them, with its own per-block helper.
        unet = pipe.unet
        for block in (*unet.down_blocks, unet.mid_block, *unet.up_blocks):
            if hasattr(block, "motion_modules"):
                pipe._disable_free_noise_in_block(block)
        pipe._free_noise_context_length = None
