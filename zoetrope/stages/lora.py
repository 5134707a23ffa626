"""LoRA styles: low-rank weight deltas (`loras: [{path, weight}]`) fused into the painter once, at load time.

Loaded with diffusers' `load_lora_weights` (its PEFT backend), weighted with `set_adapters`, then fused into
the base weights with `fuse_lora` and the adapter layers removed with `unload_lora_weights`: the painter is
again a plain UNet and text encoder, so its speed paths (the lean denoising loop, per-item kernels,
torch.compile, channels-last) see ordinary layers, and a LoRA costs nothing per image. The img2img
pipeline shares those modules, so both paint with the style.

Each LoRA is named by its file's SHA-256, hashed from the very bytes that are loaded (no second read that
could differ); the chain header, the frame cache key, a film's sidecar and the PNG provenance carry it.
Only `.safetensors` files are read: a pickled checkpoint can run code when it is loaded. A LoRA that does
not fit the painter (other layer shapes, or layers the painter does not have) is one UserError line
`PATH: reason`, raised before anything is painted. Torch, diffusers and peft are imported only inside the
functions that load or build weights, so describing LoRAs (a header, a cache key) needs none of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zoetrope.base.errors import UserError

log = logging.getLogger(__name__)

DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"  # what `save_lora_weights` writes into a folder
ADAPTER_PREFIX = "zoetrope_lora_"  # adapter names are ours (by position), never the user's file names
# The "down" (A) matrix of one LoRA layer in each key format diffusers reads: one per adapted layer.
_DOWN_KEY = re.compile(r"(\.lora_A(\.[^.]+)?\.weight|\.lora\.down\.weight|\.lora_linear_layer\.down\.weight|"
                       r"\.lora_down\.weight)$")


@dataclass(frozen=True)
class LoraRef:
    """A LoRA as applied: its name (the file's stem, as A1111's `<lora:name:weight>`), file, hash, weight."""

    name: str
    path: str
    sha256: str
    weight: float

    def as_header(self) -> dict:
        """What the chain header, the frame key and a film's sidecar record (not the path: it is machine-local)."""
        return {"name": self.name, "sha256": self.sha256, "weight": self.weight}

    def tag(self) -> str:
        """AUTOMATIC1111's prompt syntax for an applied LoRA."""
        return f"<lora:{self.name}:{self.weight:g}>"


def lora_file(path: str | Path) -> Path:
    """The weights file a `loras[i].path` names: a .safetensors file, or a folder as `save_lora_weights` writes it
    (holding pytorch_lora_weights.safetensors); else a UserError `PATH: reason`."""
    path = Path(path).expanduser()
    if path.is_dir():
        inner = path / DIFFUSERS_LORA_FILE
        if not inner.is_file():
            raise UserError(f"{path}: a LoRA folder must hold {DIFFUSERS_LORA_FILE} (as save_lora_weights writes it)")
        path = inner
    elif not path.is_file():
        raise UserError(f"{path}: LoRA file not found")
    if path.suffix != ".safetensors":
        raise UserError(f"{path}: LoRAs are read from .safetensors files only (a pickled checkpoint can run code "
                        "when loaded); convert it to safetensors")
    return path


def lora_name(path: str | Path) -> str:
    """A LoRA's display name: the file's stem, or the folder's name for a diffusers LoRA folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path.name
    return path.parent.name if path.name == DIFFUSERS_LORA_FILE else path.stem


def _entries(loras: Iterable) -> list[tuple[str, float]]:
    """(path, weight) from settings objects (`.path`, `.weight`), mappings, or pairs."""
    out = []
    for item in loras:
        if isinstance(item, dict):
            out.append((str(item["path"]), float(item.get("weight", 1.0))))
        elif hasattr(item, "path"):
            out.append((str(item.path), float(getattr(item, "weight", 1.0))))
        else:
            path, weight = item
            out.append((str(path), float(weight)))
    return out


def describe_loras(loras: Iterable) -> list[LoraRef]:
    """The LoRAs' names and hashes without loading them (torch-free); a missing file is `PATH: reason`."""
    refs = []
    for path, weight in _entries(loras):
        file = lora_file(path)
        refs.append(LoraRef(lora_name(path), str(file), hashlib.sha256(file.read_bytes()).hexdigest(), weight))
    return refs


def loras_of(painter) -> list[LoraRef]:
    """The LoRAs fused into a painter (none for a painter loaded without, or a test fake)."""
    return list(getattr(painter, "loras", ()) or ())


# ------------------------------------------------------------------------------------------- loading


def _read(path: str, weight: float):
    """(LoraRef, state dict) from one read of the file: the hash is of exactly the bytes that are loaded."""
    from safetensors.torch import load as load_safetensors

    file = lora_file(path)
    data = file.read_bytes()
    try:
        state = load_safetensors(data)
    except Exception as exc:  # a truncated or foreign file: one line naming it
        raise UserError(f"{file}: not a readable safetensors file ({_first_line(exc)})") from None
    return LoraRef(lora_name(path), str(file), hashlib.sha256(data).hexdigest(), weight), state


def _first_line(exc: BaseException) -> str:
    """The telling line of a library error: a `size mismatch` line when there is one, else the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return next((line for line in lines if "size mismatch" in line), lines[0])[:240]


@contextlib.contextmanager
def _quiet(logger_name: str):
    """No log records from `logger_name` inside: a failure is reported once, by our UserError."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _down_matrices(keys: Iterable[str]) -> int:
    return sum(1 for key in keys if _DOWN_KEY.search(key))


def _loaded_matrices(pipe, adapter: str) -> int:
    """How many layers of the pipeline's LoRA-loadable modules took an A matrix of `adapter`."""
    needle = f".lora_A.{adapter}."
    count = 0
    for component in pipe._lora_loadable_modules:
        module = getattr(pipe, component, None)
        if module is not None:
            count += sum(1 for name, _ in module.named_parameters() if needle in name)
    return count


def fuse_loras(pipe, loras: Iterable, painter_id: str = "painter") -> list[LoraRef]:
    """Load, weight and fuse `loras` (settings with `.path`/`.weight`, mappings, or (path, weight) pairs) into a
    text-to-image pipeline's weights, then drop the adapter layers. Call it before torch.compile.

    A LoRA that does not fit raises a UserError `PATH: reason`: layers of other shapes (diffusers' size
    mismatch), or layers the painter does not have (diffusers only warns about those; a partly applied
    style would be a silent substitute, so any A matrix that found no layer is refused)."""
    entries = _entries(loras)
    if not entries:
        return []
    if not hasattr(pipe, "load_lora_weights"):
        raise UserError(f"loras: the painter '{painter_id}' ({type(pipe).__name__}) cannot load LoRAs")
    refs, names = [], []
    try:
        for i, (path, weight) in enumerate(entries):
            ref, state = _read(path, weight)
            name = f"{ADAPTER_PREFIX}{i}"
            try:
                converted, _ = pipe.lora_state_dict(dict(state))  # kohya/A1111 keys -> diffusers keys
                expected = _down_matrices(converted)
                if expected == 0:
                    raise UserError(f"{ref.path}: holds no LoRA layers that diffusers reads (keys such as "
                                    f"{next(iter(state), 'none')!r})")
                with _quiet("diffusers.loaders.peft"):  # it logs the reason in many lines; ours is one
                    pipe.load_lora_weights(state, adapter_name=name)
            except UserError:
                raise
            except Exception as exc:  # diffusers' and peft's reasons: size mismatches, unknown key formats
                raise UserError(f"{ref.path}: does not fit the painter '{painter_id}' ({_first_line(exc)})") from None
            names.append(name)
            loaded = _loaded_matrices(pipe, name)
            if loaded < expected:
                raise UserError(f"{ref.path}: does not fit the painter '{painter_id}' ({expected - loaded} of its "
                                f"{expected} LoRA layers name no layer of this painter's UNet or text encoder)")
            refs.append(ref)
        # 2. Weight them, fold them into the base weights, and drop the adapter layers
        pipe.set_adapters(names, adapter_weights=[ref.weight for ref in refs])
        pipe.fuse_lora(components=list(pipe._lora_loadable_modules), adapter_names=names, lora_scale=1.0)
    finally:  # after fuse_lora the deltas stay in the base weights; after a failure nothing of them does
        pipe.unload_lora_weights()
    for ref in refs:
        log.info("LoRA %s fused at weight %g (sha256 %s)", ref.name, ref.weight, ref.sha256)
    return refs


def apply_loras(painter, loras: Iterable) -> list[LoraRef]:
    """Fuse `loras` into a loaded Painter (both of its pipelines share the weights) and record them as
    `painter.loras`, which the chain header, the frame key and the PNG provenance read. Loading a painter with
    `models.load_painter(..., loras=...)` does this before its speed options; here the UNet must not be
    compiled yet."""
    unet = painter.text2img.unet
    if hasattr(unet, "_orig_mod"):
        raise ValueError("`painter` has a compiled UNet; apply LoRAs before torch.compile "
                         "(models.load_painter(..., loras=...) does).")
    refs = fuse_loras(painter.text2img, loras, painter.ref.id)
    painter.loras = tuple(loras_of(painter)) + tuple(refs)
    return refs


def lora_mismatches(logged: Sequence[dict], loaded: Sequence[LoraRef]) -> list[str]:
    """The logged LoRAs ({name, sha256, weight}) against those loaded now, for a resumed or replayed chain."""
    want = [(entry.get("sha256"), float(entry.get("weight", 1.0))) for entry in logged]
    have = [(ref.sha256, ref.weight) for ref in loaded]
    if want == have:
        return []
    shown = lambda pairs: ", ".join(f"{h[:12] if h else None}@{w:g}" for h, w in pairs) or "none"  # noqa: E731
    return [f"loras: logged {shown(want)}, loaded {shown(have)}"]


# ------------------------------------------------------------------------------------------- the tiny LoRA


def build_tiny_lora(folder: Path, seed: int = 0, rank: int = 4, text_encoder: bool = True,
                    painter_folder: Path | None = None) -> Path:
    """A LoRA for the tiny painter (stages/tiny.py), for tests and offline trials: PEFT `LoraConfig` adapters
    with seeded random A and B matrices (B is not zero, so the style changes pixels) on the UNet's attention
    projections and, with `text_encoder`, the text encoder's; saved with `save_lora_weights` into `folder`.
    Returns the .safetensors file."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from transformers import CLIPTextModel

    if painter_folder is None:
        from zoetrope.stages.tiny import ensure_tiny

        painter_folder = ensure_tiny("painter")
    layers = {}
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(painter_folder, subfolder="unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers["unet_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    if text_encoder:
        # peft's own injection: transformers' add_adapter wants a newer peft than the registry has (0.22)
        encoder = CLIPTextModel.from_pretrained(painter_folder, subfolder="text_encoder")
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                           target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]), encoder)
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(encoder))
    StableDiffusionPipeline.save_lora_weights(Path(folder), safe_serialization=True, **layers)
    return Path(folder) / DIFFUSERS_LORA_FILE
