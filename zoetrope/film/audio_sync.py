"""Audio-synced films: the picture follows the music (`audio: {file, sync: onsets|energy, snap: beats}`).

With sync on, the film lasts exactly as long as the audio (or its `start`..`end` span): N = round(seconds x
fps) frames, shared among the keyframes' holds and transitions in proportion to their seconds (film/audio.py
`synced_frames`: cumulative rounding, so the sum is exactly N). With `snap: beats` each keyframe's arrival then
moves to the nearest detected beat, and its interval is shared between hold and transition as before. Inside
each transition the walk's t advances with the audio's strength over those frames (onset strength or RMS,
cumulative and normalised, as stable-diffusion-videos' `get_timesteps_arr`, but strictly between the
keyframes, which are not repeated): the image moves on the beat and rests in quiet passages. A silent
transition keeps its easing, and the render says so. Video-engine segments take the synced frame counts.

The scenes of a film file share the audio: their keyframes are laid end to end over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.settings.scene import Film


@dataclass
class SyncedTiming:
    """What the timing plot shows and the render reports."""

    audio: object  # film.audio.Audio
    sync: str
    strength: object  # np.ndarray, one value per film frame
    positions: list[float]  # the walk's position per film frame, in keyframe units (i + t)
    keyframe_frames: list[int]  # film frame where each keyframe's hold starts
    notes: list[str] = field(default_factory=list)


def _snap(hold_f: list[int], trans_f: list[int], holds: list[float], transitions: list[float], audio,
          fps: float) -> tuple[list[int], list[int]]:
    """Move each keyframe's arrival (after the first) to the nearest beat; share each interval as before."""
    from zoetrope.film.audio import beat_times, snap_to_beats

    n = sum(hold_f) + sum(trans_f)
    starts, frame = [], 0
    for h, t in zip(hold_f, trans_f, strict=True):
        starts.append(frame)
        frame += h + t
    snapped = snap_to_beats([s / fps for s in starts[1:]], beat_times(audio), fps=fps)
    bounds = [0] + [min(n, max(0, round(t * fps))) for t in snapped] + [n]
    for i in range(1, len(bounds)):  # keep arrivals in order, each within the film
        bounds[i] = max(bounds[i], bounds[i - 1])
    new_h, new_t = [], []
    for i in range(len(hold_f)):
        length = bounds[i + 1] - bounds[i]
        seconds = holds[i] + transitions[i]
        h = length if transitions[i] == 0 or seconds == 0 else round(length * holds[i] / seconds)
        new_h.append(h)
        new_t.append(length - h)
    return new_h, new_t


def sync_film(film: Film, cache_root: Path) -> tuple[Film, SyncedTiming | None]:
    """The film with its frame counts and transition positions set by its audio (unchanged without sync)."""
    spec = film.audio_spec
    if spec is None or spec.sync == "none":
        return film, None
    from zoetrope.film.audio import frame_strength, load_audio, synced_frames, synced_ts

    audio = load_audio(film.audio, spec.start, spec.end)
    fps = film.fps
    holds = [k.hold for _, s in film.scenes for k in s.keyframes]
    transitions = [s.transition_of(i) for _, s in film.scenes for i in range(len(s.keyframes))]
    hold_f, trans_f = synced_frames(holds, transitions, audio.duration, fps)
    if spec.snap == "beats":
        hold_f, trans_f = _snap(hold_f, trans_f, holds, transitions, audio, fps)
    strength = frame_strength(audio, fps, spec.sync, cache=cache_root / ".audio")
    timing = SyncedTiming(audio, spec.sync, strength, [], [])
    scenes, g, frame = [], 0, 0
    for name, script in film.scenes:
        frames, ts = [], {}
        for i in range(len(script.keyframes)):
            h, t = hold_f[g], trans_f[g]
            frames.append((h, t))
            timing.keyframe_frames.append(frame)
            timing.positions += [float(g)] * h
            if t:
                step = synced_ts(strength[frame + h:frame + h + t], t, script.easing_of(i), spec.smooth)
                ts[i] = step.ts
                timing.positions += [g + x for x in step.ts]
                if step.silent:
                    timing.notes.append(f"scene {name}: transition {i} -> {i + 1} is silent; it keeps its easing")
            frame, g = frame + h + t, g + 1
        scenes.append((name, script.synced(frames, ts)))
    return Film(film.title, scenes, film.audio, spec), timing


def plot_path(out: Path) -> Path:
    """The timing plot beside the film: FILM.timing.png."""
    return out.with_name(out.stem + ".timing.png")


def write_plot(out: Path, timing: SyncedTiming, fps: float) -> Path:
    from zoetrope.film.audio import plot_timing

    path = plot_path(out)
    plot_timing(path, timing.audio, fps, timing.positions, timing.keyframe_frames, strength=timing.strength,
                sync=timing.sync)
    return path


# The scene's easings as ffmpeg expressions of u in [0, 1] (settings/timing.py EASINGS, the same formulas).
FFMPEG_EASINGS = {"linear": "{u}", "ease-in": "pow({u},2)", "ease-out": "(1-pow(1-{u},2))",
                  "ease-in-out": "((1-cos(PI*{u}))/2)", "smoothstep": "(pow({u},2)*(3-2*{u}))"}


def gain_filter(gain, fps: float, easing: str) -> str | None:
    """The audio gain schedule as ffmpeg's `volume` filter, evaluated per audio frame on the film's clock (t = 0
    where the film starts): constant before the first key and after the last, eased between keys with the
    scene's easing. None for a gain of 1 (the audio as recorded)."""
    from zoetrope.settings.schedules import keyed_frames

    keys = [(frame / fps, value) for frame, value in keyed_frames(gain, fps)]
    if len(keys) == 1:
        return None if keys[0][1] == 1.0 else f"volume={keys[0][1]:.6g}"
    expr = f"{keys[-1][1]:.6g}"
    for (t0, v0), (t1, v1) in reversed(list(zip(keys[:-1], keys[1:], strict=True))):
        u = f"((t-{t0:.6f})/{t1 - t0:.6f})"
        expr = f"if(lt(t,{t1:.6f}),{v0:.6g}+({v1 - v0:.6g})*{FFMPEG_EASINGS[easing].format(u=u)},{expr})"
    expr = f"if(lt(t,{keys[0][0]:.6f}),{keys[0][1]:.6g},{expr})"
    return f"volume='{expr}':eval=frame"
