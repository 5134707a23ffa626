"""The film pipeline: a scene script (or a logged chain) -> frames in the cache -> one mp4 with its .srt.

`render_film(request)` reads as numbered steps, as a diffusers pipeline's `__call__` does. It names the
painter of each scene before anything loads, so no model is chosen silently. Nothing here prints, parses argv
or exits: lines for humans go to `on_line`, progress to `progress` (the CLI passes tqdm bars), the result is
data. Every output path (the film, its .srt, the frame folders) is probed before the painter loads, so a path
that cannot be written costs seconds, not a render. The film is written under a temp name and renamed, so a
failed render leaves nothing at its path; what a killed render left (temp names of dead processes) is swept.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from zoetrope.base.errors import UserError
from zoetrope.film.timeline import Shot, scene_cues, scene_shots
from zoetrope.settings.scene import Film

PREVIEW_STRIDE = 4  # a preview keeps every 4th frame (a quarter) and plays them at fps / 4: same duration
FILM_SUFFIXES = (".mp4", ".mov", ".mkv")
CHAIN_FILM_DEFAULTS = {"fps": 24, "hold": 1.0, "transition": 2.0}  # documented in docs/films.md


class Progress(Protocol):
    """What the pipeline needs of a progress bar (tqdm satisfies it)."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


class _Silent:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def no_progress(what: str, total: int) -> Progress:
    """The default progress factory: `what` is "walk" (frames painted or found) or "encode" (frames encoded)."""
    return _Silent()


# ---------------------------------------------------------------------------------------------- request


@dataclass(frozen=True)
class RenderRequest:
    """Everything a render is asked for. Exactly one of `script` and `from_chain`; `fps`, `hold` and
    `transition` only with `from_chain` (a script sets its own timing)."""

    script: Path | None = None
    from_chain: Path | None = None
    fps: int | None = None
    hold: float | None = None
    transition: float | None = None
    out: Path | None = None
    rows: int | None = None  # painter call width; None: measured once per frame cache
    batch_size: int | None = None  # frames per painter call, 1..rows; None: rows
    preview: bool = False
    cache_root: Path = Path("renders/films")
    painter: str | None = None  # overrides every scene's `model` (the CLI's --models)
    device: str | None = None
    speed: dict = field(default_factory=dict)  # a partial `speed` section: attention, channels_last, compile, vae
    ray: str | None = None  # local:N | auto | ray://host:port: paint the walk's frames on Ray actors
    models: dict = field(default_factory=dict)  # --models overrides of other roles: {"ltx": ..., "animatediff": ...}


def check_request(request: RenderRequest) -> None:
    """Raise a UserError naming the option and the value it got; called before anything is read or loaded."""
    from zoetrope.film.rows import MAX_ROWS

    r = request
    if (r.script is None) == (r.from_chain is None):
        raise UserError("render: give a scene script or --from-chain DIR (exactly one)")
    if r.from_chain is None and any(v is not None for v in (r.fps, r.hold, r.transition)):
        raise UserError("render: --fps, --hold and --transition apply to --from-chain; a script sets its own")
    if r.rows is not None and not 1 <= r.rows <= MAX_ROWS:
        raise UserError(f"--rows: must be 1..{MAX_ROWS} (got {r.rows})")
    if r.batch_size is not None and not 1 <= r.batch_size <= (r.rows or MAX_ROWS):
        raise UserError(f"--batch-size: must be 1..{r.rows or MAX_ROWS} (got {r.batch_size})")
    if r.fps is not None and not 1 <= r.fps <= 120:
        raise UserError(f"--fps: must be 1..120 (got {r.fps})")
    for flag, value in (("hold", r.hold), ("transition", r.transition)):
        if value is not None and not value > 0:
            raise UserError(f"--{flag}: must be greater than 0 (got {value})")
    if r.out is not None and r.out.suffix.lower() not in FILM_SUFFIXES:
        raise UserError(f"--out: a film needs one of {', '.join(FILM_SUFFIXES)} (got {r.out})")


# ----------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PainterChoice:
    """The painter a film uses and why: `origin` is "scene" (the scenes' `model`, or the schema's default
    where a scene names none), "--models" (the caller's override) or "chain log" (the logged painter, with
    its logged revision)."""

    spec: str
    revision: str | None
    origin: str


@dataclass
class FilmInputs:
    """A film read and checked, with where it goes and which painter paints it; no model loaded yet."""

    film: Film
    out: Path
    painter: PainterChoice
    notes: list[str] = field(default_factory=list)


def film_from_chain(folder: Path, fps: int | None, hold: float | None,
                    transition: float | None) -> tuple[Film, PainterChoice, list[str]]:
    """A chain log as a one-scene Film: each step a keyframe (its prompt and logged seed), its caption the
    subtitle; size, steps, guidance and scheduler from the logged config. Returns (film, painter, notes)."""
    from pydantic import ValidationError

    from zoetrope.loop.chainlog import LOG_NAME, read_chain
    from zoetrope.settings.loop import LoopConfig
    from zoetrope.settings.parsing import first_error
    from zoetrope.settings.scene import ANCESTRAL, SceneScript

    chain = read_chain(folder)
    steps = [s for s in chain.steps if s.get("prompt")]
    if not steps:
        raise UserError(f"{folder}: the chain has no steps yet; nothing to film")
    logged = (chain.header.get("models") or {}).get("painter") or {}
    if not logged.get("id"):
        raise UserError(f"{folder / LOG_NAME}:1: models.painter.id: the header names no painter; "
                        "give one with --models")
    try:  # the logged config, not guessed defaults: the film is painted as the chain was
        paint = LoopConfig.model_validate(chain.header.get("config") or {}).paint
    except ValidationError as exc:
        raise UserError(f"{folder / LOG_NAME}:1: config.{first_error(exc)}") from None
    notes, scheduler = [], paint.scheduler
    if scheduler in ANCESTRAL:
        notes.append(f"the chain used the ancestral {scheduler}; the film walks with euler (ancestral samplers flicker)")
        scheduler = "euler"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", folder.resolve().name).lstrip("-._") or "chain"
    hold = CHAIN_FILM_DEFAULTS["hold"] if hold is None else hold
    data = {
        "name": name[:64], "title": f"chain {folder.name}", "fps": fps or CHAIN_FILM_DEFAULTS["fps"],
        "width": paint.width, "height": paint.height, "steps": paint.steps, "guidance": paint.guidance,
        "scheduler": scheduler, "model": logged["id"], "negative_prompt": steps[0].get("negative_prompt") or "",
        "transition": CHAIN_FILM_DEFAULTS["transition"] if transition is None else transition,
        "keyframes": [
            {"prompt": s["prompt"], "seed": s["seed"], "hold": hold,
             **({"subtitle": s["caption"]} if s.get("caption") else {})}
            for s in steps
        ],
    }
    try:
        script = SceneScript.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{folder}: cannot film this chain: {first_error(exc)}") from None
    film = Film(script.title, [(script.name, script)], None)
    return film, PainterChoice(logged["id"], logged.get("revision"), "chain log"), notes


def scene_painter(film: Film, override: str | None) -> PainterChoice:
    """One painter for the whole film: the override, else the scenes' common `model`."""
    if override:
        return PainterChoice(override, None, "--models")
    models = {s.model for _, s in film.scenes}
    if len(models) > 1:
        raise UserError(f"the scenes use different models ({', '.join(sorted(models))}); choose one with --models")
    return PainterChoice(models.pop(), None, "scene")


def read_inputs(request: RenderRequest) -> FilmInputs:
    """Read the script or the chain and decide the output path and the painter (nothing loaded or written)."""
    from zoetrope.settings.scene import load_film

    notes: list[str] = []
    if request.script is not None:
        film = load_film(request.script)
        painter = scene_painter(film, request.painter)
    else:
        film, painter, notes = film_from_chain(request.from_chain, request.fps, request.hold, request.transition)
        if request.painter:
            painter = PainterChoice(request.painter, None, "--models")
    name = film.scenes[0][0] if len(film.scenes) == 1 else (request.script.stem if request.script else "film")
    out = request.out or Path("renders/films") / f"{name}{'-preview' if request.preview else ''}.mp4"
    return FilmInputs(film, out, painter, notes)


def frame_folders(film: Film, cache_root: Path) -> list[Path]:
    """Where each scene's frames are cached: CACHE_ROOT/<scene>/frames."""
    return [cache_root / name / "frames" for name, _ in film.scenes]


def check_outputs(inputs: FilmInputs, cache_root: Path) -> None:
    """Every path the render will write, checked for real (a probe file, removed) before any model loads: the
    film, its .srt sidecar and each scene's frame folder. A UserError `PATH: cannot write here (why)`."""
    from zoetrope.base.files import check_writable

    srt = inputs.out.with_suffix(".srt")
    check_writable(inputs.out)
    if srt.is_dir():
        raise UserError(f"{srt}: cannot write here (it is a folder; the film's .srt sidecar goes there)")
    for folder in frame_folders(inputs.film, cache_root):
        check_writable(folder, folder=True)


def painter_lines(inputs: FilmInputs) -> list[str]:
    """`scene NAME: painter ID (revision REV)` per scene, saying where the choice came from when it is not
    the scene's own `model` (the schema's default, --models, the chain log). The id and revision are those
    the load will record: a preset's Hub id; the revision pinned in the local cache, else `none`."""
    from zoetrope.stages.models import pin_revision, resolve

    choice = inputs.painter
    ref = pin_revision(resolve("painter", choice.spec, choice.revision))
    lines = []
    for name, script in inputs.film.scenes:
        why = {"--models": ", from --models", "chain log": ", as logged by the chain"}.get(choice.origin, "")
        if choice.origin == "scene" and "model" not in script.model_fields_set:
            why = ", the default: the scene names no model (set `model:` or --models)"
        lines.append(f"scene {name}: painter {ref.id} (revision {ref.revision or 'none'}){why}")
    return lines


@dataclass
class FilmLayout:
    """Every scene planned against the loaded painter: what to render, the film order, the subtitles."""

    plans: list[tuple[object, Path]]  # (walk.ScenePlan, its frame cache)
    shots: list[Shot]
    cues: list[tuple[float, float, str]]
    fps: float
    size: tuple[int, int]


def lay_out(film: Film, painter, identity: dict, request: RenderRequest) -> FilmLayout:
    """Plan each scene at the film's (or the preview's) size, with the call width its frame cache records."""
    from zoetrope.film.rows import call_rows, measure_rows
    from zoetrope.film.walk import ROWS, plan_scene, walk_params

    width, height = film.size
    if request.preview:
        width, height = max(32, width // 2 // 8 * 8), max(32, height // 2 // 8 * 8)
    plans, shots, cues, offset = [], [], [], 0.0
    for scene_name, script in film.scenes:
        cache = request.cache_root / scene_name / "frames"
        params = walk_params(script, width, height)
        rows = request.rows or call_rows(cache, identity, params, lambda p=params: measure_rows(painter, p, ROWS))
        if request.batch_size is not None and request.batch_size > rows:
            raise UserError(f"--batch-size: must be 1..{rows}, the painter call width here (got {request.batch_size}); "
                            "see --rows")
        plan = plan_scene(scene_name, script, identity, width=width, height=height, rows=rows)
        scene = scene_shots(plan, cache, script.burn_subtitles)
        if request.preview:  # every 4th frame; only those are rendered
            plan.sequence = plan.sequence[::PREVIEW_STRIDE]
            scene = scene[::PREVIEW_STRIDE]
        plans.append((plan, cache))
        shots += scene
        cues += scene_cues(script, offset)
        offset += script.frame_count() / script.fps
    fps = film.fps / PREVIEW_STRIDE if request.preview else film.fps
    return FilmLayout(plans, shots, cues, fps, (width, height))


# ------------------------------------------------------------------------------------- render + encode


def encode_shots(shots: list[Shot], path: Path, fps: float, size: tuple[int, int], audio: Path | None, feed,
                 bar: Progress) -> None:
    """Stream the film's frames into ffmpeg in order, each as soon as the walk has saved it."""
    from PIL import Image

    from zoetrope.film.encode import FrameWriter, burn_subtitle, intertitle_card

    previous, image, card_text, card = None, None, None, None
    with FrameWriter(path, fps, size, audio=audio) as writer:
        for shot in shots:
            if shot.path != previous:  # a hold repeats one cached frame: read it once
                feed.wait(shot.path)
                with Image.open(shot.path) as im:
                    image = im.convert("RGB")
                previous = shot.path
            if shot.card and shot.card != card_text:  # and one card: draw it once
                card_text, card = shot.card, intertitle_card(size, shot.card)
            frame = card if shot.card else image
            if shot.subtitle:
                frame = burn_subtitle(frame, shot.subtitle)
            writer.write(frame)
            bar.update(1)


def render_and_encode(painter, layout: FilmLayout, out: Path, audio: Path | None, batch_size: int | None,
                      on_line: Callable[[str], None], progress: Callable[[str, int], Progress]) -> tuple[int, int]:
    """The walk paints on this thread, saves on its writer thread, and the encoder thread takes frames in film
    order: encoding overlaps painting, and the painter never waits for ffmpeg. Returns (cached, rendered)."""
    from zoetrope.film.walk import FrameFeed, needed_jobs, render_missing

    feed, failures = FrameFeed(), []
    walk_bar = progress("walk", sum(len(needed_jobs(p)) for p, _ in layout.plans))
    encode_bar = progress("encode", len(layout.shots))

    def encode() -> None:
        try:
            encode_shots(layout.shots, out, layout.fps, layout.size, audio, feed, encode_bar)
        except BaseException as exc:  # re-raised on the main thread; the walk stops at its next batch
            failures.append(exc)
            feed.consumer_failed(exc)

    encoder = threading.Thread(target=encode, name="film-encoder")
    encoder.start()
    cached = rendered = 0
    try:
        for plan, cache in layout.plans:
            stats = render_missing(painter, plan, cache, batch_size, progress=walk_bar, feed=feed)
            cached, rendered = cached + stats.cached, rendered + stats.rendered
            on_line(f"scene {plan.name}: {stats.summary()}")
    except BaseException as exc:
        feed.close(exc)  # the encoder stops waiting for frames that will not come
        raise
    else:
        feed.close()
    finally:
        encoder.join()
        encode_bar.close()
        walk_bar.close()
    if failures:
        raise failures[0]
    return cached, rendered


@dataclass(frozen=True)
class RenderResult:
    out: Path
    srt: Path
    frames: int
    fps: float
    size: tuple[int, int]
    cached: int  # unique frames found in the cache
    rendered: int  # unique frames painted now


def render_film(request: RenderRequest, on_line: Callable[[str], None] = lambda line: None,
                progress: Callable[[str, int], Progress] = no_progress) -> RenderResult:
    """Render `request` to a film and its .srt; lines for humans go to `on_line`, the painter's first."""
    # 1. Check and read every input, and check every output path, before loading a model or writing a file
    check_request(request)
    inputs = read_inputs(request)
    check_outputs(inputs, request.cache_root)

    # 2. Say which painter paints each scene, and why, before it loads
    for line in painter_lines(inputs):
        on_line(line)
    for note in inputs.notes:
        on_line(f"note: {note}")

    # 3. Load the painter and lay out every scene
    from zoetrope.base.files import sweep_temps
    from zoetrope.film.encode import write_srt
    from zoetrope.film.walk import painter_identity
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    speed = SpeedOptions(**request.speed)
    choice = inputs.painter
    painter = load_painter(choice.spec, pick_device(request.device), choice.revision, speed)
    layout = lay_out(inputs.film, painter, painter_identity(painter, speed), request)
    on_line(f"painter calls of {', '.join(str(n) for n in sorted({p.rows for p, _ in layout.plans}))} rows")

    # 4. Render what the cache lacks while a second thread encodes the film as its frames appear, in order
    srt = inputs.out.with_suffix(".srt")
    sweep_temps(inputs.out.parent, (inputs.out.name, srt.name))  # a killed render's half film, not a live one's
    cached, rendered = render_and_encode(painter, layout, inputs.out, inputs.film.audio, request.batch_size,
                                         on_line, progress)
    write_srt(layout.cues, srt)
    return RenderResult(inputs.out, srt, len(layout.shots), layout.fps, layout.size, cached, rendered)
