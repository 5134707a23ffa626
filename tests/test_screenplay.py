"""Fountain screenplays -> films: the parser (screenplain, with lines), each element's mapping, bad input, and
(e2e) `render FILM.fountain` against `scene from-screenplay` + `render` of its YAML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zoetrope.base.errors import UserError
from zoetrope.cli.main import main
from zoetrope.settings.scene import load_film, screenplay_film
from zoetrope.settings.screenplay import GENERATED, read_fountain
from zoetrope.settings.screenplay_map import (
    TOKEN_BUDGET,
    estimate_tokens,
    reading_time,
    seed_of,
    sentences,
    transition_of,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenes" / "the-keeper.fountain"

# The Fountain syntax guide's elements (fountain.io/syntax), one of each, with the line each starts on.
GUIDE = """\
Title: Big Fish
Credit: written by
Author: John August
Draft date: 2003

# ACT ONE
= The river.

INT. HOUSE - DAY

.SNIPER SCOPE POV

Edward walks *slowly* to the _river_.
He stops.

[[A note that is ignored.]]
/* Boneyard:
   cut from the film. */

EDWARD (V.O.)
(quietly)
There are some fish
cannot be caught.

@McCLANE
Yippie ki-yay!

BRICK
Screw retirement.

STEEL ^
Screw retirement.

CUT TO:

> Burn to white.

>THE END<

===
"""


def write(tmp_path: Path, text: str, front: str | None = None, name: str = "film.fountain") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    if front is not None:
        (tmp_path / f"{name}.yml").write_text(front, encoding="utf-8")
    return path


def keyframes(film) -> list:
    return [k for _, s in film.scenes for k in s.keyframes]


# ------------------------------------------------------------------------------------------- the parser


def test_elements_of_the_syntax_guide_with_their_lines(tmp_path):
    meta, elements = read_fountain(write(tmp_path, GUIDE))
    assert meta == {"Title": "Big Fish", "Credit": "written by", "Author": "John August", "Draft date": "2003"}
    got = [(e.kind, e.text, e.line, e.speaker) for e in elements]
    assert got == [
        ("heading", "INT. HOUSE - DAY", 9, None),
        ("heading", "SNIPER SCOPE POV", 11, None),  # forced with a leading period
        ("action", "Edward walks slowly to the river. He stops.", 13, None),  # emphasis marks dropped
        ("dialogue", "There are some fish cannot be caught.", 20, "EDWARD"),  # extension and parenthetical dropped
        ("dialogue", "Yippie ki-yay!", 25, "McCLANE"),  # forced character
        ("dialogue", "Screw retirement.", 28, "BRICK"),  # dual dialogue: both sides
        ("dialogue", "Screw retirement.", 31, "STEEL"),
        ("transition", "CUT TO:", 34, None),
        ("transition", "BURN TO WHITE.", 36, None),  # forced with >
        ("centered", "THE END", 38, None),
    ]


def test_the_same_paragraphs_as_screenplains_own_parse(tmp_path):
    """Our line-keeping loop is screenplain's parse_body around its classifier: same result as `parse`."""
    import io

    from screenplain import types
    from screenplain.parsers.fountain import parse

    def kinds(paragraphs):
        out = []
        for p in paragraphs:
            out += [type(p.left).__name__, type(p.right).__name__] if isinstance(p, types.DualDialog) else [type(p).__name__]
        return [k for k in out if k not in ("Section", "PageBreak")]

    reference = parse(io.StringIO(GUIDE))
    _, elements = read_fountain(write(tmp_path, GUIDE))
    names = {"heading": "Slug", "action": "Action", "centered": "Action", "dialogue": "Dialog", "transition": "Transition"}
    assert [names[e.kind] for e in elements] == kinds(reference.paragraphs)


# ------------------------------------------------------------------------------------------- the rules


def test_reading_time_rule():
    assert reading_time("one two three") == 1.0  # 1 s: the minimum
    assert reading_time(" ".join(["word"] * 10)) == 3.33
    assert reading_time(" ".join(["word"] * 100)) == 8.0  # the maximum
    assert reading_time("a b c d", pace=(2.0, 0.5, 1.5)) == 1.5


def test_transitions_and_sentences():
    assert transition_of("CUT TO:") == ("cut", None) and transition_of("SMASH CUT TO:") == ("cut", None)
    assert transition_of("DISSOLVE TO:") == (2.0, "ease-in-out") and transition_of("FADE OUT.")[0] == 3.0
    assert transition_of("FADE IN:") is None
    assert sentences("Mr. Smith waits. She runs! Why? Gone.") == ["Mr. Smith waits.", "She runs!", "Why?", "Gone."]
    assert estimate_tokens("a lighthouse, 1899") == 1 + 3 + 1 + 4


def test_mapping_of_each_element(tmp_path):
    path = write(tmp_path, GUIDE.replace("BRICK", "MARA"), "fps: 8\nwidth: 64\nheight: 64\nseed: 5\n"
                 "characters:\n  EDWARD: in a white suit\n")
    film, page = screenplay_film(path)
    assert page.data["title"] == "Big Fish" and page.metadata["Author"] == "John August"
    (house, house_kfs), (pov, pov_kfs) = [(n, s.keyframes) for n, s in film.scenes]
    assert (house, pov) == ("film-house-day", "film-sniper-scope-pov")
    # A heading with nothing under it: one keyframe of its setting, carrying the title card and the slug
    assert [k.prompt for k in house_kfs] == ["house, day"]
    assert house_kfs[0].intertitle == "Big Fish\nby John August\nINT. HOUSE - DAY"
    # Action -> keyframe (character style appended); dialogue -> its subtitle, then keyframes of the same
    # picture, cut to, one per line of dialogue
    first, *others = pov_kfs
    assert first.prompt == "Edward walks slowly to the river. He stops, in a white suit"
    assert first.intertitle == "SNIPER SCOPE POV" and first.source == "film.fountain:13"
    assert first.subtitle == "EDWARD: There are some fish cannot be caught."
    assert [k.subtitle for k in others[:3]] == ["McCLANE: Yippie ki-yay!", "MARA: Screw retirement.",
                                                 "STEEL: Screw retirement."]
    assert all(k.prompt == first.prompt and k.seed == first.seed for k in others)
    assert [k.transition for k in pov_kfs[:-1]] == ["cut"] * 4  # CUT TO: after the last dialogue, too
    assert others[-1].intertitle == "THE END" and others[-1].transition is None  # the last keyframe
    assert first.seed == seed_of(first.prompt, 5)
    assert first.hold == reading_time("Edward walks slowly to the river. He stops.", "There are some fish "
                                      "cannot be caught.", "SNIPER SCOPE POV")
    assert "ignored" not in str(page.data) and "Boneyard" not in str(page.data)


def test_a_long_paragraph_splits_at_sentences_and_says_so(tmp_path):
    long = " ".join(f"The keeper climbs stair number {i} with a lantern in her hand." for i in range(8))
    film, _ = screenplay_film(write(tmp_path, f"EXT. ROCK - NIGHT\n\n{long}\n", "style: etching, sepia ink\n"))
    (_, scene), = film.scenes
    n = len(scene.keyframes)
    assert n > 1 and estimate_tokens(long) > TOKEN_BUDGET
    for i, k in enumerate(scene.keyframes):
        assert k.source == f"film.fountain:3 (part {i + 1} of {n})"
        assert estimate_tokens(scene.prompt_of(i)) <= TOKEN_BUDGET  # with the film's style
        assert k.prompt.endswith("hand.")  # whole sentences
    assert " ".join(k.prompt for k in scene.keyframes) == long


def test_dissolve_across_scenes_walks_into_the_next_scenes_first_picture(tmp_path):
    text = "INT. A - DAY\n\nA red door.\n\nDISSOLVE TO:\n\nEXT. B - NIGHT\n\nA blue sea.\n\nCUT TO:\n\nEXT. C - DAY\n\nA hill.\n"
    film, _ = screenplay_film(write(tmp_path, text, "fps: 8\n"))
    a, b, c = (s for _, s in film.scenes)
    assert [k.prompt for k in a.keyframes] == ["A red door.", "A blue sea."]
    assert (a.transition_of(0), a.easing_of(0)) == (2.0, "ease-in-out")
    waypoint = a.keyframes[1]
    assert waypoint.seed == b.keyframes[0].seed and waypoint.source == "film.fountain:5 (DISSOLVE TO:) into the next scene"
    hold = reading_time("INT. A - DAY", "A red door.")
    assert a.frame_count() == round(hold * 8) + 16  # the waypoint is held 0 frames
    assert len(b.keyframes) == 1 and b.keyframes[0].transition is None  # CUT TO: a scene: scenes cut anyway


def test_inserting_a_line_changes_no_other_keyframe(tmp_path):
    before = "EXT. SEA - DAY\n\nA gull.\n\nA boat.\n\nA storm.\n"
    after = before.replace("A boat.\n", "A boat.\n\nA whale.\n")
    old = keyframes(screenplay_film(write(tmp_path, before))[0])
    new = keyframes(screenplay_film(write(tmp_path, after))[0])
    key = lambda k: (k.prompt, k.seed, k.hold)  # noqa: E731
    assert [key(k) for k in new if k.prompt != "A whale."] == [key(k) for k in old]


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, expected", [
    (b"INT. A - DAY\n\nA\x00door.\n", "film.fountain:3: not a text file"),
    (b"INT. A - DAY\n\nA caf\xe9.\n", "film.fountain:3: not a text file (byte 0xe9 is not UTF-8)"),
    (b"  \n\n", "film.fountain:1: the screenplay is empty"),
    (b"Title: X\n\nINT. A - DAY\n\nBOB\nHello.\n", "film.fountain:1: no action lines"),
    (b"BOB\nHello.\n\nA door.\n", "film.fountain:1: dialogue before any action or scene heading"),
])
def test_bad_screenplays_are_one_line_with_file_and_line(tmp_path, content, expected):
    path = tmp_path / "film.fountain"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_film(path)
    assert str(err.value).startswith(f"{tmp_path}/{expected}") and "\n" not in str(err.value)


@pytest.mark.parametrize("front, flags, expected", [
    ("fps: 8\ncharacters:\n  MARA: red\n  BOB: blue\n", {}, "film.fountain.yml:4: characters.BOB: no character"),
    ("fps: 8\n", {"characters": {"ZED": "x"}}, "command line: --character: characters.ZED: no character"),
    ("fps: 8\nwidht: 64\n", {}, "film.fountain.yml:2: widht: unknown key"),
    ("fps: 500\n", {}, "film.fountain.yml:1: fps: Input should be less than or equal to 120 (got 500)"),
    ("fps: 8\n", {"width": 65}, "command line: --size: width: Input should be a multiple of 8 (got 65)"),
    ("engine: ltx\nwidth: 48\n", {}, "film.fountain.yml:2: width: the ltx engine needs a multiple of 32 (got 48)"),
    ("min_hold: 3\nmax_hold: 2\n", {}, "film.fountain.yml:2: max_hold: must be at least min_hold (3.0) (got 2)"),
])
def test_bad_film_options_name_the_front_line_or_the_flag(tmp_path, front, flags, expected):
    path = write(tmp_path, "EXT. SEA - DAY\n\nMara rows.\n\nMARA\nHello.\n", front)
    with pytest.raises(UserError) as err:
        load_film(path, flags)
    assert expected in str(err.value), str(err.value)


def test_from_screenplay_writes_nothing_on_a_mistake_and_keeps_foreign_files(tmp_path, capsys):
    bad = write(tmp_path, "")
    out = tmp_path / "out.yaml"
    assert main(["scene", "from-screenplay", str(bad), "--out", str(out)]) == 2 and not out.exists()
    assert "film.fountain:1: the screenplay is empty" in capsys.readouterr().err
    good = write(tmp_path, "EXT. SEA - DAY\n\nA gull.\n", name="sea.fountain")
    out.write_text("keyframes: []\n")
    assert main(["scene", "from-screenplay", str(good), "--out", str(out)]) == 2
    assert "was not written by `scene from-screenplay`" in capsys.readouterr().err
    assert main(["scene", "from-screenplay", str(good), "--size", "64by64"]) == 2
    assert "--size: expected WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["scene", "from-screenplay", str(good), "--size", "64x64", "--fps", "6", "--style", "ink"]) == 0
    data = yaml.safe_load((tmp_path / "sea.yaml").read_text())
    assert {k: data["scenes"][0][k] for k in ("fps", "width", "height", "style")} == {
        "fps": 6, "width": 64, "height": 64, "style": "ink"}


def test_render_takes_screenplay_options_only_for_a_screenplay(tmp_path, capsys):
    script = tmp_path / "s.yaml"
    script.write_text("keyframes:\n  - prompt: a\n")
    assert main(["render", str(script), "--style", "ink", "--cache-root", str(tmp_path / "c")]) == 2
    assert "apply to a screenplay (.fountain)" in capsys.readouterr().err
    assert main(["render", str(script), "--fps", "8", "--cache-root", str(tmp_path / "c")]) == 2
    assert "apply to --from-chain" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the example


def test_the_committed_yaml_is_what_from_screenplay_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "the-keeper.yaml"
    assert main(["scene", "from-screenplay", "scenes/the-keeper.fountain", "--out", str(out)]) == 0
    assert "91 frames at 8 fps" in capsys.readouterr().out
    committed = (ROOT / "scenes" / "the-keeper.yaml").read_text()
    assert committed.startswith(GENERATED) and out.read_text() == committed
    fountain, yml = load_film(EXAMPLE), load_film(ROOT / "scenes" / "the-keeper.yaml")
    assert [(n, s) for n, s in fountain.scenes] == [(n, s) for n, s in yml.scenes]
    assert any("(part 2 of 2)" in (k.source or "") for k in keyframes(fountain))


# ------------------------------------------------------------------------------------------- e2e


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run_loop.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.e2e
def test_render_of_the_screenplay_and_of_its_yaml_are_the_same_film(tmp_path):
    from zoetrope.film.encode import probe

    cache, films = tmp_path / "cache", tmp_path / "films"
    made = run("scene", "from-screenplay", str(EXAMPLE), "--out", str(tmp_path / "keeper.yaml"))
    assert made.returncode == 0, made.stderr
    predicted = load_film(tmp_path / "keeper.yaml").frame_count()
    first = run("render", str(EXAMPLE), "--models", "tiny", "--cache-root", str(cache), "--out", str(films / "a.mp4"))
    assert first.returncode == 0, first.stderr
    assert probe(films / "a.mp4")["frames"] == predicted == 91
    srt = (films / "a.srt").read_text()
    _, elements = read_fountain(EXAMPLE)
    said = [f"{e.speaker}: {e.text}" for e in elements if e.kind == "dialogue"]
    assert said and all(line in srt for line in said)
    second = run("render", str(tmp_path / "keeper.yaml"), "--models", "tiny", "--cache-root", str(cache),
                 "--out", str(films / "b.mp4"))
    assert second.returncode == 0, second.stderr
    assert "frames: 29 cached, 0 rendered" in second.stdout  # the same frame keys
    assert (films / "a.mp4").read_bytes() == (films / "b.mp4").read_bytes()
    assert (films / "a.srt").read_bytes() == (films / "b.srt").read_bytes()
