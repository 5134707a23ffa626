"""`replay verify`: regenerate every step of a logged chain and compare it with what was committed.

Verify re-runs each step *from the logged inputs* (the logged input image when it is intact, else the
regenerated one), so one bad step does not hide the others. Where device, dtype and library versions match
the header it expects identical PNG bytes; elsewhere a PSNR tolerance on the pixels, as for a chain of a
`--chains-exact off` wall (painted in a batch on plain batched kernels, regenerated here alone). Nothing is
written.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.base.files import sha256_bytes
from zoetrope.curate.replay import (
    FileCheck,
    check_file,
    environment_differences,
    expected_prompt,
    open_chain_models,
    pixel_stats,
    read_pixels,
    revision_mismatches,
)
from zoetrope.loop.chainlog import START_IMAGE, ChainLog, encode_png, painter_of, read_chain

DEFAULT_MIN_PSNR = 40.0  # dB; below this a step regenerated on other hardware "does not reproduce"


def differences(header: dict, plan, versions: dict) -> list[str]:
    """Why identical bytes cannot be expected: the environment's differences from the header, and a wall
    chain painted on batched kernels (`--chains-exact off`), whose pixels depend on the rest of its batch."""
    found = environment_differences(header, plan, versions)
    wall = header.get("wall") or {}
    if wall.get("exact") is False:
        found.append(f"painted in a batch of {wall.get('chains')} chains with --chains-exact off")
    return found


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


def verify_chain(chain: ChainLog, painter, captioner, plan, versions: dict, min_psnr: float = DEFAULT_MIN_PSNR,
                 on_step: Callable[[StepCheck], None] = lambda check: None) -> VerifyReport:
    """Regenerate every step from its logged inputs and compare with what was committed."""
    from zoetrope.settings.params import CaptionParams, PaintParams

    header = chain.header
    painter_entry = painter_of(header)
    environment = differences(header, plan, versions)
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
        png = encode_png(image, record, painter_entry, chain.written_as(record["step"]))
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


# ------------------------------------------------------------------------------------------- a folder


@dataclass(frozen=True)
class Environment:
    """Where the regeneration runs, against the header: no differences means byte identity is expected."""

    differences: list[str]
    device: str
    dtype_name: str
    min_psnr: float


def environment_line(env: Environment) -> str:
    if env.differences:
        return (f"environment differs from the header ({'; '.join(env.differences)}): "
                f"comparing within PSNR >= {env.min_psnr} dB")
    return f"environment matches the header ({env.device}, {env.dtype_name}): expecting identical bytes"


def chain_to_verify(folder: Path, min_psnr: float | None) -> tuple[ChainLog, float]:
    """The chain in `folder` and the PSNR bound (the default when None), or the one line that says why not."""
    if min_psnr is not None and not min_psnr > 0:
        raise UserError(f"--min-psnr: must be greater than 0 dB (got {min_psnr})")
    chain = read_chain(folder)  # a dropped torn line is logged as a warning
    if not chain.steps:
        raise UserError(f"{folder}: the chain has no steps to verify")
    return chain, DEFAULT_MIN_PSNR if min_psnr is None else min_psnr


def verify_folder(folder: Path, models: dict[str, str] | None = None, device: str | None = None,
                  min_psnr: float | None = None, on_environment: Callable[[Environment], None] = lambda env: None,
                  on_step: Callable[[StepCheck], None] = lambda check: None) -> VerifyReport:
    """Read the chain in `folder`, load the models its header names (or the `models` overrides), and verify
    every step. `on_environment` hears where the run stands before the first step (models take a while to
    load); `on_step` hears each step's check as it is made."""
    from zoetrope.loop.run import library_versions

    chain, min_psnr = chain_to_verify(folder, min_psnr)
    painter, captioner, plan = open_chain_models(chain, models, device)
    versions = library_versions()
    on_environment(Environment(differences(chain.header, plan, versions), plan.device, plan.dtype_name, min_psnr))
    return verify_chain(chain, painter, captioner, plan, versions, min_psnr, on_step=on_step)
