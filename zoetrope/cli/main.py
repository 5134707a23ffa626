"""Command line: `python run_loop.py {loop,models,...}`.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets `func`. A user's
mistake (UserError) is printed as one line and exits 2; there is no traceback for it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from zoetrope.base.errors import UserError

# Modules that add subcommands besides `loop` and `models` (each has `register(subparsers)`).
COMMAND_MODULES: tuple[str, ...] = ("zoetrope.cli.replay", "zoetrope.cli.gallery", "zoetrope.cli.render")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", metavar="SPEC",
        help="tiny | PAINTER | painter=X,captioner=Y (presets, local folders or Hub ids; tiny = offline test models)",
    )
    parser.add_argument("--device", choices=["cuda", "mps", "cpu"], help="default: cuda > mps > cpu")
    speed = parser.add_argument_group("speed (override the config's speed section)")
    speed.add_argument("--attention", choices=["sdpa", "eager"], help="attention kernel (default sdpa)")
    speed.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory layout")
    speed.add_argument("--compile", action="store_true", default=None, help="torch.compile the UNet (fixed shapes)")
    speed.add_argument("--vae", metavar="taesd|PATH", help="tiny autoencoder decoder (TAESD) for previews and fast films")


def speed_overrides(args) -> dict:
    """The speed options given on the command line, as a partial `speed` config section."""
    given = {"attention": args.attention, "channels_last": args.channels_last, "compile": args.compile, "vae": args.vae}
    return {k: v for k, v in given.items() if v is not None}


def parse_models(spec: str | None) -> dict[str, str]:
    """`--models` as {"painter": ..., "captioner": ...} overrides (empty when not given)."""
    if not spec:
        return {}
    if spec == "tiny":
        return {"painter": "tiny", "captioner": "tiny"}
    if "=" not in spec:
        return {"painter": spec}
    out = {}
    for part in spec.split(","):
        role, _, name = part.partition("=")
        if role.strip() not in ("painter", "captioner") or not name.strip():
            raise UserError(f"--models: expected tiny, PAINTER or painter=X,captioner=Y, got {spec!r}")
        out[role.strip()] = name.strip()
    return out


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
    start = p.add_mutually_exclusive_group()
    start.add_argument("--start-image", type=Path, metavar="PATH")
    start.add_argument("--start-prompt", metavar="TEXT")
    p.add_argument("--display", action="store_true", help="also serve the kiosk display (see `serve`)")
    p.add_argument("--service", action="store_true",
                   help="unattended (systemd): with --out DIR, a restart resumes DIR (or starts anew, by config)")
    from zoetrope.cli.gallery import add_display_options

    add_display_options(p)
    p.set_defaults(func=cmd_loop)


def loop_config_from_args(args):
    from pydantic import ValidationError

    from zoetrope.settings.loop import LoopConfig, load_loop_config
    from zoetrope.settings.parsing import first_error

    if args.config is None and Path("loops/counterfeits.yaml").is_file():
        args.config = Path("loops/counterfeits.yaml")
    config = load_loop_config(args.config)
    base = args.config.parent if args.config else Path.cwd()
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
    data["speed"] |= speed_overrides(args)
    try:
        return LoopConfig.model_validate(data)
    except ValidationError as exc:  # an override out of range: name it
        raise UserError(f"command line: {first_error(exc)}") from None


def cmd_loop(args) -> int:
    from zoetrope.base.images import load_image
    from zoetrope.loop.chainlog import read_chain, require_new_chain
    from zoetrope.loop.run import (
        default_run_folder,
        drive,
        gallery_extras,
        open_models,
        reopen_run,
        start_run,
    )
    from zoetrope.settings.loop import LoopConfig

    if args.service:
        from zoetrope.cli.gallery import service_args

        args = service_args(args, loop_config_from_args(args) if args.resume is None else None)
    if args.resume is not None:
        if any(v is not None for v in (args.config, args.out, args.seed, args.start_image, args.start_prompt, args.models,
                                       args.vae)) or args.chains != 1:
            raise UserError("--resume continues a chain with its logged settings; only --steps, --device and the speed "
                            "options that keep the pictures the same may be given (to change settings: replay fork)")
        logged = read_chain(args.resume)
        config = LoopConfig.model_validate(logged.header["config"])
        config = config.model_copy(update={
            "steps": args.steps if args.steps is not None else config.steps,
            "speed": config.speed.model_copy(update=speed_overrides(args)),
        })
        if config.steps is not None and logged.last_step >= config.steps:
            print(f"{args.resume}: already at step {logged.last_step} of {config.steps}; nothing to do")
            return 0
        models = logged.header["models"]
        painter, captioner, plan = open_models(
            models["painter"]["id"], models["captioner"]["id"],
            (models["painter"]["revision"], models["captioner"]["revision"]), args.device, config.speed,
        )
        extras = gallery_extras(config, args.resume, plan.device, plan.dtype, args.service or args.display)
        writer, point = reopen_run(logged, config, painter)
        folder = args.resume
        print(f"resuming {folder} at step {point.next_step}", flush=True)
    else:
        config = loop_config_from_args(args)
        # Everything the user gave is checked before anything is loaded or written.
        start_image = load_image(config.start.image) if config.start.image else None
        folder = args.out or default_run_folder(config)
        require_new_chain(folder)
        m = config.models
        if not 1 <= args.chains <= 64:
            raise UserError(f"--chains: expected 1 to 64 chains, got {args.chains}")
        if args.chains > 1 and (args.display or args.service):
            raise UserError("--chains runs several chains in the foreground; --display and --service run one chain "
                            "(run one service per chain for a wall)")
        painter, captioner, plan = open_models(m.painter, m.captioner, (m.painter_revision, m.captioner_revision),
                                               args.device, config.speed)
        if args.chains > 1:
            from zoetrope.loop.multichain import run_many

            done = run_many(config, args.chains, folder, painter, captioner, plan, start_image,
                            echo=lambda line: print(line, flush=True))
            print(f"{done} steps written to {folder}/chain-1..{args.chains}", flush=True)
            return 0
        extras = gallery_extras(config, folder, plan.device, plan.dtype, args.service or args.display)
        writer, point = start_run(folder, config, start_image, painter, captioner, plan)
        print(f"chain {folder} ({plan.device}, {plan.dtype_name})", flush=True)
    display = None
    if args.display:
        from zoetrope.cli.gallery import start_display

        display = start_display(folder, config, args.host, args.port, extras.watchdog.state)
    try:
        done = drive(config, painter, captioner, writer, point, extras=extras)
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
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
