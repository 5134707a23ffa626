"""LTX-Video behind the ClipPainterLike contract: one call of diffusers' LTXConditionPipeline per chunk of a segment.

Why LTXConditionPipeline (and so LTX-Video 0.9.5+ weights): it takes any number of condition frames at any clip
frame (`LTXVideoCondition(image= | video=, frame_index=, strength=)`), which is what a scene script needs: its
keyframes are stills placed in the clip, and a long segment continues chunk by chunk from the previous chunk's
tail. How the pipeline places them (diffusers 0.42, `prepare_latents`), and so what `check_inputs` refuses:
- a condition at frame 0 replaces the first latent frames in place (lerp by strength): with strength 1 the clip
  starts from the encoded frames themselves;
- a still at frame f > 0 is appended as extra tokens whose time coordinate is f (any f inside the clip);
- several frames must number 8k+1 (the VAE compresses 8 frames into one latent frame, the first on its own); at
  f > 0 their latent frames after the first two are written in place at latent frame f // 8 + 2, which is the right
  place only when f is a multiple of 8, so that is required; frames past the clip's end would be trimmed silently
  by the pipeline, so they are refused here instead.
Noise comes from one CPU `torch.Generator` seeded with the request's seed (the noise, the VAE's posterior sample,
the condition noise and the decode noise all draw from it in order), so equal requests give equal frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoetrope.base.errors import UserError
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.models import apply_quiet, from_cache_only, load_error, pin_revision, resolve
from zoetrope.stages.presets import TINY, ModelRef

if TYPE_CHECKING:
    from PIL import Image

    from zoetrope.stages.protocols import ClipCondition, ClipRequest

# The most frames one call makes. Real LTX-Video: 121, the condition pipeline's own default clip (`default_frames`),
# about 5 s at 24 fps: Lightricks train and show clips up to 257 frames, but attention grows with the square of the
# length (121 frames at 768x512 are 16x24x16 = 6,144 tokens, 257 frames 12,672) and a 2B model drifts over long
# clips, while chunks continued from the previous tail keep any length within reach. Tiny: 33, so that tests chunk.
MAX_FRAMES = 121
TINY_MAX_FRAMES = 33

# Call settings that change pixels but are not the request's: diffusers' recommendations for timestep-aware VAEs
# (LTX-Video 0.9.1+: decode at t=0.05 with 2.5% noise), its default 15% noise (times t^2) on hard-conditioned
# latents (better motion from a still), and its default T5 length. Part of `identity`, so changing one re-renders.
CALL_SETTINGS = {"decode_timestep": 0.05, "decode_noise_scale": 0.025, "image_cond_noise_scale": 0.15,
                 "max_sequence_length": 256}


def load_ltx(spec: str, plan: DevicePlan, revision: str | None = None, *, vae_tiling: bool = False,
             cpu_offload: bool = False) -> LTXClipPainter:
    """The LTX-Video clip painter named by `spec` (preset `ltx-video`, `tiny`, a folder or a Hub id) on `plan`.

    `vae_tiling` decodes in overlapping spatial tiles (less memory at large sizes; may change pixels at tile seams,
    so it is part of `identity`). `cpu_offload` keeps each model on the CPU until its turn (text encoder, transformer,
    VAE): CUDA only, and pixel-neutral, so not part of `identity`. Any failure to load is one ModelLoadError line;
    other weights are never substituted."""
    ref = resolve("ltx", spec, revision)
    if cpu_offload and not plan.device.startswith("cuda"):
        raise UserError(f"cpu_offload: model CPU offload moves models onto a CUDA device before each use, but the "
                        f"device is '{plan.device}'; leave it off there")
    cache_only = from_cache_only(ref)  # before diffusers is even imported
    from diffusers import LTXConditionPipeline

    apply_quiet()
    kwargs = {"dtype": plan.dtype, "local_files_only": cache_only}
    if ref.revision and ref.id != TINY:
        kwargs["revision"] = ref.revision
    try:
        pipe = LTXConditionPipeline.from_pretrained(ref.source, **kwargs)
    except Exception as exc:  # any failure is reported as one actionable line; nothing is substituted
        raise load_error(ref, exc) from exc
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=plan.device)
    else:
        pipe.to(plan.device)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return LTXClipPainter(pipe, pin_revision(ref), plan, max_frames=TINY_MAX_FRAMES if ref.id == TINY else MAX_FRAMES,
                          vae_tiling=vae_tiling, cpu_offload=cpu_offload)


class LTXClipPainter:
    """One LTXConditionPipeline call per `ClipRequest`: one prompt, condition stills and frame runs, 8k+1 frames."""

    def __init__(self, pipe, ref: ModelRef, plan: DevicePlan, *, max_frames: int = MAX_FRAMES,
                 vae_tiling: bool = False, cpu_offload: bool = False):
        self.pipe = pipe
        self._ref = ref
        self.plan = plan
        self._max_frames = max_frames
        self.vae_tiling = vae_tiling
        self.cpu_offload = cpu_offload
        self.size_multiple = pipe.vae_spatial_compression_ratio  # 32 for every LTX-Video VAE (and the tiny one)
        self.frame_step = pipe.vae_temporal_compression_ratio  # 8: frames are 8k+1

    @property
    def ref(self) -> ModelRef:
        return self._ref

    @property
    def identity(self) -> dict:
        return {"ltx": self._ref.as_log(), "device": self.plan.device, "dtype": self.plan.dtype_name,
                "vae_tiling": self.vae_tiling, "call": dict(CALL_SETTINGS)}

    @property
    def max_frames(self) -> int:
        return self._max_frames

    @property
    def takes_conditions(self) -> bool:
        return True

    def call_frames(self, wanted: int) -> int:
        """The smallest 8k+1 >= `wanted`; refused above `max_frames` (the caller chunks first)."""
        if not isinstance(wanted, int) or isinstance(wanted, bool) or not 1 <= wanted <= self._max_frames:
            raise ValueError(f"`wanted` has to be an int from 1 to {self._max_frames} (max_frames) but is {wanted!r}.")
        return -(-(wanted - 1) // self.frame_step) * self.frame_step + 1

    def check_inputs(self, request: ClipRequest) -> None:
        """Refuse what the pipeline would reject late, or silently correct: each error names the field and its value."""
        prompts = request.prompts
        if not isinstance(prompts, dict) or list(prompts) != [0] or not isinstance(prompts[0], str):
            got = list(prompts) if isinstance(prompts, dict) else type(prompts).__name__
            raise ValueError(
                f"`prompts` has to be {{0: prompt}} (one prompt for the whole clip: LTXConditionPipeline has no prompt "
                f"travel) but has keys {got}."
            )
        m = self.size_multiple
        if request.width < m or request.height < m or request.width % m or request.height % m:
            raise ValueError(f"`height` and `width` have to be positive multiples of {m} but are "
                             f"{request.height} and {request.width}.")
        if not 1 <= request.frames <= self._max_frames or (request.frames - 1) % self.frame_step:
            raise ValueError(f"`frames` has to be of the form {self.frame_step}k+1 and at most {self._max_frames} "
                             f"(max_frames) but is {request.frames}.")
        if request.steps < 1:
            raise ValueError(f"`steps` has to be at least 1 but is {request.steps}.")
        if request.fps <= 0:
            raise ValueError(f"`fps` has to be positive but is {request.fps}.")
        if request.guidance < 0:
            raise ValueError(f"`guidance` has to be >= 0 (1 or less: no classifier-free guidance) but is "
                             f"{request.guidance}.")
        if not 0 <= request.seed < 2**63:
            raise ValueError(f"`seed` has to be from 0 to 2**63-1 but is {request.seed}.")
        for i, cond in enumerate(request.conditions):
            self._check_condition(i, cond, request)

    def _check_condition(self, i: int, cond: ClipCondition, request: ClipRequest) -> None:
        name, count, step = f"`conditions[{i}]", len(cond.images), self.frame_step
        if not 0 <= cond.frame < request.frames:
            raise ValueError(f"{name}.frame` has to be inside the clip (0 to {request.frames - 1}) but is {cond.frame}.")
        if count == 0 or (count - 1) % step:
            raise ValueError(f"{name}.images` has to hold one image or {step}k+1 frames but holds {count}.")
        if count > 1 and cond.frame % step:
            raise ValueError(f"{name}.frame` has to be a multiple of {step} for a run of {count} frames but is "
                             f"{cond.frame}.")
        if cond.frame + count > request.frames:
            raise ValueError(f"{name}.images` runs past the clip: {count} frames from frame {cond.frame} end at frame "
                             f"{cond.frame + count - 1}, but the clip ends at frame {request.frames - 1}.")
        if not 0.0 <= cond.strength <= 1.0:
            raise ValueError(f"{name}.strength` has to be from 0 to 1 but is {cond.strength}.")
        for j, image in enumerate(cond.images):
            if image.size != (request.width, request.height):
                raise ValueError(f"{name}.images[{j}]` has to be {request.width}x{request.height} (the clip's size) "
                                 f"but is {image.size[0]}x{image.size[1]}.")

    def paint_clip(self, request: ClipRequest) -> list[Image.Image]:
        """Exactly `request.frames` RGB frames; equal requests give equal frames on one device."""
        import torch
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        # 1. Check inputs before any model runs.
        self.check_inputs(request)
        # 2. Conditions: a still, or a run of frames (the previous chunk's tail), each at its clip frame.
        conditions = [
            LTXVideoCondition(image=c.images[0].convert("RGB"), frame_index=c.frame, strength=c.strength)
            if len(c.images) == 1
            else LTXVideoCondition(video=[im.convert("RGB") for im in c.images], frame_index=c.frame,
                                   strength=c.strength)
            for c in request.conditions
        ]
        # 3. One call; noise from a CPU generator, so a seed means the same noise on every device.
        frames = self.pipe(
            conditions=conditions or None,  # an empty list would be taken for conditioning
            prompt=request.prompts[0],
            negative_prompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            num_frames=request.frames,
            frame_rate=request.fps,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="pil",
            **CALL_SETTINGS,
        ).frames[0]
        # 4. The contract's promise, checked: a short or resized clip would shift every later frame of the film.
        if len(frames) != request.frames or any(f.size != (request.width, request.height) for f in frames):
            raise RuntimeError(f"LTXConditionPipeline returned {len(frames)} frames of {frames[0].size if frames else '-'}"
                               f" for {request.frames} of {request.width}x{request.height}")
        return [f.convert("RGB") for f in frames]
