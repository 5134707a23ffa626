"""Running a chain to disk: loading its models, the header, resume, the services around it, a clean stop;
and what a service restart does with its folder (service_start).

The order of a run (check, lock, load, header, services, run) is loop/session.py's `run_loop`, which checks
everything the user gave before a folder is created or a model loads, takes the chain's writer lock
(chainlog.lock_chain) before `open_models` and holds it for the whole run; curate/fork.py does the same for a
fork. The ChainWriter that start_run and reopen_run make takes its own reference, so a library caller that
skips the lock is still one writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

import zoetrope
from zoetrope.base.errors import UserError
from zoetrope.base.files import sha256_file
from zoetrope.base.images import load_image
from zoetrope.loop.chain import Chain
from zoetrope.loop.chainlog import LOG_NAME, START_IMAGE, ChainLog, ChainWriter, make_header
from zoetrope.loop.runner import Extras, Runner
from zoetrope.settings.loop import LoopConfig
from zoetrope.stages.device import DevicePlan

log = logging.getLogger(__name__)


def library_versions() -> dict:
    import diffusers
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "zoetrope": zoetrope.__version__}


def new_header(run_id: str, config: LoopConfig, painter, captioner, plan: DevicePlan,
               parent: dict | None = None, wall: dict | None = None) -> dict:
    """The header of a new chain: the resolved config, the loaded models' ids and revisions, the environment;
    for a chain of `--chains K`, `wall` ({"chains": K, "chain": k, "exact": bool}): with `exact` false its
    images came from plain batched kernels, and `replay verify` compares them by PSNR."""
    header = make_header(run_id, config.model_dump(mode="json"),
                         {"painter": painter_entry(painter), "captioner": captioner.ref.as_log()},
                         library_versions(), plan.device, plan.dtype_name, parent)
    if wall is not None:
        header["wall"] = wall
    return header


def painter_entry(painter) -> dict:
    """The header's painter: id, revision, weights hash and, when LoRAs are fused in, their names, sha256s and
    weights (the PNGs' provenance reads them from here)."""
    from zoetrope.stages.lora import loras_of

    loras = [ref.as_header() for ref in loras_of(painter)]
    return painter.ref.as_header() | ({"loras": loras} if loras else {})


def step_line(record: dict) -> str:
    """One line per committed step, for a person watching: number, seconds, caption (or the start prompt) and
    what happened (events)."""
    caption = record["caption"] if record["caption"] is not None else f"(start prompt) {record['prompt']}"
    flags = "".join(f" [{e['kind']}]" for e in record["events"])
    return f"step {record['step']:>6}  {record['seconds']['total']:7.2f}s  {caption}{flags}"


class StopFlag:
    """A stop request shared with the runner: the first finishes the step in progress, then stops; the
    CLI's signal handler calls `request()` and abandons the step when it returns True (a second request)."""

    def __init__(self):
        self.requested = False

    def request(self) -> bool:
        """Ask the loop to stop; True when it had been asked already (the caller may then abandon the step)."""
        again, self.requested = self.requested, True
        return again


@dataclass
class Resumable:
    """Where a chain stands: its next step, the image that step starts from, and the guard's memory."""

    next_step: int
    image: Image.Image | None
    input_name: str | None
    input_sha256: str | None
    recent_captions: list[tuple[int, str]]


def resume_point(chain: ChainLog, config: LoopConfig) -> Resumable:
    recent = [(s["step"], s["caption"]) for s in chain.steps if s.get("caption") is not None][-config.guard.window:]
    if chain.steps:
        last = chain.steps[-1]
        path = chain.folder / last["image"]
        if not path.is_file():
            raise UserError(f"{path}: the image of step {last['step']} is missing; cannot continue from it")
        if sha256_file(path) != last["image_sha256"]:
            raise UserError(f"{path}: the image of step {last['step']} was changed since it was logged")
        return Resumable(last["step"] + 1, load_image(path, "last step image"), last["image"], last["image_sha256"], recent)
    start = chain.folder / START_IMAGE
    if config.start.image is not None:
        return Resumable(1, load_image(start), START_IMAGE, sha256_file(start), recent)
    return Resumable(1, None, None, None, recent)


def run_chain(
    chain: Chain, writer: ChainWriter, point: Resumable, until: int | None, stop: StopFlag,
    on_step: Callable[[dict], None] = lambda record: None, extras=None,
) -> int:
    """Advance and commit steps until `until` or a stop request; returns how many steps were committed.

    The work is done by runner.Runner (retries, disk-full pause, policy, budget, watchdog); with no
    `extras` it is the plain chain, with retries and the disk-full pause.
    """
    runner = Runner(chain, writer, stop, extras or Extras(), on_step)
    return runner.run(point.image, point.input_name, point.input_sha256, until)


def gallery_extras(config: LoopConfig, folder: Path, device: str = "cpu", dtype=None, heartbeat: bool = False,
                   measure_energy: bool = True):
    """The services around the chain (energy meter, content policy, budget, watchdog), built and checked
    before anything is written: a blocklist file that cannot be read or an energy budget that cannot be
    measured stops here."""
    from zoetrope.loop.care.budget import Budget
    from zoetrope.loop.care.energy import EnergyMeter
    from zoetrope.loop.care.policy import load_policy
    from zoetrope.loop.care.watchdog import HEARTBEAT_NAME, LoopState, Watchdog

    energy = EnergyMeter.open(device) if measure_energy else None
    p = config.policy
    policy = load_policy(p, device, dtype) if (p.blocklist or p.blocklist_file or p.safety_checker) else None
    if policy is not None and config.start.prompt is not None:
        term = policy.blocklist.find(config.prompt.build(config.start.prompt))
        if term is not None:  # the fallback of a blocked step must itself pass the policy
            raise UserError(f"start.prompt: contains the blocked term {term!r} (policy.blocklist)")
    budget = None
    if config.budget.images_per_hour is not None or config.budget.kwh_per_day is not None:
        log_path = Path(folder) / LOG_NAME
        budget = Budget(config.budget, energy is not None,
                        last_start=log_path.stat().st_mtime if log_path.is_file() else None)
    # The heartbeat file is for unattended runs (--service, --display, or a configured path): a plain
    # `loop` leaves its chain folder exactly as before.
    path = None
    if config.service.heartbeat_file:
        path = Path(config.service.heartbeat_file)
    elif heartbeat:
        path = Path(folder) / HEARTBEAT_NAME
    watchdog = Watchdog(LoopState(str(folder)), path)
    return Extras(policy=policy, energy=energy, budget=budget, watchdog=watchdog)


def open_models(painter_spec: str, captioner_spec: str, revisions: tuple[str | None, str | None] = (None, None),
                device: str | None = None, speed=None, loras=()):
    """Load both models once for the run (a load failure is a UserError that says what to do).
    `speed` is a config.SpeedSettings (attention, channels_last, compile, vae); `loras` the config's LoRAs."""
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_captioner, load_painter, quiet_libraries

    quiet_libraries()
    plan = pick_device(device)
    options = speed.options() if speed is not None else SpeedOptions()
    painter = load_painter(painter_spec, plan, revisions[0], options, loras=loras)  # `tiny`: no Hub revision
    captioner = load_captioner(captioner_spec, plan, revisions[1])
    return painter, captioner, plan


def start_run(folder: Path, config: LoopConfig, start_image: Image.Image | None, painter, captioner,
              plan: DevicePlan, parent: dict | None = None, wall: dict | None = None) -> tuple[ChainWriter, Resumable]:
    """Create a chain folder: header (and start.png), durable before the first step begins."""
    header = new_header(folder.name, config, painter, captioner, plan, parent, wall)
    writer = ChainWriter.create(folder, header, start_image)
    if start_image is None:
        return writer, Resumable(1, None, None, None, [])
    return writer, Resumable(1, start_image, START_IMAGE, sha256_file(folder / START_IMAGE), [])


def reopen_run(logged: ChainLog, config: LoopConfig, painter) -> tuple[ChainWriter, Resumable]:
    point = resume_point(logged, config)
    return ChainWriter.reopen(logged), point


def drive(config: LoopConfig, painter, captioner, writer: ChainWriter, point: Resumable, stop: StopFlag,
          on_step: Callable[[dict], None] = lambda record: None, extras: Extras | None = None) -> int:
    """Run one chain until `config.steps` or a stop request; returns the steps committed. A step that keeps
    failing raises runner.StepFailed (the CLI exits 3 for the supervisor to restart the loop)."""
    if extras is None:
        plan = getattr(painter, "plan", None)
        extras = gallery_extras(config, writer.folder, plan.device if plan else "cpu", plan.dtype if plan else None)
    chain = Chain(config, captioner, extras.painter_for(painter), next_step=point.next_step,
                  recent_captions=point.recent_captions)
    from zoetrope.loop.display import open_display_cache  # `display.upscale`: copies for the kiosk only

    display = open_display_cache(config, writer.folder, getattr(painter, "plan", None))
    try:
        return run_chain(chain, writer, point, config.steps, stop, extras=extras,
                         on_step=display.wrap(on_step) if display is not None else on_step)
    finally:
        if display is not None:
            display.close()


def default_run_folder(config: LoopConfig, root: Path = Path("renders/chains")) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{config.name}-{stamp}"


# ----------------------------------------------------------------- the steps of loop/session.py's run_loop


def check_models(models: dict[str, tuple[str, str | None]], local: bool = True) -> None:
    """Resolve every role's model name, and find it on this machine when the Hub cannot be used, before any
    model loads: a bad captioner is reported before the painter's seconds of loading, not after."""
    from zoetrope.stages.models import from_cache_only, resolve

    refs = [resolve(role, spec, revision) for role, (spec, revision) in models.items()]
    if local:
        for ref in refs:
            from_cache_only(ref)


def read_resumed(folder: Path, steps: int | None, speed: dict):
    """The log of the chain to resume (read under its lock), its config with --steps and the speed options
    applied, and the logged (painter, captioner, revisions), each found before any model loads."""
    from zoetrope.loop.chainlog import read_chain

    logged = read_chain(folder)
    config = LoopConfig.model_validate(logged.header["config"])
    config = config.model_copy(update={"steps": steps if steps is not None else config.steps,
                                       "speed": config.speed.model_copy(update=speed)})
    p, c = logged.header["models"]["painter"], logged.header["models"]["captioner"]
    check_models({"painter": (p["id"], p["revision"]), "captioner": (c["id"], c["revision"])})
    return logged, config, (p["id"], c["id"], (p["revision"], c["revision"]))


def reopen_logged(logged: ChainLog, config: LoopConfig, painter) -> tuple[ChainWriter, Resumable]:
    """reopen_run, once the painter's fused LoRAs are those the chain was logged with."""
    from zoetrope.stages.lora import lora_mismatches, loras_of

    if changed := lora_mismatches(logged.header["models"]["painter"].get("loras") or [], loras_of(painter)):
        raise UserError(f"{logged.folder}: {changed[0]}; a chain resumes with the LoRA files it was logged with")
    return reopen_run(logged, config, painter)


def discard_start(writer: ChainWriter, folder: Path, new: bool) -> None:
    """A start that failed before its first step: close the writer and, for a chain this run began, remove its
    header and start image (the lock's release then removes the folder if this run made it)."""
    writer.close()
    if new:
        for name in (START_IMAGE, LOG_NAME):
            (folder / name).unlink(missing_ok=True)
