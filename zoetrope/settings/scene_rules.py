"""The cross-field rules of a scene script, checked once its fields are valid: each engine's size, motions and
schedules inside their spans, the audio gain's keys, LoRAs only where a painter takes them, fps_out above fps.

Each raises a ValidationError at the field it names (so the message is `file:line: field: ...`); SceneScript
runs them in this order (settings/scene.py `_rules`). Torch-free.
"""

from __future__ import annotations

from zoetrope.settings.engines import engine_names, spec_of
from zoetrope.settings.media import field_error
from zoetrope.settings.schedules import check_keys, check_motion
from zoetrope.settings.timing import frame_count


def check(script) -> None:
    """Every rule, in the order a user meets them."""
    for rule in (guidance_schedule, audio_gain_keys, loras_fit_engines, fps_out_above_fps, motions, engine_sizes):
        rule(script)


def guidance_schedule(script) -> None:
    """A guidance schedule: keys inside the scene, and only where each frame can take its own guidance
    (the walk's rows, the drift's frames; an ltx or animatediff call takes one number)."""
    if isinstance(script.guidance, dict):
        check_keys(script.guidance, field=("guidance",), fps=script.fps, within="scene",
                   frames_total=script.frame_count())
        others = [e for e in script.engines() if not spec_of(e).frame_guidance]
        if others:
            takers = " or ".join(e for e in engine_names() if spec_of(e).frame_guidance)
            raise field_error(("guidance",), f"a guidance schedule needs {takers} segments; the {others[0]} "
                              "engine takes one number", None)


def audio_gain_keys(script) -> None:
    """The gain schedule's keys in order and inside the film (an audio-synced film lasts as long as its audio:
    then only their order is checked here)."""
    if script.audio is not None:
        synced = script.audio.sync != "none"
        check_keys(script.audio.gain, field=("audio", "gain"), fps=script.fps, within="scene",
                   frames_total=10**9 if synced else script.frame_count())


def loras_fit_engines(script) -> None:
    """LoRA styles are fused into the painter; an engine that loads its own (AnimateDiff) says it takes none."""
    refusing = [e for e in script.engines() if not spec_of(e).loras]
    if script.loras and refusing:
        raise field_error(("loras",), f"the {refusing[0]} engine does not take LoRA styles yet", None)


def fps_out_above_fps(script) -> None:
    if script.fps_out is not None and script.fps_out <= script.fps:
        raise field_error(("fps_out",), f"must be above fps ({script.fps}): it fills frames between painted ones",
                          script.fps_out)


def motions(script) -> None:
    """A `motion:` only where an engine that renders motions does (drift), its schedules inside their span and
    its strengths real; a scene-wide motion with a scene `engine:` is refused (one would silently lose)."""
    if script.motion is not None and script.engine is not None and not spec_of(script.engine).motion:
        raise field_error(("motion",), f"a scene-wide motion drifts every segment; the scene's engine is "
                          f"{script.engine} (drop `engine:`, or move the motion to the keyframes it drifts)", None)
    for i, keyframe in enumerate(script.keyframes):
        if keyframe.motion is not None and not spec_of(script.engine_of(i)).motion:
            raise field_error(("keyframes", i, "motion"), f"a motion needs the drift engine, not {script.engine_of(i)}",
                              None)
        check_motion(keyframe.motion, loc=("keyframes", i, "motion"), fps=script.fps, steps=script.steps,
                     frames_total=frame_count(keyframe.hold, script.fps) + frame_count(script.transition_of(i), script.fps))
    check_motion(script.motion, loc=("motion",), frames_total=script.frame_count(), fps=script.fps, within="scene",
                 steps=script.steps)


def engine_sizes(script) -> None:
    """Each engine's size rule, named at the field (a size the engine cannot take loads no model)."""
    for engine in script.engines():
        multiple = spec_of(engine).size_multiple
        for field in ("width", "height"):
            value = getattr(script, field)
            if value % multiple:
                raise field_error((field,), f"the {engine} engine needs a multiple of {multiple} (got {value})",
                                   value)
