"""Command line for curators: `replay {verify,fork,show,play,repair}` and `inspect`.

Each command parses its options, calls one core function (in zoetrope/curate/; `repair` is the chain log's
own, zoetrope/loop/chainlog/repair.py) and prints what it returns.
Exit codes: 0 done (or every step reproduces), 1 verify found a step that does not reproduce, 2 a user
mistake (UserError), 3 a fork step that keeps failing (as for `loop`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoetrope.cli.options import add_model_options, parse_models


def register(sub) -> None:
    replay = sub.add_parser("replay", help="verify, fork, list the lineage of, or play back a logged chain")
    rsub = replay.add_subparsers(dest="replay_command", required=True)

    verify = rsub.add_parser("verify", help="regenerate every step and compare with the logged images")
    verify.add_argument("chain", type=Path, metavar="DIR")
    add_model_options(verify)
    verify.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                        help="tolerance when device, dtype or versions differ from the header (default 40 dB)")
    verify.add_argument("--ray", metavar="ADDRESS", help="regenerate the steps in parallel on Ray workers: local:N, "
                        "auto or ray://host:port (see docs/distributed.md)")
    verify.set_defaults(func=cmd_verify)

    fork = rsub.add_parser("fork", help="start a new chain from step N's image with changed settings")
    fork.add_argument("chain", type=Path, metavar="DIR")
    fork.add_argument("--from-step", type=int, required=True, metavar="N")
    add_model_options(fork)
    fork.add_argument("--seed", type=int, help="base seed of the fork (default: the parent's)")
    fork.add_argument("--mode", choices=["text", "drift"], help="text-to-image or image-to-image drift")
    fork.add_argument("--strength", type=float, help="drift strength (0, 1]")
    fork.add_argument("--paint-steps", type=int, metavar="N",
                      help="the painter's denoising steps for the fork, paint.steps (default: the parent's)")
    fork.add_argument("--prefix", help="prompt prefix")
    fork.add_argument("--suffix", help="prompt suffix")
    fork.add_argument("--template", help="prompt template with {caption}, {prefix}, {suffix}")
    fork.add_argument("--steps", type=int, metavar="K",
                      help="chain steps of the fork: stop after step K (default: the parent's setting)")
    fork.add_argument("--out", type=Path, metavar="DIR", help="fork folder (default: next to the parent)")
    fork.set_defaults(func=cmd_fork)

    show = rsub.add_parser("show", help="list a chain's lineage: its parents and the forks found next to it")
    show.add_argument("chain", type=Path, metavar="DIR")
    show.set_defaults(func=cmd_show)

    play = rsub.add_parser("play", help="slideshow film of a chain (no model needed): captions as subtitles")
    play.add_argument("chain", type=Path, metavar="DIR")
    play.add_argument("--hold", type=float, default=3.0, metavar="S", help="seconds each image is shown (default 3)")
    play.add_argument("--crossfade", type=float, default=0.5, metavar="S",
                      help="seconds of crossfade into the next image, inside the hold (default 0.5)")
    play.add_argument("--fps", type=int, default=24)
    play.add_argument("--out", type=Path, metavar="FILE", help="default: renders/films/<run>-slideshow.mp4")
    play.set_defaults(func=cmd_play)

    repair = rsub.add_parser("repair", help="make a damaged log readable: keep its longest consistent history")
    repair.add_argument("chain", type=Path, metavar="DIR")
    repair.set_defaults(func=cmd_repair)

    inspect = sub.add_parser("inspect", help="write a self-contained HTML report of a chain (contact sheet, drift)")
    inspect.add_argument("chain", type=Path, metavar="DIR")
    inspect.add_argument("--out", type=Path, metavar="FILE.html", help="default: renders/reports/<run>.html")
    add_model_options(inspect)
    inspect.add_argument("--text-model", default=None, metavar="SPEC",
                         help="caption similarity: a sentence-embedding model (Hub id or local folder; default "
                              "sentence-transformers/all-MiniLM-L6-v2, else the painter's text encoder), "
                              "'painter' for the painter's text encoder, or 'words' for word overlap")
    inspect.add_argument("--image-similarity", choices=["auto", "vae", "pixels"], default="auto",
                         help="auto: the painter's VAE latents when the painter loads, else pixel statistics")
    inspect.set_defaults(func=cmd_inspect)


def _echo(line: str) -> None:
    print(line, flush=True)


def cmd_verify(args: argparse.Namespace) -> int:
    from zoetrope.curate.verify import (
        TABLE_HEADER,
        environment_line,
        format_check,
        summary_lines,
        verify_folder,
    )

    def on_environment(env) -> None:
        _echo(environment_line(env))
        _echo(TABLE_HEADER)

    hooks = {"on_environment": on_environment, "on_step": lambda check: _echo(format_check(check))}
    if args.ray is not None:  # the same report, the steps regenerated in parallel on Ray workers
        from zoetrope.curate.verify_ray import verify_folder_ray

        report = verify_folder_ray(args.chain, args.ray, parse_models(args.models), args.device, args.min_psnr,
                                   **hooks)
    else:
        report = verify_folder(args.chain, parse_models(args.models), args.device, args.min_psnr, **hooks)
    for line in summary_lines(report):
        _echo(line)
    return 0 if report.ok else 1


def fork_overrides(args: argparse.Namespace) -> dict:
    """The fork's flags as curate.fork.FORK_FIELDS overrides (None keeps the parent's setting)."""
    models = parse_models(args.models)
    return {"seed": args.seed, "steps": args.steps, "paint.mode": args.mode, "paint.strength": args.strength,
            "paint.steps": args.paint_steps, "prompt.prefix": args.prefix, "prompt.suffix": args.suffix,
            "prompt.template": args.template, "models.painter": models.get("painter"),
            "models.captioner": models.get("captioner")}


def cmd_fork(args: argparse.Namespace) -> int:
    from zoetrope.cli.foreground import run_in_foreground, stop_on_signals
    from zoetrope.curate.fork import prepare_fork

    fork = prepare_fork(args.chain, args.from_step, fork_overrides(args), args.out, args.device)
    try:
        _echo(f"fork {fork.folder} of {fork.parent_run} at step {fork.from_step} "
              f"({fork.plan.device}, {fork.plan.dtype_name}; {fork.config.paint.steps} paint steps)")
        done = run_in_foreground(fork.config, fork.painter, fork.captioner, fork.writer, fork.point,
                                 stop_on_signals(), echo=_echo)
    finally:
        fork.release()
    _echo(f"{done} steps written to {fork.folder}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from zoetrope.curate.lineage import show_lineage

    for line in show_lineage(args.chain):
        _echo(line)
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    from zoetrope.cli.progress import FrameCounter
    from zoetrope.curate.playback import play_folder

    with FrameCounter("play") as on_frame:
        result = play_folder(args.chain, args.out, hold=args.hold, crossfade=args.crossfade, fps=args.fps,
                             on_frame=on_frame)
    _echo(f"{result.frames} frames ({result.seconds:.2f} s) written to {result.out}, subtitles in {result.srt}")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    from zoetrope.loop.chainlog import repair_chain, repair_lines

    for line in repair_lines(repair_chain(args.chain)):
        _echo(line)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from zoetrope.curate.report import inspect_folder

    inspection = inspect_folder(args.chain, args.out, models=parse_models(args.models), device=args.device,
                                text_model=args.text_model, image_similarity=args.image_similarity)
    for line in inspection.lines:
        _echo(line)
    _echo(f"report written to {inspection.out}")
    return 0
