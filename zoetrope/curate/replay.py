"""Curating a logged chain: verify it reproduces, fork it from a step, walk its lineage, play it back.

A chain log is the artwork's score: every step records the input image, caption parameters, prompt, seed,
paint parameters and the hash of the PNG it committed. Verify re-runs each step *from the logged inputs*
(the logged input image when it is intact, else the regenerated one), so one bad step does not hide the
others. Nothing here writes into the chain being read.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.base.files import sha256_bytes, sha256_file
from zoetrope.loop.chainlog import LOG_NAME, START_IMAGE, ChainLog, encode_png, read_chain

DEFAULT_MIN_PSNR = 40.0  # dB; below this a step regenerated on other hardware "does not reproduce"

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
    return out


def logged_model(chain: ChainLog, role: str, models: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """The model to load for `role`: the `--models` override, else the logged id with its logged revision."""
    logged = (chain.header.get("models") or {}).get(role) or {}
    spec = (models or {}).get(role, logged.get("id"))
    return spec, logged.get("revision") if spec == logged.get("id") else None


def open_chain_models(chain: ChainLog, models: dict[str, str] | None = None, device: str | None = None):
    """Load the models the header names (with their revisions), or the `--models` overrides."""
    from zoetrope.loop.run import open_models

    logged = chain.header.get("models") or {}
    if not (isinstance(logged, dict) and all(isinstance(logged.get(role), dict) and "id" in logged[role]
                                             for role in ("painter", "captioner"))):
        raise UserError(f"{chain.folder / LOG_NAME}:1: header names no painter/captioner models")
    (painter_spec, painter_revision), (captioner_spec, captioner_revision) = (
        logged_model(chain, "painter", models), logged_model(chain, "captioner", models))
    revisions = (painter_revision, captioner_revision)
    # The logged speed settings matter: a TAESD decoder paints other pixels than the full VAE.
    from zoetrope.settings.loop import LoopConfig

    speed = LoopConfig.model_validate(chain.header["config"]).speed if "config" in chain.header else None
    return open_models(painter_spec, captioner_spec, revisions, device, speed)


# ------------------------------------------------------------------------------------------- verify


@dataclass
class StepCheck:
    step: int
    image: str
    file: str  # "ok" | "missing" | "edited"
    caption_ok: bool | None  # None: step has no caption (prompt-started step 1)
    prompt_ok: bool
    identical: bool
    max_diff: int | None = None  # vs the logged pixels; None when the logged image is missing
    psnr: float | None = None
    reproduces: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    folder: Path
    steps: list[StepCheck]
    environment: list[str]
    revisions: list[str]
    start: FileCheck | None
    min_psnr: float

    @property
    def ok(self) -> bool:
        start_ok = self.start is None or self.start.ok
        return start_ok and not self.revisions and all(s.reproduces for s in self.steps)


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


def verify_chain(chain: ChainLog, painter, captioner, plan, versions: dict, min_psnr: float = DEFAULT_MIN_PSNR,
                 on_step: Callable[[StepCheck], None] = lambda check: None) -> VerifyReport:
    """Regenerate every step from its logged inputs and compare with what was committed."""
    from zoetrope.settings.params import CaptionParams, PaintParams

    header = chain.header
    model_id = header["models"]["painter"]["id"]
    environment = environment_differences(header, plan, versions)
    exact = not environment
    start = None
    first = chain.steps[0] if chain.steps else None
    if first is not None and first.get("input_image") is not None:
        start = check_file(chain, first["input_image"], first.get("input_sha256"))
    previous: Image.Image | None = None  # the regenerated image of the previous step
    checks = []
    for record in chain.steps:
        notes: list[str] = []
        file = check_file(chain, record["image"], record.get("image_sha256"))
        # 1. The input image: the logged file when intact, else our regeneration of it
        image_in = None
        name_in = record.get("input_image")
        if name_in is not None:
            input_file = check_file(chain, name_in, record.get("input_sha256"))
            if input_file.ok:
                image_in = read_pixels(chain.folder / name_in)
            elif previous is not None and name_in != START_IMAGE:
                image_in = previous
                notes.append(f"input {name_in} {input_file.status}: used the regenerated image")
        if name_in is not None and image_in is None:
            notes.append(f"input {name_in} is {input_file.status}; "
                         "cannot regenerate this step")
            check = StepCheck(record["step"], record["image"], file.status, None, False, False, notes=notes)
            checks.append(check)
            on_step(check)
            previous = None
            continue
        # 2. Caption with the logged parameters and seed
        caption_ok = None
        if record.get("caption") is not None:
            regenerated = captioner.caption([image_in], CaptionParams(**record["caption_params"]),
                                            seeds=[record["seed"]])[0]
            caption_ok = regenerated == record["caption"]
            if not caption_ok:
                notes.append(f"caption differs: {regenerated!r}")
        wanted = expected_prompt(header["config"], record)
        prompt_ok = wanted is None or wanted == record["prompt"]
        if not prompt_ok:
            notes.append(f"prompt does not follow from caption and template (expected {wanted!r})")
        # 3. Paint the logged prompt with the logged seed and parameters, encode as the writer did
        params = PaintParams(**record["paint_params"])
        image = painter.paint([record["prompt"]], params=params, seeds=[record["seed"]],
                              negative_prompts=[record["negative_prompt"]],
                              init_images=[image_in] if params.strength is not None else None)[0]
        png = encode_png(image, record, model_id, chain.written_as(record["step"]))
        identical = sha256_bytes(png) == record.get("image_sha256")
        max_diff = psnr = None
        if file.status != "missing":
            max_diff, psnr = pixel_stats(read_pixels(chain.folder / record["image"]), image)
            if file.status == "edited":
                notes.append(f"{record['image']} was changed after logging"
                             + (" (pixels identical: re-encoded, provenance lost)" if identical and max_diff == 0 else ""))
        else:
            notes.append(f"{record['image']} is missing")
        # Byte identity where the environment matches the header; else a PSNR tolerance on the pixels
        close = identical if exact else identical or (psnr is not None and psnr >= min_psnr)
        reproduces = close and file.ok and caption_ok is not False and prompt_ok
        check = StepCheck(record["step"], record["image"], file.status, caption_ok, prompt_ok, identical,
                          max_diff, psnr, reproduces, notes)
        checks.append(check)
        on_step(check)
        previous = read_pixels(io.BytesIO(png))
    return VerifyReport(chain.folder, checks, environment, revision_mismatches(header, painter, captioner), start,
                        min_psnr)


def format_check(check: StepCheck) -> str:
    mark = {True: "yes", False: "NO", None: "-"}
    psnr = "-" if check.psnr is None else ("inf" if math.isinf(check.psnr) else f"{check.psnr:.1f}")
    diff = "-" if check.max_diff is None else str(check.max_diff)
    verdict = "ok" if check.reproduces else "FAIL"
    line = (f"{check.step:>6}  {check.image:<17} {check.file:<8} {mark[check.caption_ok]:<7} "
            f"{mark[check.prompt_ok]:<6} {mark[check.identical]:<9} {diff:>4} {psnr:>6}  {verdict}")
    return line + ("  " + "; ".join(check.notes) if check.notes else "")


TABLE_HEADER = f"{'step':>6}  {'image':<17} {'file':<8} {'caption':<7} {'prompt':<6} {'identical':<9} {'diff':>4} {'psnr':>6}  verdict"


def summary_lines(report: VerifyReport) -> list[str]:
    lines = []
    if report.start is not None and not report.start.ok:
        lines.append(f"start image {report.start.name} is {report.start.status}")
    lines += [f"model mismatch: {m}" for m in report.revisions]
    bad = [s for s in report.steps if not s.reproduces]
    for s in bad:
        if s.file != "ok":
            lines.append(f"step {s.step}: {s.image} is {s.file}")
    if report.ok:
        lines.append(f"all {len(report.steps)} steps reproduce")
    elif bad:
        lines.append(f"{len(bad)} of {len(report.steps)} steps do not reproduce: " + ", ".join(str(s.step) for s in bad))
    else:
        lines.append("the chain does not reproduce")
    return lines


# ------------------------------------------------------------------------------------------- fork


def fork_config(chain: ChainLog, from_step: int, overrides: dict):
    """The parent's config with the start image set to step N's image and the overrides applied (validated)."""
    from pydantic import ValidationError

    from zoetrope.settings.loop import LoopConfig
    from zoetrope.settings.parsing import first_error

    data = dict(chain.header["config"])
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    data["start"] = {"image": str(chain.folder / chain.steps[from_step - 1]["image"]), "prompt": None}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (data[section] if section else data)[name] = value
        if section == "models":  # another model: the parent's pinned revision does not apply to it
            data["models"][f"{name}_revision"] = None
    try:
        config = LoopConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"fork: {first_error(exc)}") from None
    return config


def fork_source(chain: ChainLog, from_step: int) -> Image.Image:
    """Step N's image, checked against its logged hash (a fork starts from the image that was logged)."""
    from zoetrope.base.images import load_image

    if not chain.steps:
        raise UserError(f"{chain.folder}: the chain has no steps to fork from")
    if not 1 <= from_step <= chain.last_step:
        raise UserError(f"--from-step must be between 1 and {chain.last_step} but is {from_step}")
    record = chain.steps[from_step - 1]
    check = check_file(chain, record["image"], record.get("image_sha256"))
    if not check.ok:
        raise UserError(f"{chain.folder / record['image']}: the image of step {from_step} is {check.status}; "
                        "cannot fork from it")
    return load_image(chain.folder / record["image"], f"image of step {from_step}")


def default_fork_folder(parent: Path, from_step: int) -> Path:
    """Next to the parent, so `replay show` finds the family."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return parent.parent / f"{parent.name}-fork{from_step}-{stamp}"


def parent_entry(chain: ChainLog, from_step: int, fork_folder: Path) -> dict:
    """`parent` for the fork's header: run id and step, plus the parent's folder relative to the fork's."""
    relative = os.path.relpath(chain.folder.resolve(), fork_folder.resolve().parent)
    return {"run": chain.header["run_id"], "step": from_step, "folder": str(Path("..") / relative)}


# ------------------------------------------------------------------------------------------- lineage


@dataclass
class Family:
    ancestors: list[tuple[dict, Path | None, ChainLog | None]]  # (parent entry, folder, chain), nearest first
    children: list[ChainLog]


def _try_read(folder: Path) -> ChainLog | None:
    try:
        return read_chain(folder) if (folder / LOG_NAME).is_file() else None
    except UserError:
        return None


def find_parent(chain: ChainLog, entry: dict) -> ChainLog | None:
    """The parent's folder: the recorded relative path, else a sibling folder holding that run id."""
    candidates = []
    if entry.get("folder"):
        candidates.append(chain.folder / entry["folder"])
    candidates.append(chain.folder.parent / str(entry.get("run")))
    if chain.folder.parent.is_dir():
        candidates += sorted(p for p in chain.folder.parent.iterdir() if p.is_dir())
    for folder in candidates:
        found = _try_read(folder) if folder.is_dir() else None
        if found is not None and found.header.get("run_id") == entry.get("run") and \
                found.folder.resolve() != chain.folder.resolve():
            return found
    return None


def lineage(chain: ChainLog) -> Family:
    ancestors = []
    seen = {chain.folder.resolve()}
    current = chain
    while current is not None and current.header.get("parent"):
        entry = current.header["parent"]
        found = find_parent(current, entry)
        if found is not None and found.folder.resolve() in seen:
            break  # a cycle (copied folders with the same run id): stop rather than loop
        ancestors.append((entry, found.folder if found else None, found))
        if found is not None:
            seen.add(found.folder.resolve())
        current = found
    children = []
    if chain.folder.parent.is_dir():
        for folder in sorted(p for p in chain.folder.parent.iterdir() if p.is_dir()):
            found = _try_read(folder) if folder.resolve() != chain.folder.resolve() else None
            parent = (found.header.get("parent") or {}) if found else {}
            if found is not None and parent.get("run") == chain.header.get("run_id"):
                children.append(found)
    return Family(ancestors, children)


def lineage_lines(chain: ChainLog) -> list[str]:
    def describe(c: ChainLog) -> str:
        return f"{c.header.get('run_id')}  ({c.last_step} steps)  {os.path.normpath(c.folder)}"

    family = lineage(chain)
    lines = ["lineage (oldest first):"]
    rows = list(reversed(family.ancestors))
    for depth, (entry, _, found) in enumerate(rows):
        indent = "  " * depth
        if depth == 0:
            lines.append(f"  {describe(found) if found else str(entry.get('run')) + '  (not found next to this chain)'}")
        else:
            lines.append(f"  {indent}step {rows[depth - 1][0]['step']} -> "
                         + (describe(found) if found else f"{entry.get('run')}  (not found next to this chain)"))
    this = f"{describe(chain)}  <- this chain"
    if rows:
        lines.append(f"  {'  ' * len(rows)}step {rows[-1][0]['step']} -> {this}")
    else:
        lines.append(f"  {this}")
    if family.children:
        lines.append("forks of this chain found next to it:")
        lines += [f"  step {c.header['parent']['step']} -> {describe(c)}" for c in family.children]
    return lines
