"""The film pipeline: a scene script (or a logged chain) -> frames in the cache -> one mp4 with its .srt.

`render_film(request)` reads as numbered steps, as a diffusers pipeline's `__call__` does. It names the
painter of each scene before anything loads, so no model is chosen silently. Nothing here prints, parses argv
or exits: lines for humans go to `on_line`, progress to `progress` (the CLI passes tqdm bars), the result is
data. Every output path (the film, its .srt, the frame folders) is probed before the painter loads, so a path
that cannot be written costs seconds, not a render. The film is written under a temp name and renamed, so a
failed render leaves nothing at its path; what a killed render left (temp names of dead processes) is swept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from zoetrope.base.errors import UserError
from zoetrope.film.choices import ModelChoice, PainterChoice, film_choices, model_lines
from zoetrope.film.layout import PREVIEW_STRIDE, FilmLayout, SceneLayout, lay_out
from zoetrope.film.timeline import Shot
from zoetrope.settings.scene import Film

FILM_SUFFIXES = (".mp4", ".mov", ".mkv")
__all__ = ["PREVIEW_STRIDE", "PainterChoice", "RenderRequest", "render_film"]


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
    rows: int | None = None  # painter call width; None: the scene's `rows:`, else walk.call_rows' rule
    batch_size: int | None = None  # frames per painter call, 1..rows; None: rows
    preview: bool = False
    cache_root: Path = Path("renders/films")
    painter: str | None = None  # overrides every scene's `model` (the CLI's --models)
    device: str | None = None
    speed: dict = field(default_factory=dict)  # a partial `speed` section: attention, channels_last, compile, vae
    ray: str | None = None  # local:N | auto | ray://host:port: paint the walk's frames on Ray actors
    models: dict = field(default_factory=dict)  # --models overrides of the other roles: {role: model}
    screenplay: dict = field(default_factory=dict)  # a .fountain script's film options: front, style, seed, size...


def check_request(request: RenderRequest) -> None:
    """Raise a UserError naming the option and the value it got; called before anything is read or loaded."""
    from zoetrope.settings.params import MAX_ROWS

    r = request
    if (r.script is None) == (r.from_chain is None):
        raise UserError("render: give a scene script or --from-chain DIR (exactly one)")
    fountain = r.script is not None and r.script.suffix.lower() in (".fountain", ".spmd")  # --fps is its option
    if r.from_chain is None and any(v is not None for v in (None if fountain else r.fps, r.hold, r.transition)):
        raise UserError("render: --fps, --hold and --transition apply to --from-chain; a script sets its own")
    if r.screenplay and not fountain:
        raise UserError("render: --front, --size, --seed, --style, --engine and --character apply to a screenplay "
                        "(.fountain); a scene script sets its own")
    if r.rows is not None and not 1 <= r.rows <= MAX_ROWS:
        raise UserError(f"--rows: must be 1..{MAX_ROWS} (got {r.rows})")
    if r.batch_size is not None and not 1 <= r.batch_size <= (r.rows or MAX_ROWS):
        raise UserError(f"--batch-size: must be 1..{r.rows or MAX_ROWS} (got {r.batch_size})")
    if r.fps is not None and not 1 <= r.fps <= 120:
        raise UserError(f"--fps: must be 1..120 (got {r.fps})")
    for flag, value in (("hold", r.hold), ("transition", r.transition)):
        if value is not None and not value > 0:
            raise UserError(f"--{flag}: must be greater than 0 (got {value})")
    if r.ray is not None:
        from zoetrope.stages.cluster import parse_address

        parse_address(r.ray)  # a malformed address or local:0 is one line now, before anything is read
    if r.out is not None and r.out.suffix.lower() not in FILM_SUFFIXES:
        raise UserError(f"--out: a film needs one of {', '.join(FILM_SUFFIXES)} (got {r.out})")


# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class FilmInputs:
    """A film read and checked, with where it goes and which models render it; no model loaded yet."""

    film: Film
    out: Path
    choices: dict[str, ModelChoice]
    notes: list[str] = field(default_factory=list)

    @property
    def painter(self) -> ModelChoice | None:
        return self.choices.get("painter")


def read_inputs(request: RenderRequest) -> FilmInputs:
    """Read the script or the chain and decide the output path and the models (nothing loaded or written)."""
    from zoetrope.settings.scene import load_film

    notes: list[str] = []
    overrides = {"painter": request.painter, **request.models}
    if request.script is not None:
        film = load_film(request.script, {**request.screenplay, "fps": request.fps})
        choices = film_choices(film, {k: v for k, v in overrides.items() if v})
    else:
        from zoetrope.film.chain_film import film_from_chain

        film, (spec, revision), notes = film_from_chain(request.from_chain, request.fps, request.hold,
                                                        request.transition)
        logged = ModelChoice(request.painter, None, "--models") if request.painter else \
            ModelChoice(spec, revision, "chain log")
        choices = film_choices(film, {}, painter=logged)
    name = film.scenes[0][0] if len(film.scenes) == 1 else (request.script.stem if request.script else "film")
    out = request.out or Path("renders/films") / f"{name}{'-preview' if request.preview else ''}.mp4"
    return FilmInputs(film, out, choices, notes)


def frame_folders(film: Film, cache_root: Path) -> list[Path]:
    """Where each scene's frames are cached: CACHE_ROOT/<scene>/frames."""
    return [cache_root / name / "frames" for name, _ in film.scenes]


def check_outputs(inputs: FilmInputs, cache_root: Path) -> None:
    """Every path the render will write, checked for real (a probe file, removed) before any model loads: the
    film, its .srt and .json sidecars and each scene's frame folder. A UserError `PATH: cannot write here (why)`."""
    from zoetrope.base.files import check_writable

    check_writable(inputs.out)
    from zoetrope.film.audio_sync import plot_path

    for sidecar_path, what in ((inputs.out.with_suffix(".srt"), ".srt sidecar"), (inputs.out.with_suffix(".json"), "record"),
                               (plot_path(inputs.out), "timing plot")):
        if sidecar_path.is_dir():
            raise UserError(f"{sidecar_path}: cannot write here (it is a folder; the film's {what} goes there)")
    for folder in frame_folders(inputs.film, cache_root):
        check_writable(folder, folder=True)


def painter_lines(inputs: FilmInputs) -> list[str]:
    """`scene NAME: ENGINE with MODEL (revision REV)` per scene, saying where each choice came from when it is
    not the scene's own field (the schema's default, --models, the chain log)."""
    return model_lines(inputs.film, inputs.choices)


# ------------------------------------------------------------------------------------- render + encode


def encode_shots(shots: list[Shot], path: Path, fps: float, size: tuple[int, int], audio: tuple | None, feed,
                 bar: Progress, fps_out: int | None = None) -> None:
    """Stream the film's frames into ffmpeg in order, each as soon as the walk has saved it."""
    from PIL import Image

    from zoetrope.film.encode import FrameWriter, burn_subtitle, intertitle_card

    previous, image, card_text, card = None, None, None, None
    sound, start, gain = audio or (None, 0.0, None)
    with FrameWriter(path, fps, size, audio=sound, audio_start=start, fps_out=fps_out, frames=len(shots),
                     audio_filter=gain) as writer:
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


def executor_for(models, layout: FilmLayout):
    """Where the film's units are painted: the Ray workers (`--ray`), else this process, on as many CPU lanes as
    the film's parts allow (a lane count changes speed, never a frame: stages/lanes.py)."""
    if models.pool is not None:
        return models.pool
    from types import SimpleNamespace

    from zoetrope.stages.lanes import LocalPool

    lanes = max((p.lanes() for s in layout.scenes for p in s.parts.values()), default=1)
    return LocalPool(SimpleNamespace(painter=models.painter, clips=models.clips, state={}), lanes)


def scene_line(scene: SceneLayout, stats: dict, upscaled: tuple[int, int] | None, scale: int | None) -> str:
    """`scene NAME: ENGINE N frames cached, M rendered in K calls...; ...` (counts in film frames)."""
    from zoetrope.film.engines.run import RenderStats

    parts = [f"{e} {stats.get((scene.name, e), RenderStats()).summary()}" for e in scene.parts]
    if upscaled is not None:
        parts.append(f"upscaled x{scale} {upscaled[0]} frames cached, {upscaled[1]} upscaled")
    return f"scene {scene.name}: {'; '.join(parts)}"


def render_and_encode(models, layout: FilmLayout, out: Path, audio: tuple | None, batch_size: int | None,
                      on_line: Callable[[str], None], progress: Callable[[str, int], Progress]) -> tuple[int, int]:
    """Every unit of the film through the one render path (engines/run.py: here, or on Ray workers), while the
    encoder thread takes frames in film order: encoding overlaps painting, and no engine waits for ffmpeg.
    `audio`: (file, seconds into it where the film starts, the gain's ffmpeg filter or None) or None. Returns
    (cached, rendered) film frames."""
    from zoetrope.film.engines.run import render_units
    from zoetrope.film.walk import FrameFeed

    feed, failures = FrameFeed(), []
    units = [u for s in layout.scenes for u in s.units(batch_size)]
    walk_bar = progress("walk", sum(u.frames for u in units))
    encode_bar = progress("encode", len(layout.shots))

    def encode() -> None:
        try:
            encode_shots(layout.shots, out, layout.fps, layout.size, audio, feed, encode_bar, layout.fps_out)
        except BaseException as exc:  # re-raised on the main thread; the engines stop at their next unit
            failures.append(exc)
            feed.consumer_failed(exc)

    encoder = threading.Thread(target=encode, name="film-encoder")
    encoder.start()
    try:
        stats = render_units(executor_for(models, layout), units, walk_bar, feed)
        upscaled = {}
        for scene in layout.scenes:
            if scene.name in layout.upscale:
                from zoetrope.film.upscaling import upscale_scene

                upscaled[scene.name] = upscale_scene(models.upscaler, scene, layout.upscale[scene.name], feed)
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
    for scene in layout.scenes:
        on_line(scene_line(scene, stats, upscaled.get(scene.name), models.upscaler.scale if models.upscaler else None))
    return sum(s.cached for s in stats.values()), sum(s.rendered for s in stats.values())


@dataclass(frozen=True)
class RenderResult:
    out: Path
    srt: Path
    frames: int
    fps: float
    size: tuple[int, int]
    cached: int  # unique frames found in the cache (every engine's)
    rendered: int  # unique frames painted now


def render_film(request: RenderRequest, on_line: Callable[[str], None] = lambda line: None,
                progress: Callable[[str, int], Progress] = no_progress) -> RenderResult:
    """Render `request` to a film and its .srt; lines for humans go to `on_line`, the painter's first."""
    # 1. Check and read every input, and check every output path, before loading a model or writing a file
    check_request(request)
    inputs = read_inputs(request)
    check_outputs(inputs, request.cache_root)
    from zoetrope.film.audio_sync import sync_film

    inputs.film, timing = sync_film(inputs.film, request.cache_root)  # a bad audio file: one line, no model loaded

    # 2. Say which engine and model render each scene, and why, before anything loads
    for line in painter_lines(inputs):
        on_line(line)
    for note in inputs.notes + (timing.notes if timing else []):
        on_line(f"note: {note}")

    # 3. Load the models (the walk's on Ray workers with --ray) and lay out every scene (every key)
    from zoetrope.film.choices import load_models

    models = load_models(inputs.film, inputs.choices, request.device, request.speed, request.ray)
    try:
        return _render(request, inputs, models, timing, on_line, progress)
    finally:
        if models.pool is not None:
            models.pool.close()


def _render(request: RenderRequest, inputs: FilmInputs, models, timing, on_line: Callable[[str], None],
            progress: Callable[[str, int], Progress]) -> RenderResult:
    """render_film's steps 3 (layout) and 4 (render and encode), with the models loaded."""
    from zoetrope.base.files import sweep_temps, write_durable
    from zoetrope.film.audio_sync import plot_path, write_plot
    from zoetrope.film.encode import write_srt
    from zoetrope.film.sidecar import sidecar

    layout = lay_out(inputs.film, models, request)
    if shapes := layout.call_shapes():
        on_line(f"painter calls of {shapes}" + (f" on {models.pool.describe()}" if models.pool is not None else ""))

    # 4. Render what the cache lacks while a second thread encodes the film as its frames appear, in order
    srt, record = inputs.out.with_suffix(".srt"), inputs.out.with_suffix(".json")
    sweep_temps(inputs.out.parent, (inputs.out.name, srt.name, record.name, plot_path(inputs.out).name))  # dead ones
    audio = None
    if inputs.film.audio is not None:
        from zoetrope.film.audio_sync import gain_filter

        spec, first = inputs.film.audio_spec, inputs.film.scenes[0][1]
        audio = (inputs.film.audio, spec.start or 0.0, gain_filter(spec.gain, first.fps, first.easing))
    cached, rendered = render_and_encode(models, layout, inputs.out, audio, request.batch_size,
                                         on_line, progress)
    write_srt(layout.cues, srt)
    if timing is not None:
        on_line(f"timing plot: {write_plot(inputs.out, timing, inputs.film.fps)}")
    try:
        write_durable(record, (json.dumps(sidecar(inputs, layout, models), indent=1) + "\n").encode())
    except OSError as exc:
        raise UserError(f"{record}: cannot write the film's record ({exc.strerror or exc})") from None
    frames, fps = len(layout.shots), layout.fps
    if layout.fps_out is not None:
        from zoetrope.film.encode import interpolation_frames

        frames, fps = interpolation_frames(frames, fps, layout.fps_out), layout.fps_out
    return RenderResult(inputs.out, srt, frames, fps, layout.size, cached, rendered)
