"""Command line: `python run_loop.py {loop,models,replay,inspect,serve,install-service,render,check,scene,join}`.

`loop` and `models` are here; every other subcommand module exposes `register(subparsers)`, which adds its
parser and sets `func`. A user's mistake (UserError) is printed as one line and exits 2; there is no
traceback for it. A loop step that keeps failing exits 3 (cli/foreground.py). Module-level imports stay
torch-free, so `check` and `serve` start without loading a model library.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.cli import check, gallery, join, render, replay, scene
from zoetrope.cli.foreground import EXIT_STEP_FAILED, progress_line, run_in_foreground, stop_on_signals
from zoetrope.cli.options import add_model_options, parse_models, speed_overrides

# Modules that add subcommands besides `loop` and `models` (each has `register(subparsers)`).
COMMANDS = (replay, gallery, render, check, scene, join)
COMMAND_MODULES: tuple[str, ...] = tuple(module.__name__ for module in COMMANDS)

__all__ = ["EXIT_STEP_FAILED", "add_model_options", "build_parser", "drive_in_foreground", "main", "parse_models",
           "progress_line", "speed_overrides", "stop_on_signals"]


def drive_in_foreground(config, painter, captioner, writer, point, extras=None, echo=print) -> int:
    """Run one chain with a progress line per step until done or stopped by Ctrl-C or SIGTERM (the handlers
    are installed here). A step that keeps failing exits with EXIT_STEP_FAILED (3)."""
    return run_in_foreground(config, painter, captioner, writer, point, stop_on_signals(), extras, echo)


# ------------------------------------------------------------------------------------------------ loop


def register_loop(sub) -> None:
    p = sub.add_parser("loop", help="run the caption <-> paint chain (endless unless --steps)")
    p.add_argument("config", nargs="?", type=Path, help="loop config YAML (default: loops/counterfeits.yaml)")
    add_model_options(p)
    p.add_argument("--steps", type=int, help="stop after step N (a resumed chain counts its earlier steps)")
    p.add_argument("--out", type=Path, help="chain folder (default renders/chains/<name>-<time>)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the chain in DIR after its last step")
    p.add_argument("--seed", type=int, help="base seed (overrides the config)")
    p.add_argument("--chains", type=int, default=1, metavar="K",
                   help="K independent chains batched together, in DIR/chain-1..K with seeds seed..seed+K-1")
    p.add_argument("--chains-exact", choices=("on", "off"), default=None,
                   help="on (default): each chain paints exactly what it would alone (per-item kernels); "
                        "off: plain batched kernels, faster, and `replay verify` compares by PSNR")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--start-image", type=Path, metavar="PATH")
    start.add_argument("--start-prompt", metavar="TEXT")
    p.add_argument("--ray", metavar="ADDRESS", help="with --chains K: the chains' model calls on Ray workers (local:N, "
                   "auto or ray://host:port; see docs/distributed.md)")
    p.add_argument("--display", action="store_true", help="also serve the kiosk display (see `serve`)")
    p.add_argument("--service", action="store_true",
                   help="unattended (systemd): with --out DIR, a restart resumes DIR (or starts anew, by config)")
    gallery.add_display_options(p)
    p.set_defaults(func=cmd_loop)


def loop_config_from_args(args: argparse.Namespace):
    """The loop config the command line asks for: the YAML (default loops/counterfeits.yaml when present)
    with the start, seed, steps, --models and speed options applied, validated as a whole."""
    from pydantic import ValidationError

    from zoetrope.settings.loop import LoopConfig, load_loop_config
    from zoetrope.settings.parsing import first_error

    path = args.config
    if path is None and Path("loops/counterfeits.yaml").is_file():
        path = Path("loops/counterfeits.yaml")
    config = load_loop_config(path)
    base = path.parent if path else Path.cwd()
    data = config.model_dump()
    if config.start.image is not None:
        data["start"]["image"] = str((base / config.start.image).resolve())
    if args.start_image is not None:
        data["start"] = {"image": str(args.start_image.resolve()), "prompt": None}
    if args.start_prompt is not None:
        data["start"] = {"image": None, "prompt": args.start_prompt}
    if args.seed is not None:
        data["seed"] = args.seed
    if args.steps is not None:
        data["steps"] = args.steps
    data["models"] |= parse_models(args.models)
    if args.models == "tiny" and data["display"].get("upscale"):  # every role's test model: the kiosk's too
        data["display"]["upscale"]["model"] = "tiny"
    data["speed"] |= speed_overrides(args)
    try:
        return LoopConfig.model_validate(data)
    except ValidationError as exc:  # an override out of range: name it
        raise UserError(f"command line: {first_error(exc)}") from None


def cmd_loop(args: argparse.Namespace) -> int:
    """A new chain, a resumed one (--resume DIR), or under --service whichever a restart calls for."""
    if args.resume is not None:
        if args.service:
            raise UserError("--service resumes its --out DIR by itself; give --out DIR instead of --resume")
        return resume_loop(args, args.resume, given=True)
    config = loop_config_from_args(args)
    if args.service:
        from zoetrope.gallery.service import service_start

        start = service_start(args.out, config.service.on_restart)
        if start.resume:
            return resume_loop(args, start.folder, given=False)
        return new_loop(args, config, start.folder)
    return new_loop(args, config, args.out)


def resume_loop(args: argparse.Namespace, folder: Path, given: bool) -> int:
    """Continue the chain in `folder` with its logged settings. `given`: the user typed --resume, so options
    that would change the pictures are refused (a service restart ignores the unit's start options)."""
    from zoetrope.loop.chainlog import lock_chain

    typed = (args.config, args.out, args.seed, args.start_image, args.start_prompt, args.models) if given else ()
    if any(v is not None for v in (*typed, args.vae, args.ray, args.chains_exact)) or args.chains != 1:
        raise UserError("--resume continues a chain with its logged settings; only --steps, --device and the speed "
                        "options that keep the pictures the same may be given (to change settings: replay fork)")
    # One writer per chain: the lock is taken before the log is read or a model loads, so a second writer
    # stops here at once (ChainBusy, exit 2), and held until this process is done with the chain.
    with lock_chain(folder):
        return _resume_locked(args, folder)


def _resume_locked(args: argparse.Namespace, folder: Path) -> int:
    from zoetrope.loop.chainlog import read_chain
    from zoetrope.loop.run import gallery_extras, open_models, reopen_run
    from zoetrope.settings.loop import LoopConfig

    logged = read_chain(folder)
    config = LoopConfig.model_validate(logged.header["config"])
    config = config.model_copy(update={
        "steps": args.steps if args.steps is not None else config.steps,
        "speed": config.speed.model_copy(update=speed_overrides(args)),
    })
    if config.steps is not None and logged.last_step >= config.steps:
        print(f"{folder}: already at step {logged.last_step} of {config.steps}; nothing to do")
        return 0
    models = logged.header["models"]
    painter, captioner, plan = open_models(
        models["painter"]["id"], models["captioner"]["id"],
        (models["painter"]["revision"], models["captioner"]["revision"]), args.device, config.speed, config.loras,
    )
    from zoetrope.stages.lora import lora_mismatches, loras_of

    if changed := lora_mismatches(models["painter"].get("loras") or [], loras_of(painter)):
        raise UserError(f"{folder}: {changed[0]}; a chain resumes with the LoRA files it was logged with")
    extras = gallery_extras(config, folder, plan.device, plan.dtype, args.service or args.display)
    writer, point = reopen_run(logged, config, painter)
    print(f"resuming {folder} at step {point.next_step}", flush=True)
    return run_with_display(args, folder, config, painter, captioner, writer, point, extras)


def new_loop(args: argparse.Namespace, config, out: Path | None) -> int:
    """Start a chain in `out` (default renders/chains/<name>-<time>); K chains side by side with --chains K."""
    from contextlib import ExitStack

    from zoetrope.base.images import load_image
    from zoetrope.loop.chainlog import lock_chain, require_new_chain
    from zoetrope.loop.run import default_run_folder

    # Everything the user gave is checked before anything is loaded or written.
    start_image = load_image(config.start.image) if config.start.image else None
    folder = out or default_run_folder(config)
    require_new_chain(folder)
    if not 1 <= args.chains <= 64:
        raise UserError(f"--chains: expected 1 to 64 chains, got {args.chains}")
    if args.ray is not None:  # the address is checked (one line) before any folder is made
        from zoetrope.stages.cluster import parse_address

        if args.chains < 2:
            raise UserError("--ray: runs a wall's chains on Ray workers; give --chains K (K >= 2)")
        parse_address(args.ray)
        if config.loras:  # Ray workers load the bare painter (stages/cluster.ModelSpec has no LoRAs)
            raise UserError("--ray: loras are not carried to Ray workers; run the wall without --ray")
        if args.chains_exact == "off":  # the workers paint with their own kernels: exact, whatever the header said
            raise UserError("--chains-exact off: Ray workers paint each chain exactly; drop --chains-exact off")
    if args.chains_exact is not None and args.chains == 1:
        raise UserError(f"--chains-exact {args.chains_exact}: applies to --chains K with K > 1")
    if args.chains > 1 and (args.display or args.service):
        raise UserError("--chains runs several chains in the foreground; --display and --service run one chain "
                        "(run one service per chain for a wall)")
    # Then the writer lock of each chain folder (made for it, and removed again if the run ends before its
    # header is written), before any model loads, held until the run is over.
    folders = [folder] if args.chains == 1 else [folder / f"chain-{k}" for k in range(1, args.chains + 1)]
    with ExitStack() as locks:
        for chain_folder in folders:
            locks.enter_context(lock_chain(chain_folder, create=True))
            require_new_chain(chain_folder)  # again under the lock: another run may have begun it meanwhile
        return _new_locked(args, config, folder, start_image)


def _new_locked(args: argparse.Namespace, config, folder: Path, start_image) -> int:
    from zoetrope.loop.run import gallery_extras, open_models, start_run

    if args.ray is not None:  # the chains here, their model calls on Ray workers (loop/wall_ray.py)
        from zoetrope.loop.wall_ray import open_wall_pool, run_wall_ray

        pool = open_wall_pool(args.ray, config, args.chains, args.device)
        try:
            print(f"{args.chains} chains on {pool.describe()}", flush=True)
            done = run_wall_ray(config, args.chains, folder, pool, stop_on_signals(), start_image,
                                on_step=lambda k, record: print(f"[{k}] {progress_line(record)}", flush=True))
        finally:
            pool.close()
        print(f"{done} steps written to {folder}/chain-1..{args.chains}", flush=True)
        return 0
    m = config.models
    painter, captioner, plan = open_models(m.painter, m.captioner, (m.painter_revision, m.captioner_revision),
                                           args.device, config.speed, config.loras)
    if args.chains > 1:
        from zoetrope.loop.multichain import run_many

        done = run_many(config, args.chains, folder, painter, captioner, plan, stop_on_signals(), start_image,
                        on_step=lambda k, record: print(f"[{k}] {progress_line(record)}", flush=True),
                        exact=args.chains_exact != "off")
        print(f"{done} steps written to {folder}/chain-1..{args.chains}", flush=True)
        return 0
    extras = gallery_extras(config, folder, plan.device, plan.dtype, args.service or args.display)
    writer, point = start_run(folder, config, start_image, painter, captioner, plan)
    print(f"chain {folder} ({plan.device}, {plan.dtype_name})", flush=True)
    return run_with_display(args, folder, config, painter, captioner, writer, point, extras)


def run_with_display(args: argparse.Namespace, folder: Path, config, painter, captioner, writer, point,
                     extras) -> int:
    """Drive the chain in the foreground, with the kiosk display in a thread of this process if asked."""
    display = None
    if args.display:
        display = gallery.start_display(folder, config, args.host, args.port, extras.watchdog.state)
    try:
        done = drive_in_foreground(config, painter, captioner, writer, point, extras=extras,
                                   echo=lambda line: print(line, flush=True))
    finally:
        if display is not None:
            display.stop()
    print(f"{done} steps written to {folder}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- models


def register_models(sub) -> None:
    p = sub.add_parser("models", help="list presets and what is cached; pull a preset for offline use")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="presets, their Hub ids, and whether they are in the local cache")
    pull = msub.add_parser("pull", help="download a preset (or Hub id) into the Hugging Face cache")
    pull.add_argument("preset")
    pull.add_argument("--revision")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    from zoetrope.stages import models

    if args.models_command == "pull":
        path = models.pull(args.preset, args.revision)
        print(f"{args.preset}: cached at {path}")
        return 0
    for row in models.list_models():
        mark = "cached" if row["cached"] else "-"
        print(f"{row['name']:<11} {row['role']:<18} {mark:<7} {row['id']:<45} {row['note']}")
    return 0


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_loop.py", description="Zoetrope: caption <-> paint loops and films.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    register_loop(sub)
    register_models(sub)
    for module in COMMANDS:
        module.register(sub)
    return parser


RAY_COMMANDS = (("loop",), ("render",), ("replay", "verify"))  # the commands that take --ray


def refuse_ray(argv: list[str]) -> None:
    """`--ray` given to a command that does not run on Ray: one line (argparse would print its usage too)."""
    if not any(a == "--ray" or a.startswith("--ray=") for a in argv):
        return
    words = [a for a in argv if not a.startswith("-")]
    if words and not any(tuple(words[:len(c)]) == c for c in RAY_COMMANDS):
        raise UserError(f"--ray: `{' '.join(words[:2] if words[0] == 'replay' else words[:1])}` does not run on "
                        "Ray (render, replay verify and loop --chains K do)")


def main(argv: list[str] | None = None) -> int:
    try:
        refuse_ray(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
