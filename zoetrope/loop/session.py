"""The loop pipeline: a LoopRequest (everything `loop` was asked for) -> a chain folder that grows step by step.

`run_loop(request, on_line, stop)` reads as numbered steps, as film/render.py's `render_film` does: 1 check,
2 lock, 3 load models, 4 header or resume, 5 services, 6 run. Everything a user can get wrong is found in step
1, before a folder is made or a model loads, because a mistake found after an 8-second model load (or after a
header was written) costs time and leaves a half-begun chain that then refuses the corrected command: the
request's own values, every mistake in the config (as `check` lists them), the start image, the output folder,
each role's model name, and the display's port, which is bound there and handed to the display in step 5.
A start that fails after step 2 removes what it made (header, start.png, the lock, and the folder when this run
created it). Nothing here parses argv, prints or exits: lines for humans go to `on_line`, the result is data, a
user's mistake is a UserError and a step that keeps failing runner.StepFailed (the CLI's exit 3). The display
server lives in the gallery room, above this one, so it comes in as `DisplayHooks`.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zoetrope.base.errors import UserError
from zoetrope.loop.chainlog import LOCK_NAME, LOG_NAME, lock_chain, require_new_chain
from zoetrope.settings.loop import LoopConfig

if TYPE_CHECKING:  # the run's modules load torch: imported when a run begins, so `serve` and `check` stay light
    from zoetrope.loop.run import StopFlag

LOOP_ROLES = ("painter", "captioner")
DEFAULT_CONFIG = Path("loops/counterfeits.yaml")
MAX_CHAINS = 64
__all__ = ["DisplayHooks", "LoopRequest", "LoopResult", "ServiceStart", "check_request", "run_loop", "service_start"]


@dataclass(frozen=True)
class LoopRequest:
    """Everything `loop` is asked for, as typed (paths are not resolved: messages name them as the user did)."""

    config: Path | None = None  # None: loops/counterfeits.yaml when present, else the schema's defaults
    steps: int | None = None
    out: Path | None = None
    resume: Path | None = None
    seed: int | None = None
    chains: int = 1
    chains_exact: str | None = None  # "on" | "off" | None (on)
    start_image: Path | None = None
    start_prompt: str | None = None
    models: str | None = None  # the --models spec: tiny | PAINTER | painter=X,captioner=Y
    device: str | None = None
    speed: dict = field(default_factory=dict)  # a partial `speed` section: attention, channels_last, compile, vae
    ray: str | None = None
    display: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    service: bool = False


@dataclass(frozen=True)
class LoopResult:
    """What a run did: the chain folder (the wall's root with chains > 1) and the steps it committed."""

    folder: Path
    steps: int = 0
    chains: int = 1
    already_at: tuple[int, int] | None = None  # (last step, --steps) when a resumed chain had nothing to do


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass(frozen=True)
class DisplayHooks:
    """The kiosk display, from the gallery room: `bind(host, port)` takes the port now (a UserError when it is
    taken), `start(folder, config, sock, loop_state)` serves on that socket once the chain exists."""

    bind: Callable[[str, int], socket.socket]
    start: Callable[[Path, LoopConfig, socket.socket, Any], Stoppable]


class ConfigErrors(UserError):
    """Several mistakes at once (a config's, as `check` lists them); `lines` holds one message per mistake."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


# ------------------------------------------------------------------------------------- 1. check the request


def parse_models(spec: str | None) -> dict[str, str]:
    """`--models` as {role: model}; a role that is not one of loop's is named, with the roles there are."""
    if not spec:
        return {}
    if spec.strip() == "tiny":
        return dict.fromkeys(LOOP_ROLES, "tiny")
    if "=" not in spec:
        return {"painter": spec.strip()}
    out = {}
    for part in spec.split(","):
        role, eq, name = (s.strip() for s in part.partition("="))
        if role not in LOOP_ROLES:
            raise UserError(f"--models {spec}: {role!r} is not a role of `loop` (its roles: {', '.join(LOOP_ROLES)})")
        if not eq or not name:
            raise UserError(f"--models {spec}: {role}= names no model (expected ROLE=MODEL)")
        out[role] = name
    return out


def check_request(request: LoopRequest) -> None:
    """Raise a UserError naming the option and the value it got; called before anything is read or loaded."""
    r = request
    if r.resume is not None and r.service:
        raise UserError("--service resumes its --out DIR by itself; give --out DIR instead of --resume")
    if r.start_image is not None and r.start_prompt is not None:
        raise UserError("--start-image and --start-prompt: give one of them")
    if r.display and not 0 <= r.port <= 65535:
        raise UserError(f"--port {r.port}: expected 0 to 65535")
    parse_models(r.models)
    if r.resume is not None:
        return  # a resume refuses every option that would change the chain, once its folder is known to be one
    if not 1 <= r.chains <= MAX_CHAINS:
        raise UserError(f"--chains: expected 1 to {MAX_CHAINS} chains, got {r.chains}")
    if r.chains_exact not in (None, "on", "off"):
        raise UserError(f"--chains-exact {r.chains_exact}: expected on or off")
    if r.ray is not None:
        from zoetrope.stages.cluster import parse_address

        if r.chains < 2:
            raise UserError("--ray: runs a wall's chains on Ray workers; give --chains K (K >= 2)")
        parse_address(r.ray)
        if r.chains_exact == "off":  # the workers paint with their own kernels: exact, whatever the header said
            raise UserError("--chains-exact off: Ray workers paint each chain exactly; drop --chains-exact off")
    if r.chains_exact is not None and r.chains == 1:
        raise UserError(f"--chains-exact {r.chains_exact}: applies to --chains K with K > 1")
    if r.chains > 1 and (r.display or r.service):
        raise UserError("--chains runs several chains in the foreground; --display and --service run one chain "
                        "(run one service per chain for a wall)")


# --------------------------------------------------------------------------------- 1. check the inputs


@dataclass
class LoopPlan:
    """What step 1 found: where the chain goes and what it starts from; nothing made or loaded yet."""

    folder: Path
    config: LoopConfig | None  # None for a resume: its config is the log's, read under the lock
    resume: bool
    start_image: Any = None
    folders: list[Path] = field(default_factory=list)
    sock: socket.socket | None = None


@dataclass(frozen=True)
class ServiceStart:
    """What `loop --service --out DIR` does now: resume the chain in `folder`, or start a new one there."""

    folder: Path
    resume: bool


def service_start(out: Path | None, on_restart: str, now: dt.datetime | None = None) -> ServiceStart:
    """A restart finds `out` holding a chain: resume it, or start a new chain beside it (`<out>-<time>`,
    which `serve --latest` follows), as `service.on_restart` says. The first start begins `out` itself."""
    if out is None:
        raise UserError("--service needs --out DIR (the chain it resumes after a restart)")
    if not (out / LOG_NAME).exists():
        return ServiceStart(out, resume=False)
    if on_restart == "resume":
        return ServiceStart(out, resume=True)
    if on_restart != "new":
        raise ValueError(f"`on_restart` must be 'resume' or 'new' but is {on_restart!r}.")
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return ServiceStart(out.with_name(f"{out.name}-{stamp}"), resume=False)


def read_config(r: LoopRequest) -> tuple[LoopConfig, Path | None]:
    """The config the request asks for and its start image's path as typed: every mistake in the file at once
    (one line each, as `check` words them), then the command line's overrides validated as a whole. The image
    path stays as the user wrote it (--start-image, or the config's joined to the config's folder), so a message
    names what they typed; the config holds it absolute, for a resume from any folder."""
    from pydantic import ValidationError

    from zoetrope.settings.parsing import first_error, located_errors, read_yaml_mapping

    path = r.config if r.config is not None or not DEFAULT_CONFIG.is_file() else DEFAULT_CONFIG
    config = LoopConfig()
    if path is not None:
        root, data = read_yaml_mapping(path)
        try:
            config = LoopConfig.model_validate(data, context={"base": str(path.parent)})
        except ValidationError as exc:
            raise ConfigErrors(located_errors(path, root, exc, by_line=True)) from None
    data = config.model_dump()
    typed = None
    if r.start_image is not None:
        typed = r.start_image
    elif r.start_prompt is not None:
        data["start"] = {"image": None, "prompt": r.start_prompt}
    elif config.start.image is not None:
        typed = (path.parent if path else Path()) / config.start.image
    if typed is not None:
        data["start"] = {"image": str(typed.resolve()), "prompt": None}
    if r.seed is not None:
        data["seed"] = r.seed
    if r.steps is not None:
        data["steps"] = r.steps
    data["models"] |= parse_models(r.models)
    if (r.models or "").strip() == "tiny" and data["display"].get("upscale"):  # every role's test model
        data["display"]["upscale"]["model"] = "tiny"
    data["speed"] |= r.speed
    try:
        return LoopConfig.model_validate(data), typed
    except ValidationError as exc:  # an override out of range: name it
        raise UserError(f"command line: {first_error(exc)}") from None


def check_new_folder(folder: Path, ours: frozenset[str] = frozenset()) -> None:
    """A new chain goes into a new or empty folder: never over a chain, and never among other files (`--out
    renders/films` would mix a chain into a film cache). A stale writer lock and `ours` do not count."""
    from zoetrope.base.files import check_writable

    require_new_chain(folder)
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME and p.name not in ours)
        if others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            raise UserError(f"{folder}: not a chain folder and not empty (holds {others[0]}{more}); "
                            "a new chain needs a new or empty folder")
    check_writable(folder, folder=True)


def check_chain_folder(folder: Path) -> None:
    """The folder a resume continues is one: a file, a missing folder and a folder without a log are each named."""
    if folder.is_file():
        raise UserError(f"{folder}: a file, not a chain folder (give the folder that holds chain.jsonl)")
    if not folder.is_dir():
        raise UserError(f"{folder}: no such chain folder")
    if not (folder / LOG_NAME).is_file():
        empty = not any(p.name != LOCK_NAME for p in folder.iterdir())
        raise UserError(f"{folder}: not a chain (no {LOG_NAME} in it); "
                        + (f"start one there with --out {folder}" if empty else "give the folder that holds one"))


def check_inputs(r: LoopRequest, display: DisplayHooks | None) -> LoopPlan:
    """Step 1 past the request: the config, the start image, the folder(s), the models, the display's port."""
    if r.resume is not None:
        plan = check_resume(r, r.resume, given=True)
    else:
        config, start_path = read_config(r)
        if r.service and (start := service_start(r.out, config.service.on_restart)).resume:
            plan = check_resume(r, start.folder, given=False)
        else:
            from zoetrope.base.images import load_image
            from zoetrope.loop.run import check_models, default_run_folder

            start_image = load_image(start_path) if start_path is not None else None
            folder = (start.folder if r.service else r.out) or default_run_folder(config)
            names = [f"chain-{k}" for k in range(1, r.chains + 1)] if r.chains > 1 else []
            check_new_folder(folder, frozenset(names))
            for name in names:
                check_new_folder(folder / name)
            if r.ray is not None and config.loras:  # Ray workers load the bare painter (cluster.ModelSpec)
                raise UserError("--ray: loras are not carried to Ray workers; run the wall without --ray")
            m = config.models
            check_models({"painter": (m.painter, m.painter_revision),
                          "captioner": (m.captioner, m.captioner_revision)}, local=r.ray is None)
            plan = LoopPlan(folder, config, False, start_image, [folder / n for n in names] or [folder])
    if r.display:
        if display is None:
            raise ValueError("`display` hooks are needed for a request with display=True")
        plan.sock = display.bind(r.host, r.port)  # the port is ours before any model loads
    return plan


def check_resume(r: LoopRequest, folder: Path, given: bool) -> LoopPlan:
    """A resume: the folder is a chain, and (when the user typed --resume) no option would change its pictures
    (a service restart ignores the unit's start options)."""
    check_chain_folder(folder)
    typed = (r.config, r.out, r.seed, r.start_image, r.start_prompt, r.models) if given else ()
    if any(v is not None for v in (*typed, r.speed.get("vae"), r.ray, r.chains_exact)) or r.chains != 1:
        raise UserError("--resume continues a chain with its logged settings; only --steps, --device and the speed "
                        "options that keep the pictures the same may be given (to change settings: replay fork)")
    return LoopPlan(folder, None, True, folders=[folder])


# --------------------------------------------------------------------------------------------- the pipeline


def run_loop(request: LoopRequest, on_line: Callable[[str], None] = lambda line: None,
             stop: Callable[[], StopFlag] | None = None, *, display: DisplayHooks | None = None) -> LoopResult:
    """Run the loop a request asks for, to `request.steps` or a stop. `stop` makes the StopFlag when the chain
    starts to run (the CLI's installs the signal handlers then), so a Ctrl-C while models load still stops at
    once; `display` is needed for a request with `display`. A step that keeps failing raises runner.StepFailed."""
    # 1. Check the request, the config, every output, each model name, and take the display's port.
    check_request(request)
    plan = check_inputs(request, display)
    with ExitStack() as held:
        if plan.sock is not None:
            held.callback(plan.sock.close)  # last out: after the display that serves on it has stopped
        # 2. Lock each chain folder (made for it, and removed again if the start fails), held to the end.
        for folder in plan.folders:
            held.enter_context(lock_chain(folder, create=not plan.resume))
            if not plan.resume:
                require_new_chain(folder)  # again under the lock: another run may have begun it meanwhile
        # The run's modules load torch: only now, so a second writer of a resumed chain is refused at once.
        from zoetrope.loop import run

        stop = stop or run.StopFlag
        config, logged, models = plan.config, None, None
        if plan.resume:
            logged, config, models = run.read_resumed(plan.folder, request.steps, request.speed)
            if config.steps is not None and logged.last_step >= config.steps:
                return LoopResult(plan.folder, already_at=(logged.last_step, config.steps))
        if request.ray is not None:  # steps 3 to 6 for a wall whose model calls go to Ray workers
            return run_wall(request, config, plan, on_line, stop())
        # 3. Load the models.
        m = config.models
        names = models or (m.painter, m.captioner, (m.painter_revision, m.captioner_revision))
        painter, captioner, device = run.open_models(*names, request.device, config.speed, config.loras)
        if request.chains > 1:  # steps 4 to 6 for each chain of a wall, side by side (loop/multichain.py)
            from zoetrope.loop.multichain import run_many

            done = run_many(config, request.chains, plan.folder, painter, captioner, device, stop(),
                            plan.start_image, on_step=lambda k, record: on_line(f"[{k}] {run.step_line(record)}"),
                            exact=request.chains_exact != "off")
            return LoopResult(plan.folder, done, request.chains)
        # 4. The header of a new chain, or the resume point of a logged one. The care services are built just
        # before: the budget reads when the log was last written, before this run touches it.
        extras = run.gallery_extras(config, plan.folder, device.device, device.dtype,
                                    request.service or request.display)
        if plan.resume:
            writer, point = run.reopen_logged(logged, config, painter)
        else:
            writer, point = run.start_run(plan.folder, config, plan.start_image, painter, captioner, device)
        on_line(f"resuming {plan.folder} at step {point.next_step}" if plan.resume
                else f"chain {plan.folder} ({device.device}, {device.dtype_name})")
        # 5. Services: the kiosk display, on the port taken in step 1 (energy, policy, budget, watchdog: extras).
        if plan.sock is not None:
            try:
                held.callback(display.start(plan.folder, config, plan.sock, extras.watchdog.state).stop)
            except BaseException:
                run.discard_start(writer, plan.folder, new=not plan.resume)
                raise
        # 6. Run until the step limit or a stop request.
        done = run.drive(config, painter, captioner, writer, point, stop(),
                         on_step=lambda record: on_line(run.step_line(record)), extras=extras)
        return LoopResult(plan.folder, done)


def run_wall(r: LoopRequest, config: LoopConfig, plan: LoopPlan, on_line: Callable[[str], None],
             stop: StopFlag) -> LoopResult:
    """`--chains K --ray ADDRESS`: the chains here, their model calls on Ray workers (loop/wall_ray.py)."""
    from zoetrope.loop.run import step_line
    from zoetrope.loop.wall_ray import open_wall_pool, run_wall_ray

    pool = open_wall_pool(r.ray, config, r.chains, r.device)
    try:
        on_line(f"{r.chains} chains on {pool.describe()}")
        done = run_wall_ray(config, r.chains, plan.folder, pool, stop, plan.start_image,
                            on_step=lambda k, record: on_line(f"[{k}] {step_line(record)}"))
    finally:
        pool.close()
    return LoopResult(plan.folder, done, r.chains)
