"""`scene from-screenplay FILM.fountain [--out scenes/FILM.yaml]`: the film file a screenplay renders as.

    python run_loop.py scene from-screenplay scenes/the-keeper.fountain --out /tmp/the-keeper.yaml

The artist edits the YAML and renders it instead of the screenplay (`render FILM.fountain` plans the same
frames as `render` of this file). Also the film options shared with `render` (`--front`, `--style`, `--seed`,
`--engine`, `--size`, `--character`). Argument parsing and printing only; the mapping is
zoetrope/settings/screenplay.py.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from zoetrope.base.errors import UserError


def add_screenplay_options(parser: argparse.ArgumentParser, fps: bool = True, model: bool = True) -> None:
    """The film options of a screenplay (they override its front file, FILM.fountain.yml)."""
    group = parser.add_argument_group("with a screenplay (.fountain): the film's options, over its front file")
    group.add_argument("--front", type=Path, metavar="FILE", help="front file (default FILM.fountain.yml if it exists)")
    if model:
        group.add_argument("--model", help="painter preset, folder or Hub id (the film's `model:`)")
    if fps:
        group.add_argument("--fps", type=int, help="frames per second")
    group.add_argument("--size", metavar="WxH", help="width x height in pixels, e.g. 256x256")
    group.add_argument("--seed", type=int, help="base seed (a keyframe's seed is this + CRC-32 of its prompt)")
    group.add_argument("--style", help="appended to every prompt")
    group.add_argument("--engine", help="walk, ltx or animatediff")
    group.add_argument("--character", action="append", metavar="NAME=STYLE",
                       help="a character's look, appended to prompts in which NAME appears (repeatable)")


def screenplay_options(args: argparse.Namespace, fps: bool = True, model: bool = True) -> dict:
    """The film options given on the command line (only those given), as settings.screenplay reads them;
    `fps` and `model` as for add_screenplay_options (render's --fps is its own, shared with --from-chain)."""
    keys = ("front", "seed", "style", "engine") + (("fps",) if fps else ()) + (("model",) if model else ())
    out: dict = {key: getattr(args, key) for key in keys}
    if args.size is not None:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", args.size)
        if not match:
            raise UserError(f"--size: expected WIDTHxHEIGHT such as 256x256 (got {args.size!r})")
        out["width"], out["height"] = int(match[1]), int(match[2])
    characters = {}
    for spec in args.character or []:
        name, _, style = spec.partition("=")
        if not name.strip() or not style.strip():
            raise UserError(f"--character: expected NAME=STYLE such as 'ANNA=in red, charcoal' (got {spec!r})")
        characters[name.strip()] = style.strip()
    if characters:
        out["characters"] = characters
    return {k: v for k, v in out.items() if v is not None}


def register(sub) -> None:
    p = sub.add_parser("scene", help="scene scripts: write the film file of a Fountain screenplay")
    ssub = p.add_subparsers(dest="scene_command", required=True)
    f = ssub.add_parser("from-screenplay", help="FILM.fountain -> a film file (YAML) to edit and render")
    f.add_argument("screenplay", type=Path, help="a Fountain screenplay (.fountain)")
    f.add_argument("--out", type=Path, help="the film file to write (default: beside it, FILM.yaml)")
    add_screenplay_options(f)
    p.set_defaults(func=cmd_scene)


def cmd_scene(args: argparse.Namespace) -> int:
    from zoetrope.base.files import check_writable, write_durable
    from zoetrope.settings.scene import screenplay_film
    from zoetrope.settings.screenplay import GENERATED, SCREENPLAY_SUFFIXES, film_yaml

    path: Path = args.screenplay
    if path.suffix.lower() not in SCREENPLAY_SUFFIXES:
        raise UserError(f"{path}: not a screenplay (expected {' or '.join(SCREENPLAY_SUFFIXES)})")
    out: Path = args.out or path.with_suffix(".yaml")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise UserError(f"--out: a film file is YAML, .yaml or .yml (got {out})")
    film, page = screenplay_film(path, screenplay_options(args))
    if out.is_file() and not out.read_text(encoding="utf-8", errors="replace").startswith(GENERATED):
        raise UserError(f"{out}: exists and was not written by `scene from-screenplay`; give another --out")
    check_writable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = film.frame_count()
    write_durable(out, film_yaml(page, out, frames, film.fps).encode("utf-8"))
    keyframes = sum(len(s.keyframes) for _, s in film.scenes)
    print(f"wrote {out} ({len(film.scenes)} scenes, {keyframes} keyframes, {frames} frames at {film.fps} fps, "
          f"{frames / film.fps:.2f} s)", flush=True)
    return 0
