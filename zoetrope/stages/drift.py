"""The drift clip painter: a film painted frame by frame, each frame the previous one warped and repainted
image-to-image (Deforum's 2D animation mode), behind the `ClipPainterLike` contract of the film's engines.

- **A call (chunk).** Frame 0 is given (a condition at frame 0: the keyframe's picture, the film's previous frame
  or the previous chunk's last frame) or, with none, painted text-to-image from the prompt and `request.seed`.
  Frame i > 0 is `warp(frame i - 1)` by that frame's zoom, angle and translate, then repainted image-to-image
  with that frame's strength and seed `request.seed + i` (seeds advance per frame, Deforum's "iter"). A drift is
  sequential (each frame needs the one before), so `max_frames` only sizes the cache's chunks: 9 by default,
  one conditioning frame and 8 new ones, so a killed render resumes from at most 8 frames back.
- **The warp** is Deforum's `anim_frame_warp_2d`: OpenCV's `getRotationMatrix2D(centre, angle, zoom)` times a
  translation, applied with border replicate; here with torch's `grid_sample` (bicubic, `padding_mode="border"`
  is replicate), in float64 on the CPU so a frame is the same on every device. No OpenCV.
- **Colour coherence** (`color_coherence: match_first`): every painted frame's histogram is matched, channel by
  channel, to `request.color_reference` (scikit-image's `match_histograms`), and the matched frame is what the
  next frame warps. Deforum matches the warped frame before repainting; matching the painted one keeps every
  frame shown on the reference's palette instead of one step off it. scikit-image is the `motion` extra.
- **Motion values** come per call frame in `request.motion` (zoom, angle, translate_x, translate_y, strength;
  optionally guidance): value i makes frame i from frame i - 1, so value 0 is not used. Missing fields take the
  identity warp and strength 0.65 (settings/schedules.py MOTION_DEFAULTS).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.base.extras import install_hint
from zoetrope.settings.params import PaintParams
from zoetrope.settings.schedules import MOTION_DEFAULTS
from zoetrope.stages.protocols import ClipRequest

DRIFT_VERSION = 1  # bump when a drift frame's pixels change for the same inputs: it is part of `identity`
MAX_FRAMES = 9  # a chunk: the conditioning frame and 8 new ones (see the module docstring)
MOTION_FIELDS = (*MOTION_DEFAULTS, "guidance")  # guidance: optional, else the request's
INSTALL_MOTION = install_hint("motion")


# ------------------------------------------------------------------------------------------------- warp


def warp_matrix(width: int, height: int, *, zoom: float, angle: float, translate_x: float,
                translate_y: float) -> np.ndarray:
    """The 3x3 forward map (source pixel -> frame pixel) of Deforum's 2D warp: translate, then rotate `angle`
    degrees counter-clockwise and scale by `zoom` about the centre (W // 2, H // 2), as OpenCV's
    getRotationMatrix2D(centre, angle, zoom) @ translation."""
    a, b = zoom * math.cos(math.radians(angle)), zoom * math.sin(math.radians(angle))
    cx, cy = width // 2, height // 2
    rotate = np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy], [0.0, 0.0, 1.0]])
    translate = np.array([[1.0, 0.0, translate_x], [0.0, 1.0, translate_y], [0.0, 0.0, 1.0]])
    return rotate @ translate


def warp(image: Image.Image, *, zoom: float = 1.0, angle: float = 0.0, translate_x: float = 0.0,
         translate_y: float = 0.0) -> Image.Image:
    """`image` moved by the 2D warp, bicubic, borders replicated (cv2.BORDER_REPLICATE); the identity is exact."""
    if zoom <= 0 or not math.isfinite(zoom):
        raise ValueError(f"`zoom` must be a finite number > 0 but is {zoom}.")
    rgb = image.convert("RGB")
    if zoom == 1.0 and angle == 0.0 and translate_x == 0.0 and translate_y == 0.0:
        return rgb.copy()
    width, height = rgb.size
    inverse = np.linalg.inv(warp_matrix(width, height, zoom=zoom, angle=angle, translate_x=translate_x,
                                        translate_y=translate_y))
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    # grid_sample with align_corners=True: -1 and 1 are the centres of the first and last pixels (OpenCV's
    # integer pixel coordinates); a 1-pixel side has no span, so any coordinate there is its only pixel.
    gx = 2 * src_x / (width - 1) - 1 if width > 1 else np.zeros_like(src_x)
    gy = 2 * src_y / (height - 1) - 1 if height > 1 else np.zeros_like(src_y)
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1))[None]
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float64)).permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(pixels, grid, mode="bicubic", padding_mode="border", align_corners=True)
    out = out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(out, "RGB")


# ------------------------------------------------------------------------------------------- colour


def require_skimage():
    """scikit-image's `exposure` module, or one UserError line saying how to install it (the `motion` extra).
    The film engine may call it before rendering, so a missing extra stops a render before any frame."""
    try:
        from skimage import exposure
    except ImportError:
        raise UserError(f"color_coherence: match_first needs scikit-image; install it with {INSTALL_MOTION}") from None
    return exposure


def match_colors(image: Image.Image, reference: Image.Image) -> Image.Image:
    """`image` with each RGB channel's histogram matched to `reference`'s (any size); 8-bit RGB out."""
    exposure = require_skimage()
    matched = exposure.match_histograms(np.asarray(image.convert("RGB")), np.asarray(reference.convert("RGB")),
                                        channel_axis=-1)
    return Image.fromarray(np.clip(np.rint(matched), 0, 255).astype(np.uint8), "RGB")


# ------------------------------------------------------------------------------------------- painter


class DriftClipPainter:
    """ClipPainterLike over a loaded Painter (any PainterLike): text-to-image for a clip's first frame when no
    picture is given, image-to-image for every frame after it."""

    def __init__(self, painter, *, scheduler: str = "euler", max_frames: int = MAX_FRAMES, speed: dict | None = None):
        if max_frames < 2:
            raise ValueError(f"`max_frames` has to be at least 2 (a conditioning frame and a new one) but is "
                             f"{max_frames}.")
        self.painter = painter
        self.scheduler = scheduler
        self._max_frames = max_frames
        self.speed = dict(speed or {})  # the painter's speed options, when they change pixels (TAESD)

    @property
    def ref(self):
        return self.painter.ref

    @property
    def identity(self) -> dict:
        plan = getattr(self.painter, "plan", None)
        return {"drift": DRIFT_VERSION, "painter": self.painter.ref.as_log(),
                "device": getattr(plan, "device", None), "dtype": getattr(plan, "dtype_name", None),
                "scheduler": self.scheduler, "speed": self.speed, "warp": "bicubic-border-f64"}

    @property
    def max_frames(self) -> int:
        return self._max_frames

    @property
    def takes_conditions(self) -> bool:
        return True

    def call_frames(self, wanted: int) -> int:
        """Any count from 1 on: a drift is painted a frame at a time."""
        if wanted < 1:
            raise ValueError(f"`wanted` has to be at least 1 frame but is {wanted}.")
        return wanted

    def pinned(self, request: ClipRequest) -> dict[int, Image.Image]:
        """The frames the conditions fix: condition c's images are frames c.frame, c.frame + 1, ..."""
        fixed: dict[int, Image.Image] = {}
        for c in request.conditions:
            for n, image in enumerate(c.images):
                fixed[c.frame + n] = image
        return fixed

    def check_inputs(self, request: ClipRequest) -> dict[str, tuple[float, ...]]:
        """Refuse, before any frame is painted, what would fail deep inside or drift somewhere unintended: one
        ValueError naming the argument and its value. Returns every motion field per frame (defaults filled)."""
        n = request.frames
        if n < 1 or n > self._max_frames:
            raise ValueError(f"`request.frames` has to be 1..{self._max_frames} (max_frames) but is {n}.")
        if 0 not in request.prompts or any(not 0 <= k < n for k in request.prompts):
            raise ValueError(f"`request.prompts` needs a prompt at frame 0 and keys in 0..{n - 1} but has keys "
                             f"{sorted(request.prompts)}.")
        seen: set[int] = set()
        for c in request.conditions:
            if c.strength != 1.0:
                raise ValueError(f"`request.conditions` strength must be 1.0 (a drift frame is the picture or is "
                                 f"painted) but is {c.strength} at frame {c.frame}.")
            frames = set(range(c.frame, c.frame + len(c.images)))
            if not c.images or c.frame < 0 or max(frames) >= n or frames & seen:
                raise ValueError(f"`request.conditions` frames must lie in 0..{n - 1} without overlap but one holds "
                                 f"{len(c.images)} images from frame {c.frame}.")
            seen |= frames
            for image in c.images:
                if image.size != (request.width, request.height):
                    raise ValueError(f"`request.conditions` images must be {request.width}x{request.height} but one "
                                     f"at frame {c.frame} is {image.size[0]}x{image.size[1]}.")
        if request.motion is None:
            raise ValueError("`request.motion` is None; the drift engine needs per-frame motion values (zoom, angle, "
                             "translate_x, translate_y, strength).")
        unknown = sorted(set(request.motion) - set(MOTION_FIELDS))
        if unknown:
            raise ValueError(f"`request.motion` has unknown fields {unknown}; known: {list(MOTION_FIELDS)}.")
        motion = {name: tuple(float(v) for v in request.motion.get(name, (default,) * n))
                  for name, default in MOTION_DEFAULTS.items()}
        if "guidance" in request.motion:
            motion["guidance"] = tuple(float(v) for v in request.motion["guidance"])
        for name, values in motion.items():
            if len(values) != n:
                raise ValueError(f"`request.motion[{name!r}]` must hold one value per frame ({n}) but holds "
                                 f"{len(values)}.")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"`request.motion[{name!r}]` must be finite numbers but is {list(values)}.")
        painted = [i for i in range(1, n) if i not in seen]
        for i in painted:
            zoom, strength = motion["zoom"][i], motion["strength"][i]
            if zoom <= 0:
                raise ValueError(f"`request.motion['zoom']` must be > 0 but is {zoom} at frame {i}.")
            if not 0 < strength <= 1:
                raise ValueError(f"`request.motion['strength']` must be in (0, 1] but is {strength} at frame {i}.")
            if int(request.steps * strength) < 1:
                raise ValueError(f"`request.motion['strength']` {strength} at frame {i} x {request.steps} steps runs "
                                 "no image-to-image step (int(steps x strength) < 1): raise steps or strength.")
        return motion

    def paint_clip(self, request: ClipRequest) -> list[Image.Image]:
        """Exactly `request.frames` frames, each the previous one warped and repainted; deterministic for equal
        requests on one device (each frame's noise from its own CPU generator, the warp in float64 on the CPU)."""
        # 1. Check inputs (and that scikit-image is there before the first frame, not after it)
        motion = self.check_inputs(request)
        fixed = self.pinned(request)
        reference = request.color_reference
        if reference is not None:
            require_skimage()

        # 2. Paint frame by frame
        frames: list[Image.Image] = []
        for i in range(request.frames):
            if i in fixed:
                frames.append(fixed[i].convert("RGB"))
                continue
            prompt = request.prompts[max(k for k in request.prompts if k <= i)]
            guidance = motion["guidance"][i] if "guidance" in motion else request.guidance
            seed = (request.seed + i) % 2**31
            if i == 0:  # no picture to start from: the prompt's own still
                params = PaintParams(steps=request.steps, guidance=guidance, width=request.width,
                                     height=request.height, scheduler=self.scheduler)
                init = None
            else:
                params = PaintParams(steps=request.steps, guidance=guidance, width=request.width,
                                     height=request.height, scheduler=self.scheduler, strength=motion["strength"][i])
                init = [warp(frames[-1], zoom=motion["zoom"][i], angle=motion["angle"][i],
                             translate_x=motion["translate_x"][i], translate_y=motion["translate_y"][i])]
            image = self.painter.paint([prompt], params=params, seeds=[seed],
                                       negative_prompts=[request.negative_prompt], init_images=init)[0]

            # 3. Colour coherence: the painted frame on the reference's palette (and so is the next warp's input)
            frames.append(match_colors(image, reference) if reference is not None else image.convert("RGB"))
        return frames
