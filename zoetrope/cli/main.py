"""Command line: `python run_loop.py {loop,models,replay,inspect,serve,install-service,render,check,scene,join}`.

`loop` and `models` are here; every other subcommand module exposes `register(subparsers)`, which adds its
parser and sets `func`. `loop` turns argv into a LoopRequest and hands it to zoetrope/loop/session.py's
`run_loop` (which checks, locks, loads and runs), and its result into lines and an exit code. A user's mistake
(UserError) is printed as one line (a config's several mistakes as one line each) and exits 2; there is no
traceback for it. A loop step that keeps failing exits 3. Module-level imports stay torch-free, so `check`
and `serve` start without loading a model library.
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


def loop_request(args: argparse.Namespace):
    """The LoopRequest (zoetrope/loop/session.py) for `loop`'s argv; nothing is checked, read or loaded here."""
    from zoetrope.loop.session import LoopRequest

    return LoopRequest(config=args.config, steps=args.steps, out=args.out, resume=args.resume, seed=args.seed,
                       chains=args.chains, chains_exact=args.chains_exact, start_image=args.start_image,
                       start_prompt=args.start_prompt, models=args.models, device=args.device,
                       speed=speed_overrides(args), ray=args.ray, display=args.display, host=args.host,
                       port=args.port, service=args.service)


def cmd_loop(args: argparse.Namespace) -> int:
    """A new chain, a resumed one (--resume DIR), or under --service whichever a restart calls for: the run is
    loop/session.py's `run_loop`; here its lines are printed and its outcome made an exit code (a step that
    keeps failing: EXIT_STEP_FAILED, for the supervisor to restart the loop)."""
    from zoetrope.loop.runner import StepFailed
    from zoetrope.loop.session import run_loop

    display = gallery.loop_display() if args.display else None
    try:
        result = run_loop(loop_request(args), lambda line: print(line, flush=True), stop_on_signals, display=display)
    except StepFailed as exc:
        logging.getLogger("zoetrope").error("%s; exiting with status %d so the supervisor restarts the loop", exc,
                                            EXIT_STEP_FAILED, exc_info=exc.__cause__)
        return EXIT_STEP_FAILED
    if result.already_at is not None:
        print(f"{result.folder}: already at step {result.already_at[0]} of {result.already_at[1]}; nothing to do")
        return 0
    where = f"{result.folder}/chain-1..{result.chains}" if result.chains > 1 else str(result.folder)
    print(f"{result.steps} steps written to {where}", flush=True)
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
    except UserError as exc:  # several mistakes at once (a config's, as `check` lists them): a line each
        for line in getattr(exc, "lines", None) or [str(exc)]:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
