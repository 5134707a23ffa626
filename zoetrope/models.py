"""The only module that loads weights.

A model is named by a preset (`sd-turbo`, `blip-base`, ...), a local folder, a Hub id, or `tiny`. `tiny`
builds the real diffusers and transformers classes from tiny configs with seeded random weights (like
diffusers' `get_dummy_components`), writes them once with `save_pretrained` and loads them back with
`from_pretrained`, so tests and offline smoke runs exercise every real code path. A model that cannot be
loaded is an error that says what to do: never a silent swap to other weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from zoetrope.errors import ModelLoadError, UserError

Role = Literal["painter", "captioner"]
TINY = "tiny"
TINY_BUILD_VERSION = "1"  # bump when the tiny builder changes: it names the cache folder


@dataclass(frozen=True)
class Preset:
    name: str
    role: Role
    repo_id: str
    note: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sd-turbo", "painter", "stabilityai/sd-turbo", "SD 2.1 distilled: 1-4 steps, guidance 0, 512 px"),
        Preset("sdxl-turbo", "painter", "stabilityai/sdxl-turbo", "SDXL distilled: 1-4 steps, guidance 0, 512 px"),
        Preset("sd15", "painter", "stable-diffusion-v1-5/stable-diffusion-v1-5", "SD 1.5: 25+ steps, guidance 7"),
        Preset("blip-base", "captioner", "Salesforce/blip-image-captioning-base", "BLIP base captioner"),
        Preset("blip-large", "captioner", "Salesforce/blip-image-captioning-large", "BLIP large captioner"),
    )
}


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what to load (`source`, a folder or Hub id) and what to log (`id`, `revision`)."""

    role: Role
    id: str
    source: str
    revision: str | None = None

    def as_log(self) -> dict:
        return {"id": self.id, "revision": self.revision}


@dataclass(frozen=True)
class DevicePlan:
    """Device and dtype, chosen once per process."""

    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def pick_device(device: str | None = None, half: Literal["fp16", "bf16"] = "fp16") -> DevicePlan:
    """cuda > mps > cpu; half precision on accelerators, fp32 on the CPU (CPU half is slow and lossy)."""
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device == "cpu":
        return DevicePlan("cpu", torch.float32)
    return DevicePlan(device, torch.bfloat16 if half == "bf16" else torch.float16)


def cache_dir() -> Path:
    """Where Zoetrope keeps what it builds (tiny models); `ZOETROPE_CACHE` overrides."""
    return Path(os.environ.get("ZOETROPE_CACHE") or Path.home() / ".cache" / "zoetrope")


def resolve(role: Role, spec: str, revision: str | None = None) -> ModelRef:
    """Turn a user's model name into a ModelRef, or raise a UserError naming what was expected."""
    spec = spec.strip()
    if spec == TINY:
        return ModelRef(role, TINY, str(ensure_tiny(role)), f"tiny-v{TINY_BUILD_VERSION}")
    if spec in PRESETS:
        preset = PRESETS[spec]
        if preset.role != role:
            raise UserError(f"model '{spec}' is a {preset.role} preset, but a {role} was asked for")
        return ModelRef(role, preset.repo_id, preset.repo_id, revision)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return ModelRef(role, str(folder.resolve()), str(folder.resolve()), revision)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ModelRef(role, spec, spec, revision)
    names = ", ".join(n for n, p in PRESETS.items() if p.role == role)
    raise UserError(
        f"{role} '{spec}' is not a preset ({names}, tiny), an existing folder, or a Hub id 'owner/name'"
    )


def _load_error(ref: ModelRef, exc: BaseException) -> ModelLoadError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    preset = next((p.name for p in PRESETS.values() if p.repo_id == ref.id), None)
    pull = f"`python run_loop.py models pull {preset or ref.id}`"
    return ModelLoadError(
        f"cannot load {ref.role} '{ref.id}' ({reason}). Run {pull} on a connected machine, "
        f"pass a local model folder, or use --models tiny to try the installation offline"
    )


def load_painter_pipelines(ref: ModelRef, plan: DevicePlan):
    """Text-to-image and image-to-image pipelines sharing one set of weights on `plan.device`."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    kwargs = {"dtype": plan.dtype, "safety_checker": None, "requires_safety_checker": False}
    if ref.revision and ref.id != TINY:
        kwargs["revision"] = ref.revision
    try:
        text2img = AutoPipelineForText2Image.from_pretrained(ref.source, **kwargs)
    except Exception as exc:  # any failure is reported as one actionable line; nothing is substituted
        raise _load_error(ref, exc) from exc
    text2img.to(plan.device)
    text2img.set_progress_bar_config(disable=True)
    img2img = AutoPipelineForImage2Image.from_pipe(text2img)
    img2img.set_progress_bar_config(disable=True)
    return text2img, img2img


def load_captioner_model(ref: ModelRef, plan: DevicePlan):
    """BLIP model (eval mode, on `plan.device`) and its processor."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    kwargs = {"revision": ref.revision} if ref.revision and ref.id != TINY else {}
    try:
        processor = BlipProcessor.from_pretrained(ref.source, **kwargs)
        model = BlipForConditionalGeneration.from_pretrained(ref.source, dtype=plan.dtype, **kwargs)
    except Exception as exc:  # reported as one actionable line; nothing is substituted
        raise _load_error(ref, exc) from exc
    return model.to(plan.device).eval(), processor


def load_painter(spec: str, plan: DevicePlan, revision: str | None = None):
    from zoetrope.paint import Painter

    ref = resolve("painter", spec, revision)
    text2img, img2img = load_painter_pipelines(ref, plan)
    return Painter(text2img, img2img, ref, plan)


def load_captioner(spec: str, plan: DevicePlan, revision: str | None = None):
    from zoetrope.caption import Captioner

    ref = resolve("captioner", spec, revision)
    model, processor = load_captioner_model(ref, plan)
    return Captioner(model, processor, ref, plan)


def quiet_libraries() -> None:
    """Silence the libraries' download/loading progress bars: Zoetrope prints its own progress."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()


# ---------------------------------------------------------------------------------------------- tiny


def ensure_tiny(role: Role) -> Path:
    """Build the tiny models once into the cache (atomically: a crash never leaves half a model)."""
    root = cache_dir() / f"tiny-v{TINY_BUILD_VERSION}"
    if not (root / "complete").exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=root.parent))
        try:
            build_tiny_painter(staging / "painter")
            build_tiny_captioner(staging / "captioner")
            (staging / "complete").write_text(TINY_BUILD_VERSION)
            try:
                os.replace(staging, root)
            except OSError:  # another process finished first; its copy is identical
                if not (root / "complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root / role


# Words for the tiny BLIP vocabulary: its untrained captions then read as (random) English.
TINY_WORDS = """a an the of with on in at by near under over and two three small large old young
cat dog man woman child girl boy horse bird fish boat car train bicycle tree flower forest field river sea
lake mountain sky cloud sun moon star city street road bridge house window door room table chair bed
painting photo drawing portrait statue wall garden beach snow rain fire light shadow night morning
red blue green yellow white black grey golden dark bright sitting standing walking running flying
looking holding wearing playing sleeping empty crowded distant quiet""".split()


def _tiny_clip_tokenizer():
    """A byte-level CLIP tokenizer: every byte is a token (so any script is encodable), plus merges that make
    each of TINY_WORDS one token, so English prompts have realistic token counts."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for ch in alphabet:
            vocab[ch + suffix] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in [*TINY_WORDS, "photograph", "engraving", "gallery", "painted", "picture"]:
        symbols = [*word[:-1], word[-1] + "</w>"]
        merged = symbols[0]
        for symbol in symbols[1:]:
            if (merged, symbol) not in merges:
                merges.append((merged, symbol))
            merged += symbol
            vocab.setdefault(merged, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_tiny_painter(folder: Path) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    torch.manual_seed(0)
    # Four blocks: the same 8x latent downsampling as the real SD VAE, so sizes behave as in production.
    vae = AutoencoderKL(
        block_out_channels=[16, 16, 32, 32], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=8, layers_per_block=1, sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=77, layer_norm_eps=1e-5,
    ))
    # sd-turbo's scheduler: Euler, trailing timesteps (non-ancestral, so walks do not flicker).
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)


def build_tiny_captioner(folder: Path) -> None:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *TINY_WORDS]
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    # initializer_range 0.2 (not 0.02): untrained captions then depend on the image, as real ones do.
    text = dict(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=64, bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"],
        eos_token_id=vocab["[SEP]"], pad_token_id=vocab["[PAD]"], initializer_range=0.2,
    )
    vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                  image_size=32, patch_size=8, initializer_range=0.2)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=32, initializer_range=0.2)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


# ------------------------------------------------------------------------------------------- the Hub


def pull(preset_or_id: str, revision: str | None = None) -> Path:
    """Download a preset (or Hub id) into the Hugging Face cache so later runs work offline."""
    from huggingface_hub import snapshot_download

    repo_id = PRESETS[preset_or_id].repo_id if preset_or_id in PRESETS else preset_or_id
    if repo_id.count("/") != 1:
        raise UserError(f"models pull: '{preset_or_id}' is not a preset ({', '.join(PRESETS)}) or a Hub id")
    # Skip the alternative weight formats that diffusers repos also carry (ckpt, onnx, flax...).
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # reported as one line; the user's network or id is at fault
        raise ModelLoadError(f"models pull {preset_or_id}: could not download {repo_id} ({str(exc).splitlines()[0][:200]})") from exc


def cached_revision(repo_id: str) -> str | None:
    """The commit of `repo_id` in the local Hugging Face cache, or None when it is not there."""
    from huggingface_hub import try_to_load_from_cache

    for marker in ("model_index.json", "config.json"):
        found = try_to_load_from_cache(repo_id, marker)
        if isinstance(found, str):
            return Path(found).parent.name
    return None


def list_models() -> list[dict]:
    rows = [{"name": TINY, "role": "painter+captioner", "id": "built locally",
             "cached": (cache_dir() / f"tiny-v{TINY_BUILD_VERSION}" / "complete").exists(), "note": "random weights, for tests"}]
    for p in PRESETS.values():
        rows.append({"name": p.name, "role": p.role, "id": p.repo_id, "cached": cached_revision(p.repo_id) is not None,
                     "note": p.note})
    return rows


def fingerprint(ref: ModelRef) -> str:
    """A short stable hash of a model reference, for cache keys."""
    return hashlib.sha256(json.dumps(ref.as_log(), sort_keys=True).encode()).hexdigest()[:16]
