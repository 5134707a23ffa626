"""The records of chain.jsonl and the text chunks of the step PNGs: their names, shapes, schema versions and
migrations. Pure functions of their arguments; reader.py and writer.py do the file I/O."""

from __future__ import annotations

import datetime as dt
import json
import re

from PIL import Image

from zoetrope.base import png
from zoetrope.base.errors import UserError

LOG_NAME = "chain.jsonl"
START_IMAGE = "start.png"
SCHEMA_VERSION = 2  # v2: what the runner and the repetition guard did are fields (attempt, recaptioned, appended_word)
STEP_IMAGE_PATTERN = re.compile(r"^step-(\d{6,})\.png$")


class ChainLogError(UserError):
    """A chain folder or log that cannot be read as a chain."""


def step_image_name(step: int) -> str:
    return f"step-{step:06d}.png"



# ------------------------------------------------------------------------------------------- PNG files


_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029]")
_KEYWORD = re.compile(r"(negative prompt)\s*:", re.IGNORECASE)


def infotext_safe(text: str) -> str:
    """A prompt as one infotext line that readers cannot misparse: line breaks become spaces and a
    "Negative prompt:" inside it loses its colon (readers split the text on that keyword). The `zoetrope`
    chunk keeps the exact text."""
    return _KEYWORD.sub(r"\1 -", _LINE_BREAKS.sub(" ", text))


def a1111_parameters(record: dict, painter: dict, written_as: int = SCHEMA_VERSION) -> str:
    """AUTOMATIC1111's infotext, so common image tools show how the image was made. `painter` is the
    header's {"id", "revision", "hash"} (and "loras", tagged `<lora:name:weight>` after the prompt). v1 steps wrote
    the prompts raw and no `Model hash`; v2 makes them safe (`infotext_safe`) and adds the hash when there was one."""
    from zoetrope.settings.params import SAMPLER_NAMES

    p = record["paint_params"]
    v2 = written_as >= 2
    fields = [
        f"Steps: {p['steps']}", f"Sampler: {SAMPLER_NAMES.get(p['scheduler'], p['scheduler'])}",
        f"CFG scale: {p['guidance']}", f"Seed: {record['seed']}", f"Size: {p['width']}x{p['height']}",
        *([f"Model hash: {painter['hash']}"] if v2 and painter.get("hash") else []),
        f"Model: {painter['id']}",
    ]
    if p.get("strength") is not None:
        fields.append(f"Denoising strength: {p['strength']}")
    prompt, negative = record["prompt"], record["negative_prompt"]
    if v2:
        prompt, negative = infotext_safe(prompt), infotext_safe(negative)
    if tags := lora_tags(painter):  # A1111 names the LoRAs an image was painted with in its prompt
        prompt = f"{prompt}, {tags}" if prompt else tags
    return f"{prompt}\nNegative prompt: {negative}\n" + ", ".join(fields)


def lora_tags(painter: dict) -> str:
    """AUTOMATIC1111's `<lora:name:weight>` for each LoRA of the header's painter entry ("" without LoRAs)."""
    return " ".join(f"<lora:{entry['name']}:{float(entry['weight']):g}>" for entry in painter.get("loras") or ())


def provenance_record(record: dict, written_as: int = SCHEMA_VERSION) -> dict:
    """The step record as embedded in its PNG: without timings (so equal runs give equal bytes) or its own hash,
    in the shape of the schema version the step was written in (a migrated v1 step keeps its v1 chunk)."""
    dropped = {"image_sha256", "seconds", "energy_j"} | (set(V2_STEP_FIELDS) if written_as < 2 else set())
    return {k: v for k, v in record.items() if k not in dropped}


def painter_of(header: dict) -> dict:
    """The header's painter entry, {"id", "revision"} and, since v2, "hash" when the weights had one."""
    return (header.get("models") or {}).get("painter") or {}


def _loras_entry(painter: dict) -> dict:
    """The LoRAs ({name, sha256, weight}) in a PNG's `zoetrope` chunk: the image names the style it was painted
    with, as the header does (absent without LoRAs, so those PNGs keep their bytes)."""
    return {"loras": painter["loras"]} if painter.get("loras") else {}


def encode_png(image: Image.Image, record: dict, painter: dict, written_as: int = SCHEMA_VERSION) -> bytes:
    """The step PNG exactly as the writer makes it (verify re-encodes a regenerated image through this)."""
    return png.encode(image, {
        "parameters": a1111_parameters(record, painter, written_as),
        "zoetrope": json.dumps(provenance_record(record, written_as) | _loras_entry(painter), ensure_ascii=False,
                               sort_keys=True),
    })


# ------------------------------------------------------------------------------------------- records


def make_header(run_id: str, config: dict, models: dict, versions: dict, device: str, dtype: str,
                parent: dict | None = None) -> dict:
    """The header line: everything a replay needs to load the same models with the same settings."""
    return {
        "kind": "header", "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config, "models": models, "versions": versions, "device": device, "dtype": dtype, "parent": parent,
    }


def step_record(step, input_name: str | None, input_sha256: str | None, energy_j: float | None = None) -> dict:
    """A loop.chain.Step as one chain.jsonl line, keys in the documented order (`image_sha256` is filled on
    commit)."""
    return {
        "kind": "step", "step": step.step, "input_image": input_name, "input_sha256": input_sha256,
        "caption": step.caption, "caption_params": step.caption_params, "prompt": step.prompt,
        "negative_prompt": step.negative_prompt, "seed": step.seed, "paint_params": step.paint_params,
        "attempt": step.attempt, "recaptioned": step.recaptioned, "appended_word": step.appended_word,
        "image": step_image_name(step.step), "image_sha256": None, "seconds": step.seconds,
        "energy_j": energy_j, "events": step.events,
    }



# ------------------------------------------------------------------------------------------- versions


V2_STEP_FIELDS = ("attempt", "recaptioned", "appended_word")


def _step_v1_to_v2(record: dict) -> dict:
    """v1 kept what the guard and the runner did only inside `events` (`actions: ["sample_caption", "reseed",
    "lexicon:<word>"]`, re-seed events with `attempt`); v2 has them as fields. The events stay as logged."""
    events = record.get("events") or []
    guard = [e for e in events if e.get("kind") == "repetition_guard"]
    actions = [a for e in guard for a in e.get("actions") or []]
    word = next((a.removeprefix("lexicon:") for a in actions if a.startswith("lexicon:")), None)
    attempt = max((e["attempt"] for e in events if isinstance(e.get("attempt"), int)), default=0)
    return record | {"attempt": attempt, "recaptioned": bool(guard), "appended_word": word}


# One function per version step: MIGRATIONS[v] turns a version-v (header, step) into version v + 1.
MIGRATIONS = {1: (lambda header: header, _step_v1_to_v2)}


def check_version(header: dict, where: str) -> int:
    version = header.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ChainLogError(f"{where}: header has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ChainLogError(
            f"{where}: schema_version {version} is newer than this Zoetrope reads ({SCHEMA_VERSION}); upgrade Zoetrope"
        )
    return version


def migrate_header(header: dict, where: str) -> dict:
    """Bring a header of any schema version ever written up to SCHEMA_VERSION (one migration per version)."""
    version = check_version(header, where)
    for v in range(version, SCHEMA_VERSION):
        header = MIGRATIONS[v][0](header)
    return header | {"schema_version": SCHEMA_VERSION}


def migrate_step(record: dict, from_version: int) -> dict:
    for v in range(from_version, SCHEMA_VERSION):
        record = MIGRATIONS[v][1](record)
    return record
