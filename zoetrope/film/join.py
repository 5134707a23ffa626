"""Join rendered films into one: crossfades between them and an audio bed under the whole, composed by moviepy,
every frame kept.

moviepy is the right tool for composition (clips placed in time, a crossfade as a fading mask over the film
before, audio clips faded and mixed) and the wrong one for encoding: its `write_videofile` iterates
`np.arange(0, duration, 1 / fps)`, whose float rounding drops the last frame at 12/24/30 fps, and its reader
counts frames as int(duration x fps) from a container duration printed to 1/100 s. So the frame counts here are
exact integers (ffmpeg counts the packets), each clip is placed half a frame early so every output time k / fps
falls half a frame away from a clip's edges, moviepy's composite is asked for exactly those frames, and they are
written through the project's one encoder (film/encode.FrameWriter: exact count, atomic rename, audio cut to the
picture). Joined length: the films' frames added, minus one crossfade per join.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.base.files import temp_name
from zoetrope.film.encode import FrameWriter, check_film_output, ffmpeg_exe, ffmpeg_reason

AUDIO_RATE = 44100


@dataclass(frozen=True)
class FilmInfo:
    """One input film: its exact frame count (packets of the video stream), rate, size and whether it has sound."""

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    audio: bool


@dataclass(frozen=True)
class Joined:
    """What `join_films` wrote."""

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    crossfade_frames: int
    audio: bool

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def film_info(path: Path) -> FilmInfo:
    """Frame count, fps, size and sound of a film, or `PATH: reason` (one line) when ffmpeg cannot read it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: film not found")
    run = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-progress", "pipe:1", "-i", str(path),
                          "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], capture_output=True, text=True)
    video = next((line for line in run.stderr.splitlines() if "Video:" in line), None)
    if run.returncode != 0 or video is None:
        reason = "no video stream" if run.returncode == 0 else ffmpeg_reason(run.stderr)
        raise UserError(f"{path}: not a film ffmpeg can read ({reason})")
    counts = re.findall(r"^frame=(\d+)$", run.stdout, re.MULTILINE)
    size = re.search(r", (\d{2,5})x(\d{2,5})", video)
    fps = re.search(r"([\d.]+) fps", video)
    if not counts or size is None or fps is None:
        raise UserError(f"{path}: not a film ffmpeg can read (no frame count, size or rate in: {video.strip()[:120]})")
    return FilmInfo(path, int(counts[-1]), float(fps[1]), (int(size[1]), int(size[2])),
                    any("Audio:" in line for line in run.stderr.splitlines()))


def check_films(films: list[FilmInfo], crossfade: float) -> int:
    """The crossfade in whole frames; refuses (one line naming the film) films of another size or rate, and a
    crossfade longer than a film it joins. Films are joined as they are: nothing is resized or re-timed."""
    if not films:
        raise ValueError("`films` is empty; pass at least one film.")
    if crossfade < 0:
        raise UserError(f"--crossfade: must be 0 or more seconds, got {crossfade:g}")
    first = films[0]
    for film in films[1:]:
        if (film.size, film.fps) != (first.size, first.fps):
            raise UserError(f"{film.path}: {film.size[0]}x{film.size[1]} at {film.fps:g} fps, but {first.path} is "
                            f"{first.size[0]}x{first.size[1]} at {first.fps:g} fps; render the films alike to join them")
    frames = round(Fraction(crossfade).limit_denominator(10**6) * Fraction(first.fps).limit_denominator(1001))
    if len(films) > 1:
        for film in films:
            if film.frames <= frames:
                raise UserError(f"--crossfade: {crossfade:g} s is {frames} frames, but {film.path} has only "
                                f"{film.frames}; shorten the crossfade")
    return frames


def starts(films: list[FilmInfo], crossfade_frames: int) -> list[int]:
    """The first output frame of each film: each one begins `crossfade_frames` before the last one ends."""
    out, at = [], 0
    for film in films:
        out.append(at)
        at += film.frames - crossfade_frames
    return out


def join_films(paths: list[Path], out: Path, crossfade: float = 0.0, audio: Path | None = None,
               audio_volume: float = 1.0, crf: int = 18, on_frame=None) -> Joined:
    """Join `paths` into `out`: each film crossfades into the next over `crossfade` seconds (rounded to whole
    frames), the films' own sound crossfades with them, and `audio` (a bed, scaled by `audio_volume`) plays under
    the whole from its start, cut to the picture. Frames: sum of the films' minus (films - 1) x crossfade.
    `on_frame(done, total)` after each frame written."""
    out = Path(out)
    if audio is not None and not Path(audio).is_file():
        raise UserError(f"{audio}: audio file not found")
    if not 0.0 <= audio_volume <= 10.0:
        raise UserError(f"--audio-volume: must be in 0..10, got {audio_volume:g}")
    films = [film_info(Path(p)) for p in paths]
    if any(film.path.resolve() == out.resolve() for film in films):
        raise UserError(f"{out}: the output is one of the films joined; choose another --out")
    fade = check_films(films, crossfade)
    check_film_output(out)  # before moviepy opens a film: a bad --out is one line, and nothing is written
    first = films[0]
    begin = starts(films, fade)
    total = begin[-1] + films[-1].frames

    from moviepy import AudioFileClip, CompositeAudioClip, CompositeVideoClip, VideoFileClip, afx, vfx

    fps = first.fps
    clips, sounds = [], []
    try:
        for i, (film, at) in enumerate(zip(films, begin, strict=True)):
            # Half a frame early: output time k / fps is then local time (k - at + 1/2) / fps, read by moviepy as
            # frame int(fps x t + 1e-5) = k - at, and never on the edge of a clip, where float sums could tip.
            clip = VideoFileClip(str(film.path), audio=film.audio).with_duration(film.frames / fps)
            clip = clip.with_start((at - 0.5) / fps)
            if i > 0 and fade:
                clip = clip.with_effects([vfx.CrossFadeIn(fade / fps)])  # weights (j + 1/2) / fade, j = 0..fade-1
            clips.append(clip)
            if film.audio and clip.audio is not None:
                effects = ([afx.AudioFadeIn(fade / fps)] if i > 0 and fade else []) + (
                    [afx.AudioFadeOut(fade / fps)] if i < len(films) - 1 and fade else [])
                sounds.append(clip.audio.with_duration(film.frames / fps).with_start(at / fps).with_effects(effects))
        if audio is not None:
            bed = AudioFileClip(str(audio))
            bed = bed.with_duration(min(bed.duration, total / fps))
            sounds.append(bed.with_effects([afx.MultiplyVolume(audio_volume)]) if audio_volume != 1.0 else bed)
        film_clip = CompositeVideoClip(clips, size=first.size).with_duration(total / fps)
        mix = temp_name(out.with_suffix(".wav"), keep_suffix=True) if sounds else None
        try:
            if mix is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                CompositeAudioClip(sounds).with_duration(total / fps).write_audiofile(
                    str(mix), fps=AUDIO_RATE, logger=None)
            with FrameWriter(out, fps, first.size, audio=mix, crf=crf) as writer:
                for k in range(total):
                    writer.write(film_clip.get_frame(k / fps).astype("uint8", copy=False))
                    if on_frame is not None:
                        on_frame(k + 1, total)
        finally:
            if mix is not None:
                mix.unlink(missing_ok=True)
    finally:
        for clip in clips:
            clip.close()
    return Joined(out, writer.frames_written, fps, first.size, fade, mix is not None)
