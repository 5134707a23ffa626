"""Scene scripts: the frame-count rule, the examples, and every malformed script as one precise line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zoetrope.base.errors import UserError
from zoetrope.settings.scene import SceneScript, load_film

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
schema_version: 1
title: test
fps: 4
width: 64
height: 64
steps: 1
keyframes:
  - prompt: "a red moon"
    hold: 0.5
    transition: 1.0
  - prompt: "a ship at sea"
    hold: 0.5
    easing: linear
  - prompt: "a lighthouse"
    hold: 1.0
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_frame_count_rule(tmp_path):
    film = load_film(write(tmp_path, GOOD))
    script = film.scenes[0][1]
    # holds 2 + 2 + 4, transitions 4 (given) + 8 (scene default 2.0 s); the last keyframe has none
    assert script.frame_count() == 2 + 4 + 2 + 8 + 4
    assert film.frame_count() == 20
    assert film.scenes[0][0] == "s"  # named after the file
    assert script.seed_of(2) == 2 and script.prompt_of(0) == "a red moon"


def test_style_negative_and_seeds():
    script = SceneScript(seed=10, style="engraving", negative_prompt="text",
                         keyframes=[{"prompt": "moon", "seed": 3, "negative_prompt": ""}, {"prompt": "sea"}])
    assert script.prompt_of(0) == "moon, engraving"
    assert (script.seed_of(0), script.seed_of(1)) == (3, 11)
    assert (script.negative_of(0), script.negative_of(1)) == ("", "text")


@pytest.mark.parametrize("name, frames", [("trip-to-the-moon.yaml", 324), ("jabberwocky.yaml", 132)])
def test_examples_load_with_documented_frame_counts(name, frames):
    path = ROOT / "scenes" / name
    assert path.read_text().startswith("#"), "each example is documented in a comment at the top"
    film = load_film(path)
    assert film.frame_count() == frames
    assert f"{frames} frames" in path.read_text()


def test_film_file_concatenates_named_scenes():
    film = load_film(ROOT / "scenes" / "jabberwocky.yaml")
    assert [name for name, _ in film.scenes] == ["jabberwocky-warning", "jabberwocky-battle"]
    assert film.fps == 12 and film.size == (256, 256)


KEYFRAMES = """\
schema_version: 1
fps: 4
width: 64
height: 64
keyframes:
  - prompt: a
    transition: 1.0
  - prompt: b
    hold: 1.0
{extra}"""
BASE = KEYFRAMES.format(extra="")


BAD = [
    # (description, yaml, expected message regex)
    ("unknown key", KEYFRAMES.format(extra="    colour: red\n"), r":10: keyframes\[1\]\.colour: unknown key"),
    ("wrong type", BASE.replace("hold: 1.0", "hold: long"),
     r":9: keyframes\[1\]\.hold: Input should be a valid number.*'long'"),
    ("zero hold", BASE.replace("hold: 1.0", "hold: 0"), r":9: keyframes\[1\]\.hold: .*greater than 0 \(got 0\)"),
    ("negative hold", BASE.replace("hold: 1.0", "hold: -1"), r":9: keyframes\[1\]\.hold: .*greater than 0"),
    ("zero transition", BASE.replace("transition: 1.0", "transition: 0"),
     r":7: keyframes\[0\]\.transition: .*greater than 0 .*`cut`.* \(got 0\)"),
    ("negative transition", BASE.replace("transition: 1.0", "transition: -2.5"),
     r":7: keyframes\[0\]\.transition: .*greater than 0 .*\(got -2\.5\)"),
    ("last transition", KEYFRAMES.format(extra="    transition: 1.0\n"),
     r":10: keyframes\[1\]\.transition: the last keyframe has no transition"),
    ("width not multiple of 8", BASE.replace("width: 64", "width: 100"), r":3: width: .*multiple of 8 \(got 100\)"),
    ("height not multiple of 8", BASE.replace("height: 64", "height: 70"), r":4: height: .*multiple of 8"),
    ("missing audio", BASE.replace("fps: 4", "fps: 4\naudio: nowhere.wav"), r":3: audio: audio file not found: .*nowhere\.wav"),
    ("empty keyframes", "schema_version: 1\nkeyframes: []\n", r":2: keyframes: List should have at least 1 item"),
    ("no keyframes", "schema_version: 1\ntitle: x\n", r": keyframes: Field required"),
    ("empty prompt", BASE.replace("prompt: b", "prompt: ''"), r":8: keyframes\[1\]\.prompt: .*at least 1 character"),
    ("ancestral scheduler", BASE.replace("fps: 4", "fps: 4\nscheduler: euler_a"), r":3: scheduler: ancestral"),
    ("bad easing", KEYFRAMES.format(extra="    easing: bounce\n"), r":10: keyframes\[1\]\.easing: Input should be 'linear'"),
    ("schema version", BASE.replace("schema_version: 1", "schema_version: 2"), r":1: schema_version: "),
    ("zero frames", "schema_version: 1\nfps: 1\nkeyframes:\n  - {prompt: a, hold: 0.1}\n",
     r":1: \(top level\): the script is 0 frames long at 1 fps"),
    ("duplicate scene names", """\
schema_version: 1
scenes:
  - name: one
    keyframes: [{prompt: a}]
  - name: one
    keyframes: [{prompt: b}]
""", r":5: scenes\[1\]\.name: duplicate scene name 'one'"),
    ("scene without a name", "schema_version: 1\nscenes:\n  - keyframes: [{prompt: a}]\n",
     r"scenes\[0\]\.name: a scene in a film file needs a name"),
    ("scenes disagree on fps", """\
schema_version: 1
scenes:
  - {name: one, fps: 12, keyframes: [{prompt: a}]}
  - {name: two, fps: 24, keyframes: [{prompt: b}]}
""", r":4: scenes\[1\]\.fps: every scene must have the first scene's fps"),
    ("keyframe field in a film scene", """\
schema_version: 1
scenes:
  - name: one
    keyframes:
      - prompt: a
        hold: -3
""", r":6: scenes\[0\]\.keyframes\[0\]\.hold: .*greater than 0"),
]


@pytest.mark.parametrize("text, pattern", [(t, p) for _, t, p in BAD], ids=[d for d, _, _ in BAD])
def test_bad_scripts_name_file_line_and_field(tmp_path, text, pattern):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(UserError) as info:
        load_film(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert re.search(pattern, message), message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_film(tmp_path / "none.yaml")
    with pytest.raises(UserError, match=r"bad\.yaml:4: invalid YAML"):
        load_film(write(tmp_path, "keyframes:\n  - prompt: a\n  - [unclosed\n", "bad.yaml"))


def test_audio_found_relative_to_script(tmp_path):
    (tmp_path / "song.wav").write_bytes(b"RIFF")
    film = load_film(write(tmp_path, BASE.replace("fps: 4", "fps: 4\naudio: song.wav")))
    assert film.audio == tmp_path / "song.wav"
