"""`render`: a scene script (or a logged chain) -> frames in the cache -> one mp4 with its .srt.

    python run_loop.py render scenes/trip-to-the-moon.yaml --models tiny --out renders/films/smoke.mp4
    python run_loop.py render --from-chain renders/chains/<run> --fps 8

Everything the user gave is checked before a model loads or a file is written; the film is written under a
temp name and renamed, so a failed render leaves nothing at the output path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from zoetrope.base.errors import UserError

PREVIEW_STRIDE = 4  # --preview keeps every 4th frame (a quarter) and plays them at fps / 4: same duration
FILM_SUFFIXES = (".mp4", ".mov", ".mkv")


def register(sub) -> None:
    from zoetrope.cli.main import add_model_options

    p = sub.add_parser("render", help="render a scene script (or a logged chain) to a film")
    p.add_argument("script", nargs="?", type=Path, help="scene script or film file (scenes/*.yaml)")
    p.add_argument("--from-chain", type=Path, metavar="DIR", help="film of a logged chain: captions become keyframes")
    add_model_options(p)
    p.add_argument("--out", type=Path, help="film path (default renders/films/<name>.mp4)")
    p.add_argument("--rows", type=int, metavar="N",
                   help="painter call width, 1..64 (default: what the GPU's memory holds, measured once per frame "
                        "cache; 8 on CPU). Part of each frame's cache key")
    p.add_argument("--batch-size", type=int, metavar="N", help="frames per painter call, 1..rows (default rows)")
    p.add_argument("--preview", action="store_true", help="a quarter of the frames at half the size, for a quick look")
    p.add_argument("--cache-root", type=Path, default=Path("renders/films"),
                   help="frames are cached in CACHE_ROOT/<scene>/frames (default renders/films)")
    chain = p.add_argument_group("with --from-chain")
    chain.add_argument("--fps", type=int, help="frames per second (default 24)")
    chain.add_argument("--hold", type=float, help="seconds on each step's image (default 1.0)")
    chain.add_argument("--transition", type=float, help="seconds between steps (default 2.0)")
    p.set_defaults(func=cmd_render)


# ------------------------------------------------------------------------------------------ inputs


def film_from_chain(folder: Path, fps: int | None, hold: float | None, transition: float | None):
    """A chain log as a one-scene Film: each step a keyframe (its prompt and logged seed), its caption the subtitle."""
    from pydantic import ValidationError

    from zoetrope.loop.chainlog import read_chain
    from zoetrope.settings.parsing import first_error
    from zoetrope.settings.scene import ANCESTRAL, Film, SceneScript

    chain = read_chain(folder)
    steps = [s for s in chain.steps if s.get("prompt")]
    if not steps:
        raise UserError(f"{folder}: the chain has no steps yet; nothing to film")
    paint = chain.header.get("config", {}).get("paint", {})
    scheduler = paint.get("scheduler", "euler")
    if scheduler in ANCESTRAL:
        print(f"note: the chain used the ancestral {scheduler}; the film walks with euler (ancestral samplers flicker)")
        scheduler = "euler"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", folder.resolve().name).lstrip("-._") or "chain"
    data = {
        "name": name[:64], "title": f"chain {folder.name}", "fps": fps or 24,
        "width": paint.get("width", 512), "height": paint.get("height", 512), "steps": paint.get("steps", 1),
        "guidance": paint.get("guidance", 0.0), "scheduler": scheduler,
        "model": chain.header.get("models", {}).get("painter", {}).get("id", "sd-turbo"),
        "negative_prompt": steps[0].get("negative_prompt") or "",
        "transition": transition if transition is not None else 2.0,
        "keyframes": [
            {"prompt": s["prompt"], "seed": s["seed"], "hold": hold if hold is not None else 1.0,
             **({"subtitle": s["caption"]} if s.get("caption") else {})}
            for s in steps
        ],
    }
    try:
        script = SceneScript.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{folder}: cannot film this chain: {first_error(exc)}") from None
    return Film(script.title, [(script.name, script)], None)


def check_args(args) -> None:
    if (args.script is None) == (args.from_chain is None):
        raise UserError("render: give a scene script or --from-chain DIR (exactly one)")
    if args.from_chain is None and any(v is not None for v in (args.fps, args.hold, args.transition)):
        raise UserError("render: --fps, --hold and --transition apply to --from-chain; a script sets its own")
    from zoetrope.film.rows import MAX_ROWS

    if args.rows is not None and not 1 <= args.rows <= MAX_ROWS:
        raise UserError(f"--rows: must be 1..{MAX_ROWS} (got {args.rows})")
    if args.batch_size is not None and not 1 <= args.batch_size <= (args.rows or MAX_ROWS):
        raise UserError(f"--batch-size: must be 1..{args.rows or MAX_ROWS} (got {args.batch_size})")
    if args.fps is not None and not 1 <= args.fps <= 120:
        raise UserError(f"--fps: must be 1..120 (got {args.fps})")
    for flag in ("hold", "transition"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise UserError(f"--{flag}: must be greater than 0 (got {value})")
    if args.out is not None and args.out.suffix.lower() not in FILM_SUFFIXES:
        raise UserError(f"--out: a film needs one of {', '.join(FILM_SUFFIXES)} (got {args.out})")


def painter_spec(film, models_option: str | None) -> str:
    from zoetrope.cli.main import parse_models

    override = parse_models(models_option).get("painter")
    if override:
        return override
    models = {s.model for _, s in film.scenes}
    if len(models) > 1:
        raise UserError(f"the scenes use different models ({', '.join(sorted(models))}); choose one with --models")
    return models.pop()


# ---------------------------------------------------------------------------------------- timeline


@dataclass
class Shot:
    """One film frame: which cached frame, and what is drawn over it at encode time."""

    path: Path
    card: str | None = None
    subtitle: str | None = None


def scene_shots(plan, cache: Path, burn: bool) -> list[Shot]:
    """Every film frame of a scene; an intertitle card fills the first half of its keyframe's hold."""
    script = plan.script
    paths = plan.frame_paths(cache)
    shots = [Shot(p) for p in paths]
    starts = plan.keyframe_start + [len(paths)]
    for i, keyframe in enumerate(script.keyframes):
        lo, hi = starts[i], starts[i + 1]
        if keyframe.intertitle:
            hold_frames = sum(1 for j in plan.sequence[lo:hi] if j == plan.keyframe_jobs[i])
            for shot in shots[lo:lo + (hold_frames + 1) // 2]:
                shot.card = keyframe.intertitle
        if burn and keyframe.subtitle:
            for shot in shots[lo:hi]:
                shot.subtitle = keyframe.subtitle
    return shots


def scene_cues(script, offset_s: float) -> list[tuple[float, float, str]]:
    """One .srt cue per keyframe: its subtitle (or prompt) from its hold's start to the next keyframe's."""
    from zoetrope.settings.timing import frame_count

    cues, frame = [], 0
    for i, keyframe in enumerate(script.keyframes):
        length = frame_count(keyframe.hold, script.fps) + frame_count(script.transition_of(i), script.fps)
        if length:
            text = keyframe.subtitle or keyframe.intertitle or keyframe.prompt
            cues.append((offset_s + frame / script.fps, offset_s + (frame + length) / script.fps, text))
        frame += length
    return cues


# ------------------------------------------------------------------------------------ render + encode


@dataclass
class FilmSpec:
    path: Path
    fps: float
    size: tuple[int, int]
    audio: Path | None


def encode_shots(shots: list[Shot], spec: FilmSpec, feed) -> None:
    """Stream the film's frames into ffmpeg in order, each as soon as the walk has saved it."""
    from PIL import Image
    from tqdm import tqdm

    from zoetrope.film.encode import FrameWriter, burn_subtitle, intertitle_card

    previous, image, card_text, card = None, None, None, None
    with FrameWriter(spec.path, spec.fps, spec.size, audio=spec.audio) as writer:
        for shot in tqdm(shots, unit="frame", desc="encode", dynamic_ncols=True, leave=False, position=1):
            if shot.path != previous:  # a hold repeats one cached frame: read it once
                feed.wait(shot.path)
                with Image.open(shot.path) as im:
                    image = im.convert("RGB")
                previous = shot.path
            if shot.card and shot.card != card_text:  # and one card: draw it once
                card_text, card = shot.card, intertitle_card(spec.size, shot.card)
            frame = card if shot.card else image
            if shot.subtitle:
                frame = burn_subtitle(frame, shot.subtitle)
            writer.write(frame)


def render_and_encode(painter, plans, shots: list[Shot], batch_size: int | None, bar, spec: FilmSpec) -> tuple[int, int]:
    """The walk paints on this thread, saves on its writer thread, and the encoder thread takes frames in film
    order: encoding overlaps painting, and the painter never waits for ffmpeg. Returns (cached, rendered)."""
    import threading

    from zoetrope.film.walk import FrameFeed, render_missing

    feed, failures = FrameFeed(), []

    def encode() -> None:
        try:
            encode_shots(shots, spec, feed)
        except BaseException as exc:  # re-raised on the main thread once the walk has stopped
            failures.append(exc)

    encoder = threading.Thread(target=encode, name="film-encoder")
    encoder.start()
    cached = rendered = 0
    try:
        for plan, cache in plans:
            stats = render_missing(painter, plan, cache, batch_size, progress=bar, feed=feed)
            cached, rendered = cached + stats.cached, rendered + stats.rendered
            bar.write(f"scene {plan.name}: {stats.summary()}")
    except BaseException as exc:
        feed.close(exc)
        encoder.join()
        raise
    feed.close()
    encoder.join()
    if failures:
        raise failures[0]
    return cached, rendered


# --------------------------------------------------------------------------------------------- run


def cmd_render(args) -> int:
    check_args(args)
    from zoetrope.settings.scene import load_film

    # 1. Read and check every input before loading a model or writing a file
    film = load_film(args.script) if args.script is not None else film_from_chain(
        args.from_chain, args.fps, args.hold, args.transition)
    name = film.scenes[0][0] if len(film.scenes) == 1 else (args.script.stem if args.script else "film")
    out = args.out or Path("renders/films") / f"{name}{'-preview' if args.preview else ''}.mp4"
    spec = painter_spec(film, args.models)
    width, height = film.size
    fps: float = film.fps
    if args.preview:
        width, height = max(32, width // 2 // 8 * 8), max(32, height // 2 // 8 * 8)

    # 2. Load the painter and lay out every scene
    from tqdm import tqdm

    from zoetrope.cli.main import speed_overrides
    from zoetrope.film.encode import write_srt
    from zoetrope.film.rows import call_rows, measure_rows
    from zoetrope.film.walk import ROWS, needed_jobs, painter_identity, plan_scene, walk_params
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    speed = SpeedOptions(**speed_overrides(args))
    painter = load_painter(spec, pick_device(args.device), speed=speed)
    identity = painter_identity(painter, speed)
    plans, shots, cues, offset = [], [], [], 0.0
    for scene_name, script in film.scenes:
        cache = args.cache_root / scene_name / "frames"
        params = walk_params(script, width, height)
        rows = args.rows or call_rows(cache, identity, params, lambda p=params: measure_rows(painter, p, ROWS))
        if args.batch_size is not None and args.batch_size > rows:
            raise UserError(f"--batch-size: must be 1..{rows}, the painter call width here (got {args.batch_size}); "
                            "see --rows")
        plan = plan_scene(scene_name, script, identity, width=width, height=height, rows=rows)
        scene = scene_shots(plan, cache, script.burn_subtitles)
        if args.preview:  # every 4th frame; only those are rendered
            plan.sequence = plan.sequence[::PREVIEW_STRIDE]
            scene = scene[::PREVIEW_STRIDE]
        plans.append((plan, cache))
        shots += scene
        cues += scene_cues(script, offset)
        offset += script.frame_count() / script.fps
    if args.preview:
        fps = film.fps / PREVIEW_STRIDE

    # 3. Render what the cache lacks, while a second thread encodes the film as its frames appear, in order
    total = sum(len(needed_jobs(p)) for p, _ in plans)
    print(f"painter calls of {', '.join(str(n) for n in sorted({p.rows for p, _ in plans}))} rows", flush=True)
    with tqdm(total=total, unit="frame", desc="walk", dynamic_ncols=True) as bar:
        cached, rendered = render_and_encode(painter, plans, shots, args.batch_size, bar,
                                             FilmSpec(out, fps, (width, height), film.audio))
    print(f"frames: {cached} cached, {rendered} rendered", flush=True)
    write_srt(cues, out.with_suffix(".srt"))
    seconds = len(shots) / fps
    print(f"wrote {out} ({len(shots)} frames, {fps:g} fps, {width}x{height}, {seconds:.2f} s) and "
          f"{out.with_suffix('.srt').name}", flush=True)
    return 0
