"""`join`: rendered films -> one film, with crossfades and an audio bed (moviepy composes, FrameWriter encodes).

    python run_loop.py join renders/films/a.mp4 renders/films/b.mp4 --crossfade 0.5 --audio bed.wav --out c.mp4

Argument parsing and printing only; the work is zoetrope/film/join.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("join", help="join rendered films with crossfades and an audio bed, every frame kept")
    p.add_argument("films", nargs="+", type=Path, help="films of one size and frame rate, in order")
    p.add_argument("--out", type=Path, required=True, help="the joined film (.mp4)")
    p.add_argument("--crossfade", type=float, default=0.0, metavar="SECONDS",
                   help="each film fades into the next over this long, rounded to whole frames (default 0: cuts)")
    p.add_argument("--audio", type=Path, metavar="FILE", help="audio bed under the whole film, from its start, cut "
                   "to the picture (the films' own sound is kept and crossfaded)")
    p.add_argument("--audio-volume", type=float, default=1.0, metavar="X", help="the bed's volume factor (default 1)")
    p.set_defaults(func=cmd_join)


def cmd_join(args: argparse.Namespace) -> int:
    from zoetrope.cli.progress import FrameCounter
    from zoetrope.film.join import join_films

    with FrameCounter("join") as on_frame:
        joined = join_films(args.films, args.out, args.crossfade, args.audio, args.audio_volume, on_frame=on_frame)
    fade = f", crossfades of {joined.crossfade_frames} frames" if len(args.films) > 1 and joined.crossfade_frames else ""
    sound = ", with sound" if joined.audio else ""
    print(f"{joined.path}: {len(args.films)} films, {joined.frames} frames ({joined.seconds:.2f} s at "
          f"{joined.fps:g} fps{fade}{sound})", flush=True)
    return 0
