"""`replay fork`: a new chain that starts from step N's image of a logged chain, with changed settings.

The fork's config is the parent's with the overrides applied and validated through LoopConfig, so a bad
value is reported as `fork: field: message` before any model loads or any folder is made. Its header
records the parent (run id, step, and the parent's folder relative to the fork's) for `replay show`. The
fork's folder is locked for its writer (chainlog.lock_chain) before any model loads; the Fork holds that lock
until the caller releases it (`Fork.release`), and a fork that fails before its header leaves no folder.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.curate.replay import check_file
from zoetrope.loop.chainlog import ChainLog, read_chain

if TYPE_CHECKING:  # torch-heavy modules, for the annotations only
    from zoetrope.loop.chainlog import ChainWriter, WriterLock
    from zoetrope.loop.run import Resumable
    from zoetrope.settings.loop import LoopConfig
    from zoetrope.stages.device import DevicePlan

# The settings a fork may change, as dotted LoopConfig paths (the CLI's flags map onto these).
FORK_FIELDS = ("seed", "steps", "paint.mode", "paint.strength", "paint.steps", "prompt.prefix", "prompt.suffix",
               "prompt.template", "models.painter", "models.captioner")


def fork_config(chain: ChainLog, from_step: int, overrides: dict) -> LoopConfig:
    """The parent's config with the start image set to step N's image and the overrides ({FORK_FIELDS key:
    value}; None keeps the parent's) applied, validated as a whole."""
    from pydantic import ValidationError

    from zoetrope.settings.loop import LoopConfig
    from zoetrope.settings.parsing import first_error

    data = dict(chain.header["config"])
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    data["start"] = {"image": str(chain.folder / chain.steps[from_step - 1]["image"]), "prompt": None}
    unknown = sorted(set(overrides) - set(FORK_FIELDS))
    if unknown:  # a caller's bug, not a user's mistake
        raise ValueError(f"`overrides` may name {', '.join(FORK_FIELDS)} but names {', '.join(unknown)}")
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


@dataclass
class Fork:
    """A fork ready to run: its folder and header are written, its models loaded; drive it with loop.run.drive."""

    folder: Path
    parent_run: str
    from_step: int
    config: LoopConfig
    painter: object  # stages.paint.Painter
    captioner: object  # stages.caption.Captioner
    plan: DevicePlan
    writer: ChainWriter
    point: Resumable
    lock: WriterLock | None = None  # the fork folder's writer lock, held until `release`

    def release(self) -> None:
        """Drop the writer lock (after the fork has run; its writer holds its own reference while open)."""
        if self.lock is not None:
            self.lock.release()


def prepare_fork(folder: Path, from_step: int, overrides: dict, out: Path | None = None,
                 device: str | None = None) -> Fork:
    """Check everything the caller gave (step, overrides, output folder) before any model is loaded or
    anything written; then load the models and create the fork's folder with its header."""
    from zoetrope.loop.chainlog import lock_chain, require_new_chain
    from zoetrope.loop.run import open_models, start_run

    chain = read_chain(folder)
    start_image = fork_source(chain, from_step)
    config = fork_config(chain, from_step, overrides)
    target = out or default_fork_folder(chain.folder, from_step)
    require_new_chain(target, hint="choose another --out")
    lock = lock_chain(target, create=True)  # ChainBusy when another process writes there
    try:
        require_new_chain(target, hint="choose another --out")  # again, under the lock
        m = config.models
        painter, captioner, plan = open_models(m.painter, m.captioner, (m.painter_revision, m.captioner_revision),
                                               device, config.speed, loras=config.loras)
        writer, point = start_run(target, config, start_image, painter, captioner, plan,
                                  parent=parent_entry(chain, from_step, target))
    except BaseException:
        lock.release()  # and the folder goes too, if nothing was written in it
        raise
    return Fork(target, chain.header["run_id"], from_step, config, painter, captioner, plan, writer, point, lock)
