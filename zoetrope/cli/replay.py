"""Command line for curators: `replay {verify,fork,show,play}` and `inspect`.

Argument handling only; the work is in replay.py and inspect_report.py. Exit codes: 0 done (or
every step reproduces), 1 verify found a step that does not reproduce, 2 a user mistake (UserError).
"""

from __future__ import annotations

from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.cli.main import add_model_options, parse_models


def register(sub) -> None:
    replay = sub.add_parser("replay", help="verify, fork, list the lineage of, or play back a logged chain")
    rsub = replay.add_subparsers(dest="replay_command", required=True)

    verify = rsub.add_parser("verify", help="regenerate every step and compare with the logged images")
    verify.add_argument("chain", type=Path, metavar="DIR")
    add_model_options(verify)
    verify.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                        help="tolerance when device, dtype or versions differ from the header (default 40 dB)")
    verify.set_defaults(func=cmd_verify)

    fork = rsub.add_parser("fork", help="start a new chain from step N's image with changed settings")
    fork.add_argument("chain", type=Path, metavar="DIR")
    fork.add_argument("--from-step", type=int, required=True, metavar="N")
    add_model_options(fork)
    fork.add_argument("--seed", type=int, help="base seed of the fork (default: the parent's)")
    fork.add_argument("--mode", choices=["text", "drift"], help="text-to-image or image-to-image drift")
    fork.add_argument("--strength", type=float, help="drift strength (0, 1]")
    fork.add_argument("--prefix", help="prompt prefix")
    fork.add_argument("--suffix", help="prompt suffix")
    fork.add_argument("--template", help="prompt template with {caption}, {prefix}, {suffix}")
    fork.add_argument("--steps", type=int, help="steps of the fork (default: the parent's setting)")
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


def cmd_verify(args) -> int:
    from zoetrope.curate.replay import (
        DEFAULT_MIN_PSNR,
        TABLE_HEADER,
        environment_differences,
        format_check,
        open_chain_models,
        summary_lines,
        verify_chain,
    )
    from zoetrope.loop.chainlog import read_chain
    from zoetrope.loop.run import library_versions

    chain = read_chain(args.chain)  # a dropped torn line is logged as a warning
    if not chain.steps:
        raise UserError(f"{args.chain}: the chain has no steps to verify")
    painter, captioner, plan = open_chain_models(chain, parse_models(args.models), args.device)
    versions = library_versions()
    diffs = environment_differences(chain.header, plan, versions)
    min_psnr = DEFAULT_MIN_PSNR if args.min_psnr is None else args.min_psnr
    if diffs:
        _echo(f"environment differs from the header ({'; '.join(diffs)}): comparing within PSNR >= {min_psnr} dB")
    else:
        _echo(f"environment matches the header ({plan.device}, {plan.dtype_name}): expecting identical bytes")
    _echo(TABLE_HEADER)
    report = verify_chain(chain, painter, captioner, plan, versions, min_psnr, on_step=lambda c: _echo(format_check(c)))
    for line in summary_lines(report):
        _echo(line)
    return 0 if report.ok else 1


def cmd_fork(args) -> int:
    from zoetrope.cli.main import drive_in_foreground
    from zoetrope.curate.replay import default_fork_folder, fork_config, fork_source, parent_entry
    from zoetrope.loop.chainlog import read_chain, require_new_chain
    from zoetrope.loop.run import open_models, start_run

    chain = read_chain(args.chain)
    # Everything the user gave is checked before any model is loaded or anything written.
    start_image = fork_source(chain, args.from_step)
    models = parse_models(args.models)
    overrides = {"seed": args.seed, "paint.mode": args.mode, "paint.strength": args.strength,
                 "prompt.prefix": args.prefix, "prompt.suffix": args.suffix, "prompt.template": args.template,
                 "steps": args.steps, "models.painter": models.get("painter"),
                 "models.captioner": models.get("captioner")}
    config = fork_config(chain, args.from_step, overrides)
    folder = args.out or default_fork_folder(chain.folder, args.from_step)
    require_new_chain(folder, hint="choose another --out")
    m = config.models
    painter, captioner, plan = open_models(m.painter, m.captioner, (m.painter_revision, m.captioner_revision), args.device,
                                           config.speed)
    writer, point = start_run(folder, config, start_image, painter, captioner, plan,
                              parent=parent_entry(chain, args.from_step, folder))
    _echo(f"fork {folder} of {chain.header['run_id']} at step {args.from_step} ({plan.device}, {plan.dtype_name})")
    done = drive_in_foreground(config, painter, captioner, writer, point, echo=_echo)
    _echo(f"{done} steps written to {folder}")
    return 0


def cmd_show(args) -> int:
    from zoetrope.curate.replay import lineage_lines
    from zoetrope.loop.chainlog import read_chain

    for line in lineage_lines(read_chain(args.chain)):
        _echo(line)
    return 0


def cmd_play(args) -> int:
    from zoetrope.curate.playback import play_chain
    from zoetrope.loop.chainlog import read_chain

    chain = read_chain(args.chain)
    out = args.out or Path("renders/films") / f"{chain.header.get('run_id', chain.folder.name)}-slideshow.mp4"
    result = play_chain(chain, out, hold=args.hold, crossfade=args.crossfade, fps=args.fps)
    _echo(f"{result.frames} frames ({result.frames / args.fps:.2f} s) written to {out}, subtitles in {result.srt}")
    return 0


def cmd_inspect(args) -> int:
    from zoetrope.curate.report import write_report
    from zoetrope.loop.chainlog import read_chain

    chain = read_chain(args.chain)
    out = args.out or Path("renders/reports") / f"{chain.header.get('run_id', chain.folder.name)}.html"
    summary = write_report(chain, out, models=parse_models(args.models), device=args.device,
                           text_model=args.text_model, image_similarity=args.image_similarity)
    for line in summary:
        _echo(line)
    _echo(f"report written to {out}")
    return 0
