"""Replaying a logged step: the pieces that verify, fork and the inspect report share.

A chain log is the artwork's score: every step records the input image, caption parameters, prompt, seed,
paint parameters and the hash of the PNG it committed. These helpers check a logged file against its hash,
read committed pixels exactly, load the models a header names (with their revisions) and rebuild a step's
prompt from its caption. The commands are in verify.py (`replay verify`), fork.py (`replay fork`),
lineage.py (`replay show`) and playback.py (`replay play`). Nothing here writes into the chain being read.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.base.files import sha256_file
from zoetrope.loop.chainlog import LOG_NAME, ChainLog

# ------------------------------------------------------------------------------------------- files


@dataclass
class FileCheck:
    """One logged image against the file on disk."""

    name: str
    status: str  # "ok" | "missing" | "edited"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_file(chain: ChainLog, name: str, expected_sha256: str | None) -> FileCheck:
    path = chain.folder / name
    if not path.is_file():
        return FileCheck(name, "missing")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        return FileCheck(name, "edited")
    return FileCheck(name, "ok")


def read_pixels(path: Path | io.BytesIO) -> Image.Image:
    """The committed pixels exactly (no resizing): PNG is lossless, so this is what the chain passed on."""
    with Image.open(path) as image:
        return image.convert("RGB")


# ------------------------------------------------------------------------------------------- models


def environment_differences(header: dict, plan, versions: dict) -> list[str]:
    """Which of device, dtype and library versions differ from the header (byte identity needs all equal)."""
    diffs = []
    if header.get("device") != plan.device:
        diffs.append(f"device {header.get('device')} -> {plan.device}")
    if header.get("dtype") != plan.dtype_name:
        diffs.append(f"dtype {header.get('dtype')} -> {plan.dtype_name}")
    logged = header.get("versions") or {}
    for lib in sorted(set(logged) | set(versions)):
        if logged.get(lib) != versions.get(lib):
            diffs.append(f"{lib} {logged.get(lib)} -> {versions.get(lib)}")
    return diffs


def revision_mismatches(header: dict, painter, captioner) -> list[str]:
    """The header's model ids and revisions against the loaded models."""
    out = []
    for role, model in (("painter", painter), ("captioner", captioner)):
        logged = (header.get("models") or {}).get(role) or {}
        loaded = model.ref.as_log()
        for key in ("id", "revision"):
            if logged.get(key) != loaded.get(key):
                out.append(f"{role} {key}: logged {logged.get(key)!r}, loaded {loaded.get(key)!r}")
    from zoetrope.stages.lora import lora_mismatches, loras_of

    logged_loras = ((header.get("models") or {}).get("painter") or {}).get("loras") or []
    return out + lora_mismatches(logged_loras, loras_of(painter))


def logged_model(chain: ChainLog, role: str, models: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """The model to load for `role`: the `--models` override, else the logged id with its logged revision."""
    logged = (chain.header.get("models") or {}).get(role) or {}
    spec = (models or {}).get(role, logged.get("id"))
    return spec, logged.get("revision") if spec == logged.get("id") else None


def chain_models(chain: ChainLog, models: dict[str, str] | None = None):
    """What the header says to load: ((painter, revision), (captioner, revision)) after the `--models`
    overrides, and the logged LoopConfig (its speed settings and LoRAs paint too) or None."""
    from zoetrope.settings.loop import LoopConfig

    logged = chain.header.get("models") or {}
    if not (isinstance(logged, dict) and all(isinstance(logged.get(role), dict) and "id" in logged[role]
                                             for role in ("painter", "captioner"))):
        raise UserError(f"{chain.folder / LOG_NAME}:1: header names no painter/captioner models")
    config = LoopConfig.model_validate(chain.header["config"]) if "config" in chain.header else None
    return logged_model(chain, "painter", models), logged_model(chain, "captioner", models), config


def open_chain_models(chain: ChainLog, models: dict[str, str] | None = None, device: str | None = None):
    """Load the models the header names (with their revisions), or the `--models` overrides."""
    from zoetrope.loop.run import open_models

    (painter_spec, painter_revision), (captioner_spec, captioner_revision), config = chain_models(chain, models)
    # The logged speed settings matter: a TAESD decoder paints other pixels than the full VAE.
    speed, loras = (config.speed, config.loras) if config is not None else (None, ())
    return open_models(painter_spec, captioner_spec, (painter_revision, captioner_revision), device, speed,
                       loras=loras)


# ------------------------------------------------------------------------------------------- steps


def expected_prompt(config: dict, record: dict) -> str | None:
    """The prompt the logged config builds from the logged caption (and the word the guard appended)."""
    from zoetrope.settings.loop import PromptSettings

    if record.get("caption") is None:
        return None
    word = record["appended_word"]
    caption = record["caption"] if word is None else f"{record['caption']}, {word}"
    return PromptSettings.model_validate(config["prompt"]).build(caption)


def pixel_stats(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    """Max absolute channel difference and PSNR in dB (inf when equal) of two same-sized RGB images."""
    if a.size != b.size:
        return 255, 0.0
    x, y = np.asarray(a, np.int16), np.asarray(b, np.int16)
    diff = np.abs(x - y)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return int(diff.max()), (math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
