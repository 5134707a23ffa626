"""Numeric schedules: a film parameter that is a constant or a keyframed curve, `{0: 1.0, 2.5s: 1.04}`.

After Deforum's `animation_key_frames.py`, where every motion parameter is a schedule `"0:(1.0), 30:(1.04)"`; ours
is a YAML mapping validated by pydantic. A key is a frame number (an int, 0 = the first frame of the span the
schedule belongs to) or seconds (`"2.5s"`, turned into a frame by the frame-count rule, round(s x fps) with
halves up). Between two keys the value moves with the scene's easing (settings/timing.py); before the first key
it holds the first value, after the last key the last one (Deforum's `get_inbetweens` holds the ends too).

Validation happens in two places, both ending as `file:line: field: message` through settings/parsing.py:
- the pydantic type (`schedule(low, high)`) checks the shape and every value's range: no fps needed;
- `check_keys` (the scene's model validator calls it, through `check_motion` for a `motion:` block) checks the
  keys against the film: strictly increasing once seconds are frames, none past the end of the span.
  `validate_schedule` does all of it in one call, for code that holds raw data and knows the span.

A span of n frames has keys 0..n: key n is the span's end (`2s` in a 2-second segment), the moment the next
span starts, so a curve can be written to reach its value exactly there.

Torch-free: `check` validates scene scripts without loading a framework.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from zoetrope.settings.parsing import Strict
from zoetrope.settings.timing import EASINGS, frame_count

ScheduleValue = float | dict[int | str, float]  # a constant, or {frame | "Ns": value} in key order
SECONDS = re.compile(r"^(\d+(?:\.\d+)?)s$")
_JSON_SCHEMA = {"anyOf": [{"type": "number"}, {"type": "object", "additionalProperties": {"type": "number"},
                                                "description": "keys: a frame (0, 24) or seconds ('2.5s')"}]}


def _got(where: str, value: Any) -> str:
    """` (got v)` inside a mapping only: for a constant, parsing.py appends the value itself."""
    return f" (got {value!r})" if where else ""


def _number(value: Any, where: str) -> float:
    """A finite number; YAML's `yes`/`true` are not numbers here (bool is an int subclass in Python)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}Input should be a number{_got(where, value)}")
    if not math.isfinite(value):
        raise ValueError(f"{where}Input should be a finite number{_got(where, value)}")
    return float(value)


def _key(key: Any) -> int | str:
    """A frame number (int >= 0; a digit string from JSON too) or seconds as written, `"2.5s"`."""
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key.strip())
    if isinstance(key, int) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"key {key}: a frame number is 0 or more")
        return key
    if isinstance(key, str) and SECONDS.match(key.strip()):
        return key.strip()
    if isinstance(key, float):
        raise ValueError(f"key {key!r}: a key is a frame (an integer) or seconds with an s ('{key}s')")
    raise ValueError(f"key {key!r}: a key is a frame (an integer, e.g. 24) or seconds (e.g. '2.5s')")


def _in_range(value: float, where: str, low: float | None, high: float | None, low_open: bool,
              high_open: bool) -> None:
    """Pydantic's own wording (`Input should be greater than 0`), so a schedule's errors read like a number's."""
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{where}Input should be greater than {'' if low_open else 'or equal to '}{low:g}"
                         f"{_got(where, value)}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{where}Input should be less than {'' if high_open else 'or equal to '}{high:g}"
                         f"{_got(where, value)}")


def parse_schedule(value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False,
                   high_open: bool = False) -> ScheduleValue:
    """The shape and the values' range of a schedule (no fps needed): a float, or a dict whose keys are frame ints
    or seconds strings, in the order written. ValueError names the offending key."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("an empty schedule: write a number, or keys such as {0: 1.0, 2s: 1.04}")
        parsed: dict[int | str, float] = {}
        for raw, v in value.items():
            key = _key(raw)
            if key in parsed:
                raise ValueError(f"key {key}: written twice")
            number = _number(v, f"at key {key}: ")
            _in_range(number, f"at key {key}: ", low, high, low_open, high_open)
            parsed[key] = number
        return parsed
    if isinstance(value, list | tuple | str):
        raise ValueError("a schedule is a number or a mapping of keys to numbers, e.g. {0: 1.0, 2.5s: 1.04}")
    number = _number(value, "")
    _in_range(number, "", low, high, low_open, high_open)
    return number


def schedule(low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False, description: str = ""):
    """A pydantic field type: a schedule whose every value lies in [low, high] (open ends when told)."""
    def validate(value: Any) -> ScheduleValue:
        return parse_schedule(value, low=low, high=high, low_open=low_open, high_open=high_open)

    return Annotated[ScheduleValue, PlainValidator(validate), WithJsonSchema(_JSON_SCHEMA),
                     Field(description=description)]


def key_frame(key: int | str, fps: float) -> int:
    """A key's frame: itself for a frame number, round(seconds x fps) (the frame-count rule) for `"2.5s"`."""
    if isinstance(key, int):
        return key
    return frame_count(float(SECONDS.match(key).group(1)), fps)


def keyed_frames(value: ScheduleValue, fps: float) -> list[tuple[int, float]]:
    """A schedule's (frame, value) pairs in the order written; a constant is [(0, value)]."""
    if isinstance(value, Mapping):
        return [(key_frame(k, fps), float(v)) for k, v in value.items()]
    return [(0, float(value))]


def _loc(field: str | tuple) -> tuple:
    """`keyframes[2].motion.zoom` -> ("keyframes", 2, "motion", "zoom"), the location parsing.py finds a line for."""
    if isinstance(field, tuple):
        return field
    loc: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        loc.append(int(index) if index else name)
    return tuple(loc)


def field_error(field: str | tuple, message: str, value: Any) -> ValidationError:
    """A ValidationError at `field` (a pydantic loc or a dotted path), worded `field: message` by parsing.py."""
    return ValidationError.from_exception_data(
        "schedule", [InitErrorDetails(type=PydanticCustomError("schedule", message), loc=_loc(field), input=value)])


def check_keys(value: ScheduleValue, *, field: str | tuple, frames_total: int, fps: float,
               within: str = "segment") -> None:
    """Keys strictly increasing once seconds are frames, and none past the span's end (keys 0..frames_total).

    Raises a ValidationError at `field`; from a model validator it becomes `file:line: field: message`."""
    if not isinstance(value, Mapping):
        return
    previous: tuple[str, int] | None = None
    for key, frame in ((k, key_frame(k, fps)) for k in value):
        shown = str(key) if isinstance(key, int) else f"{key} (frame {frame} at {fps:g} fps)"
        if previous is not None and frame <= previous[1]:
            raise field_error(field, f"keys must increase: {shown} does not come after {previous[0]}", value)
        if frame > frames_total:
            raise field_error(field, f"key {shown} is past the end: the {within} is {frames_total} frames "
                                     f"(keys 0..{frames_total})", value)
        previous = (shown, frame)


def validate_schedule(value: Any, *, field: str | tuple, low: float | None = None, high: float | None = None,
                      low_open: bool = False, high_open: bool = False, frames_total: int, fps: float,
                      within: str = "segment") -> ScheduleValue:
    """Shape, values in range and keys inside the span, in one call; the parsed schedule, or a ValidationError
    at `field` (e.g. `keyframes[1].motion.zoom: at key 30: Input should be greater than 0 (got -1)`)."""
    try:
        parsed = parse_schedule(value, low=low, high=high, low_open=low_open, high_open=high_open)
    except ValueError as exc:
        raise field_error(field, str(exc), value) from None
    check_keys(parsed, field=field, frames_total=frames_total, fps=fps, within=within)
    return parsed


def evaluate(value: ScheduleValue, n_frames: int, fps: float, easing: str = "linear", *, start: int = 0) -> list[float]:
    """The value at frames start .. start + n_frames - 1 of the span: held before the first key and after the
    last, eased between keys, v_a + (v_b - v_a) x ease((f - k_a) / (k_b - k_a)) (exact at every key)."""
    if n_frames < 0:
        raise ValueError(f"`n_frames` must be >= 0 but is {n_frames}.")
    if easing not in EASINGS:
        raise ValueError(f"`easing` must be one of {sorted(EASINGS)} but is {easing!r}.")
    keys = keyed_frames(value, fps)
    if any(b[0] <= a[0] for a, b in zip(keys, keys[1:], strict=False)):
        raise ValueError(f"`value` keys must increase in frames at {fps:g} fps but are {[k for k, _ in keys]}.")
    ease = EASINGS[easing]
    values: list[float] = []
    segment = 0
    for f in range(start, start + n_frames):
        while segment + 1 < len(keys) and keys[segment + 1][0] <= f:
            segment += 1
        (ka, va) = keys[segment]
        if f <= ka or segment + 1 == len(keys):
            values.append(va)
            continue
        kb, vb = keys[segment + 1]
        values.append(va + (vb - va) * ease((f - ka) / (kb - ka)))
    return values


def canonical(value: ScheduleValue, fps: float) -> float | list[list[float]]:
    """The schedule as the frames it means: a constant, or [[frame, value], ...] with seconds turned into frames
    at `fps`; `{24: 2}` and `{1s: 2}` at 24 fps are the same. JSON-ready for cache keys and sidecars."""
    if not isinstance(value, Mapping):
        return float(value)
    return [[frame, v] for frame, v in keyed_frames(value, fps)]


def canonical_json(value: ScheduleValue, fps: float) -> str:
    """`canonical` as compact JSON: a string to hash."""
    return json.dumps(canonical(value, fps), separators=(",", ":"))


# ---------------------------------------------------------------------------------------------- motion


ColorCoherence = Literal["none", "match_first"]  # match_first: every painted frame on the first's palette
MOTION_DEFAULTS = {"zoom": 1.0, "angle": 0.0, "translate_x": 0.0, "translate_y": 0.0, "strength": 0.65}


Zoom = schedule(0.0, 10.0, low_open=True, description="scale per frame; > 1 zooms in, 0 or less has no picture")
Angle = schedule(-360.0, 360.0, description="degrees per frame, counter-clockwise (OpenCV's and Deforum's sign)")
Translate = schedule(-4096.0, 4096.0, description="pixels per frame; + moves the picture right (x) or down (y)")
Strength = schedule(0.0, 1.0, low_open=True, description="image-to-image strength of each repaint, in (0, 1]: "
                    "1.0 forgets the previous frame")


Guidance = schedule(0.0, 30.0, description="classifier-free guidance of each repaint (default: the scene's)")
Gain = schedule(0.0, 4.0, description="audio gain, a factor (1: as recorded, 0: silent)")


class Motion(BaseModel):
    """A drift: each frame is the previous one warped by zoom, angle and translate, repainted with strength
    and guidance (Deforum's 2D mode). Each field is a constant or a schedule; defaults are the identity warp,
    Deforum's strength 0.65 and the scene's guidance."""

    model_config = Strict
    zoom: Zoom = 1.0
    angle: Angle = 0.0
    translate_x: Translate = 0.0
    translate_y: Translate = 0.0
    strength: Strength = 0.65
    guidance: Guidance | None = None


def check_motion(motion: Motion | None, *, loc: str | tuple, frames_total: int, fps: float,
                 within: str = "segment", steps: int | None = None) -> None:
    """Every schedule of a `motion:` block against its span (a segment's or the scene's frames) and, given the
    scene's `steps`, every strength against them: image-to-image runs int(steps x strength) steps, and none is
    no repaint at all (eased values lie between their keys', so checking the keys checks every frame)."""
    if motion is None:
        return
    for name in (*MOTION_DEFAULTS, "guidance"):
        if getattr(motion, name) is not None:
            check_keys(getattr(motion, name), field=(*_loc(loc), name), frames_total=frames_total, fps=fps,
                       within=within)
    if steps is not None:
        keyed = isinstance(motion.strength, Mapping)
        for key, value in motion.strength.items() if keyed else [(None, motion.strength)]:
            if int(steps * value) < 1:
                at = f"at key {key}: " if keyed else ""
                raise field_error((*_loc(loc), "strength"), f"{at}{value:g} x {steps} steps runs no image-to-image "
                                  f"step (int(steps x strength) < 1): raise steps or strength", motion.strength)


def motion_values(scene: Motion | None, segment: Motion | None, *, start: int, frames: int, fps: float,
                  easing: str) -> dict[str, tuple[float, ...]]:
    """Per-frame values of each motion field over a segment's `frames` frames, the segment starting at scene
    frame `start`. A field the segment's `motion:` sets counts its keys from the segment's start; one it takes
    from the scene's `motion:` counts them from the scene's start; neither: the default (for guidance: no entry,
    so each repaint takes the scene's guidance)."""
    values = {}
    for name, default in MOTION_DEFAULTS.items():
        if segment is not None and name in segment.model_fields_set:
            values[name] = tuple(evaluate(getattr(segment, name), frames, fps, easing))
        elif scene is not None and name in scene.model_fields_set:
            values[name] = tuple(evaluate(getattr(scene, name), frames, fps, easing, start=start))
        else:
            values[name] = (default,) * frames
    for source, offset in ((segment, 0), (scene, start)):  # guidance: only where a motion sets it
        if source is not None and source.guidance is not None:
            values["guidance"] = tuple(evaluate(source.guidance, frames, fps, easing, start=offset))
            break
    return values
