"""Upscalers: images in, images exactly `scale` times larger out, tile by tile so a 4K frame fits in memory.

Two families behind one class:
- diffusers' StableDiffusionLatentUpscalePipeline (x2, preset `sd-x2-latent-upscaler`) and
  StableDiffusionUpscalePipeline (x4, preset `sd-x4-upscaler`), from a preset, a folder, a Hub id or `tiny`;
- Real-ESRGAN-family weights (`.pth`, `.safetensors`: ESRGAN, Real-ESRGAN, SwinIR, ...) through spandrel, which
  detects the architecture from the file. spandrel imports torchvision, which does not load beside the CPU torch
  on every machine, so it is the optional extra `esrgan`; where it cannot be imported, loading one is one line
  saying why. Architectures are never copied here: spandrel maintains them.

Tiling: the image is cut into tiles of `tile` input pixels that overlap by at least `overlap`, spread evenly so
each axis is covered exactly; each tile is upscaled on its own and the results are blended with linear ramps
across each overlap (complementary where two tiles meet, so a seam fades from one tile into the next), then
normalised by the summed weights. A tile's noise comes from its own CPU `torch.Generator`, seeded from the call's
seed and the tile's index (`tile_seed`), so a seed gives the same pixels on every device, and an image's result
does not depend on the other images of the call (they are upscaled one by one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.base.extras import install_hint
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.models import apply_quiet, from_cache_only, load_error, pin_revision, resolve
from zoetrope.stages.presets import TINY, ModelRef, cache_dir

TILING_VERSION = 1  # bump when tiling or blending changes pixels: it is part of `identity`
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")  # what spandrel's ModelLoader.load_from_file reads

# The diffusers classes and the factor each upscales by; presets are known before anything is loaded.
PIPELINE_SCALES = {"StableDiffusionLatentUpscalePipeline": 2, "StableDiffusionUpscalePipeline": 4}
PRESET_SCALES = {"sd-x2-latent-upscaler": 2, "sd-x4-upscaler": 4}

# Tile sizes in input pixels, and why:
# - x2 latent: 512 -> 1024, the size the model was trained at (SD's 512 px latents, 64x64, doubled); a 4K frame
#   (1920x1080 in) is 5 x 3 tiles, each costing what one 1024 px image does.
# - x4: 128 -> 512, the model's training crops; its VAE decodes at the output size with SD 2's wide decoder, the
#   memory peak of this pipeline (a whole 1080p frame in one call needs tens of GB), so tiles keep it to one 512 px
#   decode. 32 px of overlap (128 px out) leaves room for the ramp.
# - spandrel: 512 in (2048 out for x4): ESRGAN-family networks are convolutional with a receptive field of a few
#   dozen pixels, so a 32 px overlap hides the seams, and 512 keeps one tile's activations under a few GB in fp16.
TILES = {"latent-x2": (512, 64), "x4": (128, 32), "spandrel": (512, 32)}
STEPS = {"latent-x2": 20, "x4": 25}  # diffusers' examples use 20 for x2; 25 DDIM steps for x4 (its default is 75)
TINY_STEPS = 2  # the tiny models are for tests and smoke runs: steps only cost time there
GUIDANCE = {"latent-x2": 0.0, "x4": 9.0}  # diffusers' documented settings (x2: prompt-free; x4: its default)
X4_NOISE_LEVEL = 20  # the x4 pipeline's default noise added to the low-res image


def tile_seed(seed: int, index: int) -> int:
    """The seed of tile `index` of a call seeded `seed`: a hash, so neighbouring seeds share no tile noise."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{index}".encode()).digest()[:8], "big") & (2**63 - 1)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the tiles covering `length` pixels: as few as overlap by at least `overlap`, spread evenly."""
    if tile >= length:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(size: int, before: int, after: int) -> torch.Tensor:
    """A tile's weights along one axis: rising linearly over the `before` pixels it shares with the previous
    tile, falling over the `after` it shares with the next, 1 elsewhere. Sampled at pixel centres, so two
    complementary ramps over one overlap sum to exactly 1 there."""
    weight = torch.ones(size)
    k = torch.arange(size, dtype=torch.float32) + 0.5
    if before:
        weight = torch.minimum(weight, k / before)
    if after:
        weight = torch.minimum(weight, (size - k) / after)
    return weight


def tiled(image: torch.Tensor, scale: int, tile: int, overlap: int,
          run: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """Upscale a (3, H, W) image by `scale` with `run(tile (1, 3, h, w), tile_index) -> (1, 3, h*scale, w*scale)`
    on overlapping tiles (row-major indices), blended with linear ramps. Accumulates in float32 on the CPU:
    a 3840x2160 result costs 130 MB there, and only one tile at a time is on the device."""
    _, height, width = image.shape
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)
    out = torch.zeros(3, height * scale, width * scale)
    total = torch.zeros(height * scale, width * scale)
    index = 0
    for row, y in enumerate(ys):
        wy = _ramp(th * scale, _shared(ys, row, th, -1) * scale, _shared(ys, row, th, 1) * scale)
        for col, x in enumerate(xs):
            wx = _ramp(tw * scale, _shared(xs, col, tw, -1) * scale, _shared(xs, col, tw, 1) * scale)
            piece = run(image[None, :, y:y + th, x:x + tw], index)
            expected = (1, 3, th * scale, tw * scale)
            if tuple(piece.shape) != expected:
                raise RuntimeError(f"the upscaler returned a tile of shape {tuple(piece.shape)}, not {expected}")
            weight = wy[:, None] * wx[None, :]
            window = (slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            out[(slice(None), *window)] += piece[0].float().cpu() * weight
            total[window] += weight
            index += 1
    return out.div_(total)


def _shared(starts: list[int], i: int, size: int, side: int) -> int:
    """Pixels tile i shares with its neighbour on `side` (-1: before, 1: after); 0 at the image's edge."""
    j = i + side
    if not 0 <= j < len(starts):
        return 0
    return max(0, size - abs(starts[i] - starts[j]))


def load_upscaler(spec: str, scale: int, plan: DevicePlan, revision: str | None = None, *,
                  tile: int | None = None, overlap: int | None = None) -> Upscaler:
    """The upscaler named by `spec` on `plan`: a preset, a diffusers folder or Hub id, `tiny` (x2 or x4 by
    `scale`), or a `.pth`/`.safetensors` file (spandrel). `scale` must be what the model does; `tile`/`overlap`
    (input pixels) default to the family's (TILES). Failures are one UserError/ModelLoadError line."""
    if scale not in (2, 4):
        raise UserError(f"upscale.scale: must be 2 or 4, not {scale!r}")
    if Path(spec).suffix.lower() in WEIGHT_SUFFIXES and not Path(spec).is_dir():
        backend = _load_spandrel(Path(spec).expanduser(), scale, plan)
    else:
        backend = _load_diffusers(spec.strip(), scale, plan, revision)
    default_tile, default_overlap = TILES[backend.kind]
    tile = default_tile if tile is None else tile
    overlap = min(default_overlap, tile // 2) if overlap is None else overlap
    return Upscaler(backend, plan, tile, overlap)


def _load_diffusers(spec: str, scale: int, plan: DevicePlan, revision: str | None) -> _Pipeline:
    if spec in PRESET_SCALES and PRESET_SCALES[spec] != scale:  # said before any download or load
        raise UserError(f"upscaler '{spec}' upscales x{PRESET_SCALES[spec]}, but upscale.scale is {scale}")
    ref = resolve("upscaler", spec, revision)
    if ref.id == TINY:  # one tiny folder holds both: x2 (latent) and x4
        ref = ModelRef("upscaler", TINY, str(Path(ref.source) / f"x{scale}"), ref.revision)
    cache_only = from_cache_only(ref)  # before diffusers is even imported: offline is said at once
    import diffusers

    apply_quiet()
    kwargs = {"local_files_only": cache_only} | ({"revision": ref.revision} if ref.revision and ref.id != TINY else {})
    try:
        class_name = diffusers.DiffusionPipeline.load_config(ref.source, **kwargs).get("_class_name")
    except Exception as exc:  # reported as one actionable line; nothing is substituted
        raise load_error(ref, exc) from exc
    if class_name not in PIPELINE_SCALES:
        raise ModelLoadError(f"upscaler '{ref.id}' is a {class_name} pipeline, not one of {', '.join(PIPELINE_SCALES)}")
    if PIPELINE_SCALES[class_name] != scale:
        raise UserError(f"upscaler '{ref.id}' ({class_name}) upscales x{PIPELINE_SCALES[class_name]}, "
                        f"but upscale.scale is {scale}")
    extra = {"safety_checker": None, "watermarker": None} if PIPELINE_SCALES[class_name] == 4 else {}
    try:
        pipe = getattr(diffusers, class_name).from_pretrained(ref.source, dtype=plan.dtype, **kwargs, **extra)
    except Exception as exc:  # reported as one actionable line; nothing is substituted
        raise load_error(ref, exc) from exc
    pipe.to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    return _Pipeline(pipe, pin_revision(ref), scale)


def _load_spandrel(path: Path, scale: int, plan: DevicePlan) -> _Spandrel:
    if not path.is_file():
        raise UserError(f"{path}: no such upscaler weights file")
    try:
        import spandrel
    except Exception as exc:  # ImportError, or torchvision failing to load its operators beside this torch
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: ESRGAN-family upscalers need spandrel ({install_hint('esrgan')}), which needs "
                        f"torchvision: {reason}") from None
    try:
        model = spandrel.ModelLoader(device=plan.device).load_from_file(path)
    except Exception as exc:  # unknown architecture, corrupt file...: one line naming the file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(f"{path}: spandrel cannot load it ({reason})") from exc
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.input_channels != 3 or model.output_channels != 3:
        raise ModelLoadError(f"{path}: a {model.architecture.name} model is not an RGB image-to-image upscaler")
    if model.scale != scale:
        raise UserError(f"{path}: this {model.architecture.name} model upscales x{model.scale}, "
                        f"but upscale.scale is {scale}")
    # Half precision where the architecture supports it (as on the painter's device); else fp32, recorded.
    dtype = plan.dtype if (plan.dtype == torch.float16 and model.supports_half) or (
        plan.dtype == torch.bfloat16 and model.supports_bfloat16) else torch.float32
    model.to(plan.device, dtype).eval()
    from zoetrope.base.files import sha256_file_remembered

    digest = sha256_file_remembered(path, cache_dir() / "sha256.json")
    ref = ModelRef("upscaler", str(path.resolve()), str(path.resolve()), None, digest[:10])
    return _Spandrel(model, ref, dtype, digest)


class _Pipeline:
    """A diffusers upscaling pipeline run on one tile: the tile in [0, 1], its generator, the prompt, steps."""

    def __init__(self, pipe, ref: ModelRef, scale: int):
        self.pipe, self.ref, self.scale = pipe, ref, scale
        self.kind = "latent-x2" if scale == 2 else "x4"
        self.steps = TINY_STEPS if ref.id == TINY else STEPS[self.kind]
        self.dtype = pipe.unet.dtype
        self.settings = {"guidance": GUIDANCE[self.kind]} | ({"noise_level": X4_NOISE_LEVEL} if scale == 4 else {})
        down = 2 ** (len(pipe.unet.down_blocks) - 1)
        if scale == 2:  # the UNet runs on doubled latents, whose sides its K blocks need as multiples of `down`
            self.unit = pipe.vae_scale_factor * down // 2  # 32 (and 64 at least: its last block pads by 1)
            self.minimum = 2 * self.unit
        else:  # the UNet runs at the image's own size and pads odd sides; the VAE needs its factor
            self.unit, self.minimum = pipe.vae_scale_factor, max(pipe.vae_scale_factor, down)

    def __call__(self, tile: torch.Tensor, prompt: str, generator: torch.Generator, steps: int) -> torch.Tensor:
        # An empty prompt skips guidance: its two halves would be equal, so it would only double the work.
        guidance = self.settings["guidance"] if prompt else 0.0
        extra = {"noise_level": self.settings["noise_level"]} if self.scale == 4 else {}
        out = self.pipe(prompt=prompt, image=tile, num_inference_steps=steps, guidance_scale=guidance,
                        generator=generator, output_type="pt", **extra).images
        return out.float().cpu()


class _Spandrel:
    """A spandrel ImageModelDescriptor: deterministic and prompt-free, so prompt, seed and steps are unused."""

    kind = "spandrel"
    steps = None

    def __init__(self, model, ref: ModelRef, dtype: torch.dtype, digest: str):
        self.model, self.ref, self.scale, self.dtype = model, ref, model.scale, dtype
        self.settings = {"architecture": model.architecture.name, "sha256": digest}
        self.unit, self.minimum = 1, 1  # spandrel pads a tile to its architecture's size requirements itself

    def __call__(self, tile: torch.Tensor, prompt: str, generator: torch.Generator, steps: int | None) -> torch.Tensor:
        return self.model(tile.to(self.model.device, self.dtype)).float().cpu()


class Upscaler:
    """Images in, images exactly `scale` times larger out (see the module docstring for tiling and noise)."""

    def __init__(self, backend: _Pipeline | _Spandrel, plan: DevicePlan, tile: int, overlap: int):
        if not isinstance(tile, int) or tile < backend.minimum or tile % backend.unit:
            raise ValueError(f"`tile` has to be a multiple of {backend.unit} of at least {backend.minimum} for this "
                             f"upscaler but is {tile!r}.")
        if not isinstance(overlap, int) or not 0 <= 2 * overlap <= tile:
            raise ValueError(f"`overlap` has to be from 0 to half the tile ({tile // 2}) but is {overlap!r}.")
        self._backend, self.plan, self.tile, self.overlap = backend, plan, tile, overlap

    @property
    def ref(self) -> ModelRef:
        return self._backend.ref

    @property
    def scale(self) -> int:
        return self._backend.scale

    @property
    def steps(self) -> int | None:
        """Denoising steps when `upscale` is not given any (None: the model does not denoise)."""
        return self._backend.steps

    @property
    def identity(self) -> dict:
        """Everything that changes the pixels besides the call's images, prompt, seed and steps: for cache keys."""
        return {"upscaler": self.ref.as_log(), "kind": self._backend.kind, "scale": self.scale, "tile": self.tile,
                "overlap": self.overlap, "steps": self.steps, **self._backend.settings, "tiling": TILING_VERSION,
                "device": self.plan.device, "dtype": str(self._backend.dtype).removeprefix("torch.")}

    def check_inputs(self, images: list[Image.Image], prompt: str, seed: int, steps: int | None) -> None:
        """Refuse what the model cannot take, naming the argument and the value it got."""
        if not isinstance(images, list) or not images:
            raise ValueError(f"`images` has to be a non-empty list of PIL images but is {images!r}.")
        if bad := next((im for im in images if not isinstance(im, Image.Image) or im.mode != "RGB"), None):
            what = f"a {bad.mode} image" if isinstance(bad, Image.Image) else f"a {type(bad).__name__}"
            raise ValueError(f"`images` have to be RGB PIL images but one is {what}.")
        sizes = sorted({im.size for im in images})
        if len(sizes) > 1:
            raise ValueError(f"`images` have to share one size but have {', '.join(f'{w}x{h}' for w, h in sizes)}.")
        # Tiles are valid sizes, so only a side shorter than a tile (which the tile then spans) is constrained.
        (width, height), unit, low = sizes[0], self._backend.unit, self._backend.minimum
        if any(side < self.tile and (side % unit or side < low) for side in (width, height)):
            raise ValueError(f"`images` sides under the tile ({self.tile} px) have to be multiples of {unit} px of at "
                             f"least {low} px for upscaler '{self.ref.id}' x{self.scale} but are {width}x{height}.")
        if not isinstance(prompt, str):
            raise ValueError(f"`prompt` has to be a str but is {type(prompt).__name__} ({prompt!r}).")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"`seed` has to be a non-negative int but is {seed!r}.")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise ValueError(f"`steps` has to be a positive int but is {steps!r}.")

    def upscale(self, images: list[Image.Image], prompt: str = "", seed: int = 0,
                steps: int | None = None) -> list[Image.Image]:
        """Each image `scale` times larger (8-bit RGB), tile by tile; `steps` defaults to `self.steps`."""
        self.check_inputs(images, prompt, seed, steps)
        steps = steps or self.steps

        def run(piece: torch.Tensor, index: int) -> torch.Tensor:
            return self._backend(piece, prompt, torch.Generator("cpu").manual_seed(tile_seed(seed, index)), steps)

        results = []
        for image in images:
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(image.height, image.width, 3)
            big = tiled(pixels.permute(2, 0, 1).float() / 255.0, self.scale, self.tile, self.overlap, run)
            # Rounded as diffusers' numpy_to_pil does: one quantisation, after blending.
            data = big.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
            results.append(Image.fromarray(data, "RGB"))
        return results
