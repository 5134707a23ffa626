"""`render`: a scene script (or a logged chain) -> one mp4 with its .srt.

    python run_loop.py render scenes/trip-to-the-moon.yaml --models tiny --out renders/films/smoke.mp4
    python run_loop.py render --from-chain renders/chains/<run> --fps 8

Argument parsing and printing only; the pipeline is zoetrope/film/render.py. The first line names the
painter each scene uses (and says so when it is the schema's default, or comes from --models or the log).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoetrope.base.extras import install_hint
from zoetrope.cli.options import add_model_options, film_roles, parse_models, speed_overrides
from zoetrope.cli.progress import Bar, say
from zoetrope.cli.scene import add_screenplay_options, screenplay_options


def register(sub) -> None:
    p = sub.add_parser("render", help="render a scene script (or a logged chain) to a film")
    p.add_argument("script", nargs="?", type=Path, help="scene script or film file (scenes/*.yaml)")
    p.add_argument("--from-chain", type=Path, metavar="DIR", help="film of a logged chain: captions become keyframes")
    add_model_options(p)
    p.add_argument("--out", type=Path, help="film path (default renders/films/<name>.mp4)")
    p.add_argument("--rows", type=int, metavar="N",
                   help="painter call width, 1..64 (default: the scene's rows:, else 8 at 256 px on CPU and at "
                        "512 px on a GPU, fewer for larger frames). Part of each frame's cache key")
    p.add_argument("--batch-size", type=int, metavar="N", help="frames per painter call, 1..rows (default rows)")
    p.add_argument("--preview", action="store_true", help="a quarter of the frames at half the size, for a quick look")
    p.add_argument("--ray", metavar="local:N|auto|ray://HOST:PORT",
                   help=f"paint the walk's frames on Ray workers ({install_hint('ray')}); the film is the same")
    p.add_argument("--cache-root", type=Path, default=Path("renders/films"),
                   help="frames are cached in CACHE_ROOT/<scene>/frames (default renders/films)")
    chain = p.add_argument_group("with --from-chain")
    chain.add_argument("--fps", type=int, help="frames per second (default 24; also a screenplay's option)")
    chain.add_argument("--hold", type=float, help="seconds on each step's image (default 1.0)")
    chain.add_argument("--transition", type=float, help="seconds between steps (default 2.0)")
    add_screenplay_options(p, fps=False, model=False)
    p.set_defaults(func=cmd_render)


def request_from_args(args: argparse.Namespace):
    """The argv as a film.render.RenderRequest (checked by the core, which names the option at fault)."""
    from zoetrope.film.render import RenderRequest

    models = parse_models(args.models, film_roles())
    return RenderRequest(
        script=args.script, from_chain=args.from_chain, fps=args.fps, hold=args.hold, transition=args.transition,
        out=args.out, rows=args.rows, batch_size=args.batch_size, preview=args.preview, cache_root=args.cache_root,
        painter=models.get("painter"), device=args.device, speed=speed_overrides(args),
        models={role: model for role, model in models.items() if role != "painter"}, ray=args.ray,
        screenplay=screenplay_options(args, fps=False, model=False),
    )


def echo(line: str) -> None:
    """A line on stdout that does not tear the progress bars on stderr (cli/progress.py)."""
    say(line)


def progress_bar(what: str, total: int) -> Bar:
    """The walk's count (frames painted or found in the cache) and the encoder's (frames encoded): bars on a
    terminal, plain lines in a file (cli/progress.py)."""
    return Bar(what, total)


def cmd_render(args: argparse.Namespace) -> int:
    from zoetrope.film.render import render_film

    result = render_film(request_from_args(args), on_line=echo, progress=progress_bar)
    width, height = result.size
    print(f"frames: {result.cached} cached, {result.rendered} rendered", flush=True)
    print(f"wrote {result.out} ({result.frames} frames, {result.fps:g} fps, {width}x{height}, "
          f"{result.frames / result.fps:.2f} s) and {result.srt.name}", flush=True)
    return 0
