"""Numeric schedules (settings/schedules.py): YAML in, `file:line: field` errors out, per-frame values eased.

The scene schema wires `motion:` itself; here a small model stands in for it, shaped like a scene's (a `fps`,
keyframes whose segments have a length, a `motion:` per keyframe and one for the scene), and validated through
the same YAML loader, so the lines and wording are what `render` and `check` print.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from pydantic import BaseModel, Field, ValidationError, model_validator

from zoetrope.base.errors import UserError
from zoetrope.settings.parsing import Strict, load_yaml_model
from zoetrope.settings.schedules import (
    MOTION_DEFAULTS,
    Motion,
    canonical,
    canonical_json,
    check_motion,
    evaluate,
    motion_values,
    schedule,
    validate_schedule,
)
from zoetrope.settings.timing import EASINGS


class Segment(BaseModel):
    model_config = Strict
    frames: int = 48
    motion: Motion | None = None


class Shot(BaseModel):
    """A scene in miniature: keyframe motion keys count from the segment's start, the scene's from its own."""

    model_config = Strict
    fps: int = 24
    steps: int = 4
    motion: Motion | None = None
    guidance: schedule(0.0, 30.0) = 0.0
    keyframes: list[Segment] = Field(min_length=1)

    @model_validator(mode="after")
    def _keys_inside(self):
        total = sum(k.frames for k in self.keyframes)
        check_motion(self.motion, loc=("motion",), frames_total=total, fps=self.fps, within="scene")
        for i, k in enumerate(self.keyframes):
            check_motion(k.motion, loc=("keyframes", i, "motion"), frames_total=k.frames, fps=self.fps,
                         steps=self.steps)
        return self


def load(tmp_path, text: str) -> Shot:
    path = tmp_path / "x.yaml"
    path.write_text(textwrap.dedent(text))
    return load_yaml_model(path, Shot)


def error(tmp_path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load(tmp_path, text)
    return str(info.value).replace(str(tmp_path / "x.yaml"), "x.yaml")


# ------------------------------------------------------------------------------------------- parsing


def test_a_schedule_is_a_constant_or_keys_in_frames_and_seconds(tmp_path):
    shot = load(tmp_path, """\
        fps: 24
        motion: {zoom: 1.02}
        keyframes:
          - frames: 60
            motion:
              zoom: {0: 1.0, 2.5s: 1.04}
              angle: {"12": -2}
              strength: 0.5
        """)
    assert shot.motion.zoom == 1.02
    seg = shot.keyframes[0].motion
    assert seg.zoom == {0: 1.0, "2.5s": 1.04} and seg.angle == {12: -2.0} and seg.strength == 0.5
    assert seg.translate_x == MOTION_DEFAULTS["translate_x"] and seg.model_fields_set == {"zoom", "angle", "strength"}


@pytest.mark.parametrize("yaml_text, expected", [
    ("""\
        keyframes:
          - motion:
              zoom: 0
        """, "x.yaml:3: keyframes[0].motion.zoom: Input should be greater than 0 (got 0)"),
    ("""\
        keyframes:
          - motion: {strength: 1.5}
        """, "x.yaml:2: keyframes[0].motion.strength: Input should be less than or equal to 1 (got 1.5)"),
    ("""\
        keyframes:
          - frames: 48
          - motion:
              zoom:
                0: 1.0
                30: -1
        """, "x.yaml:5: keyframes[1].motion.zoom: at key 30: Input should be greater than 0 (got -1.0)"),
    ("""\
        keyframes:
          - motion: {zoom: {0: 1.0, 2.5: 1.1}}
        """, "x.yaml:2: keyframes[0].motion.zoom: key 2.5: a key is a frame (an integer) or seconds with an s ('2.5s')"),
    ("""\
        keyframes:
          - motion: {angle: {0: 1, soon: 2}}
        """, "x.yaml:2: keyframes[0].motion.angle: key 'soon': a key is a frame (an integer, e.g. 24) or seconds "
             "(e.g. '2.5s')"),
    ("""\
        keyframes:
          - motion: {angle: {}}
        """, "x.yaml:2: keyframes[0].motion.angle: an empty schedule: write a number, or keys such as "
             "{0: 1.0, 2s: 1.04}"),
    ("""\
        keyframes:
          - motion: {translate_x: [1, 2]}
        """, "x.yaml:2: keyframes[0].motion.translate_x: a schedule is a number or a mapping of keys to numbers, "
             "e.g. {0: 1.0, 2.5s: 1.04}"),
    ("""\
        keyframes:
          - motion: {strength: yes}
        """, "x.yaml:2: keyframes[0].motion.strength: Input should be a number (got True)"),
    ("""\
        keyframes:
          - motion: {zom: 1.1}
        """, "x.yaml:2: keyframes[0].motion.zom: unknown key"),
    ("""\
        guidance: {0: 1.0, 10: 40}
        keyframes: [{}]
        """, "x.yaml:1: guidance: at key 10: Input should be less than or equal to 30 (got 40.0)"),
])
def test_values_out_of_range_and_malformed_schedules_name_file_line_and_field(tmp_path, yaml_text, expected):
    assert error(tmp_path, yaml_text) == expected


@pytest.mark.parametrize("zoom, expected", [
    ("{0: 1.0, 2s: 1.1, 30: 1.2}", "keys must increase: 30 does not come after 2s (frame 48 at 24 fps)"),  # 2 s is frame 48
    ("{0: 1.0, 1s: 1.1, 24: 1.2}", "keys must increase: 24 does not come after 1s (frame 24 at 24 fps)"),  # the same frame twice
    ("{10: 1.0, 5: 1.1}", "keys must increase: 5 does not come after 10"),
    ("{0: 1.0, 3s: 1.1}", "key 3s (frame 72 at 24 fps) is past the end: the segment is 48 frames (keys 0..48)"),
    ("{0: 1.0, 49: 1.1}", "key 49 is past the end: the segment is 48 frames (keys 0..48)"),
])
def test_keys_out_of_order_or_past_the_segment_are_refused_at_their_line(tmp_path, zoom, expected):
    text = f"""\
        fps: 24
        keyframes:
          - frames: 48
            motion:
              angle: 1
              zoom: {zoom}
        """
    assert error(tmp_path, text) == f"x.yaml:6: keyframes[0].motion.zoom: {expected}"


def test_the_end_of_the_span_is_a_key_and_a_scene_schedule_spans_the_scene(tmp_path):
    load(tmp_path, "keyframes:\n  - motion: {zoom: {0: 1.0, 2s: 1.1}}\n")  # 2 s of a 48-frame segment: its end
    load(tmp_path, "motion: {zoom: {0: 1.0, 90: 1.1}}\nkeyframes: [{frames: 48}, {frames: 48}]\n")
    assert error(tmp_path, "motion: {zoom: {0: 1.0, 97: 1.1}}\nkeyframes: [{frames: 48}, {frames: 48}]\n") == (
        "x.yaml:1: motion.zoom: key 97 is past the end: the scene is 96 frames (keys 0..96)")


def test_a_strength_too_small_for_the_steps_is_refused_at_its_field(tmp_path):
    load(tmp_path, "steps: 4\nkeyframes:\n  - motion: {strength: 0.25}\n")  # 4 x 0.25: one step
    assert error(tmp_path, "steps: 4\nkeyframes:\n  - motion: {strength: 0.2}\n") == (
        "x.yaml:3: keyframes[0].motion.strength: 0.2 x 4 steps runs no image-to-image step "
        "(int(steps x strength) < 1): raise steps or strength (got 0.2)")
    assert error(tmp_path, "steps: 2\nkeyframes:\n  - motion: {strength: {0: 0.9, 1s: 0.4}}\n") == (
        "x.yaml:3: keyframes[0].motion.strength: at key 1s: 0.4 x 2 steps runs no image-to-image step "
        "(int(steps x strength) < 1): raise steps or strength")


def test_seconds_become_frames_by_the_frame_count_rule():
    # 0.25 s at 10 fps is 2.5 frames: rounded half up to 3, as durations are (docs/films.md)
    assert canonical({0: 0.0, "0.25s": 1.0, "1.15s": 2.0}, 10) == [[0, 0.0], [3, 1.0], [12, 2.0]]
    assert canonical({"1.15s": 2.0}, 20) == [[23, 2.0]]  # binary float error absorbed, as in frame_count
    assert canonical_json({0: 1, "1s": 2.0}, 24) == canonical_json({0: 1.0, 24: 2}, 24) == "[[0,1.0],[24,2.0]]"
    assert canonical_json({0: 1, "1s": 2.0}, 12) != canonical_json({0: 1, "1s": 2.0}, 24)
    assert canonical(3, 24) == 3.0 and canonical_json(1.04, 24) == "1.04"


def test_validate_schedule_checks_shape_range_and_keys_in_one_call():
    assert validate_schedule({0: 1, "1s": 2}, field="zoom", low=0, low_open=True, frames_total=24, fps=24) == {
        0: 1.0, "1s": 2.0}
    with pytest.raises(ValidationError) as info:
        validate_schedule({0: 1, 10: 0}, field="keyframes[3].motion.zoom", low=0, low_open=True, frames_total=24,
                          fps=24)
    err = info.value.errors()[0]
    assert err["loc"] == ("keyframes", 3, "motion", "zoom") and err["msg"] == (
        "at key 10: Input should be greater than 0 (got 0.0)")
    with pytest.raises(ValidationError, match="past the end: the film is 24 frames"):
        validate_schedule({"2s": 1}, field="gain", frames_total=24, fps=24, within="film")
    with pytest.raises(ValidationError, match="Input should be less than or equal to 2"):
        validate_schedule(2.5, field="gain", low=0, high=2, frames_total=24, fps=24)


def test_a_schedule_survives_a_json_round_trip_as_a_sidecar_writes_it():
    motion = Motion(zoom={0: 1.0, "2.5s": 1.04}, angle=3)
    again = Motion.model_validate(json.loads(motion.model_dump_json()))  # JSON keys are strings: "0" is frame 0
    assert again == motion and again.zoom == {0: 1.0, "2.5s": 1.04}


# ---------------------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("easing", sorted(EASINGS))
def test_between_keys_values_follow_the_easing_and_hold_outside_them(easing):
    values = evaluate({4: 1.0, 14: 3.0}, 20, 24, easing)
    ease = EASINGS[easing]
    assert values[:5] == [1.0] * 5  # held before the first key, exact at it
    for f in range(5, 14):
        assert values[f] == pytest.approx(1.0 + 2.0 * ease((f - 4) / 10), abs=1e-12)
    assert values[14:] == [3.0] * 6  # exact at the last key, held after it
    assert evaluate(1.5, 3, 24, easing) == [1.5, 1.5, 1.5]


def test_easings_differ_between_keys_and_agree_at_them():
    curves = {e: evaluate({0: 0.0, 10: 1.0}, 11, 24, e) for e in EASINGS}
    assert len({tuple(c) for c in curves.values()}) == len(EASINGS)
    assert {c[0] for c in curves.values()} == {0.0} and {c[10] for c in curves.values()} == {1.0}
    assert curves["ease-in"][5] < curves["linear"][5] == 0.5 < curves["ease-out"][5]


def test_seconds_and_frames_keys_evaluate_alike_and_start_offsets_the_span():
    assert evaluate({0: 1.0, "1s": 2.0, "1.5s": 0.0}, 40, 24, "smoothstep") == \
        evaluate({0: 1.0, 24: 2.0, 36: 0.0}, 40, 24, "smoothstep")
    whole = evaluate({0: 0.0, 20: 1.0, 30: 5.0}, 40, 24, "ease-in-out")
    assert evaluate({0: 0.0, 20: 1.0, 30: 5.0}, 15, 24, "ease-in-out", start=18) == whole[18:33]


def test_evaluate_refuses_unknown_easings_and_keys_out_of_order():
    with pytest.raises(ValueError, match="`easing` must be one of"):
        evaluate(1.0, 3, 24, "bounce")
    with pytest.raises(ValueError, match="keys must increase in frames at 24 fps"):
        evaluate({"1s": 1.0, 10: 2.0}, 3, 24)


def test_motion_values_take_the_segments_fields_else_the_scenes_else_the_defaults():
    scene = Motion(zoom={0: 1.0, 10: 2.0}, angle=5)
    segment = Motion(angle={0: 0.0, 2: 1.0}, strength=0.4)
    values = motion_values(scene, segment, start=5, frames=3, fps=24, easing="linear")
    assert values["zoom"] == (1.5, 1.6, 1.7)  # the scene's, counted from the scene's start
    assert values["angle"] == (0.0, 0.5, 1.0)  # the segment's, counted from the segment's start
    assert values["strength"] == (0.4,) * 3
    assert values["translate_x"] == values["translate_y"] == (0.0,) * 3
    assert motion_values(None, None, start=0, frames=2, fps=24, easing="linear") == {
        name: (default,) * 2 for name, default in MOTION_DEFAULTS.items()}
