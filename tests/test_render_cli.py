"""`render` end to end on the tiny models: film, cache reuse, edits, preview, chain-to-film, bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from zoetrope.cli.main import main
from zoetrope.film.encode import probe
from zoetrope.settings.scene import load_film

SCRIPT = """\
# test scene
schema_version: 1
title: Test
fps: 4
width: 64
height: 64
steps: 2
seed: 3
model: tiny
transition: 1.0
burn_subtitles: true
keyframes:
  - prompt: "a red moon over the sea"
    intertitle: "The moon"
    hold: 0.5
  - prompt: "two old men in a garden"
    subtitle: "In the garden"
    hold: 0.5
  - prompt: "a ship in a storm"
    hold: 0.5
"""
FRAMES = 3 * 2 + 2 * 4  # holds of 0.5 s and transitions of 1 s at 4 fps
UNIQUE = 3 + 2 * 4


def render(tmp_path: Path, capsys, *extra: str, script: Path | None = None) -> tuple[int, str, str]:
    args = ["render", *([str(script)] if script else []), "--cache-root", str(tmp_path / "cache"), *extra]
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def counts(out: str) -> tuple[int, int]:
    match = re.search(r"frames: (\d+) cached, (\d+) rendered", out)
    assert match, out
    return int(match[1]), int(match[2])


def test_render_rerender_and_edit(tmp_path, capsys):
    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT)
    film = tmp_path / "films" / "smoke.mp4"
    code, out, err = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), script=script)
    assert code == 0, err
    assert counts(out) == (0, UNIQUE)
    info = probe(film)
    assert (info["codec"], info["pix_fmt"], info["fps"], info["frames"], info["size"]) == (
        "h264", "yuv420p", 4.0, FRAMES, (64, 64))
    assert load_film(script).frame_count() == FRAMES
    srt = film.with_suffix(".srt").read_text()
    assert "The moon" in srt and "In the garden" in srt and "a ship in a storm" in srt
    assert "walk" in err and "frame/s" in err  # the progress bar

    first = film.read_bytes()
    code, out, _ = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), "--batch-size", "3", script=script)
    assert code == 0 and counts(out) == (UNIQUE, 0)
    assert film.read_bytes() == first  # same frames, same encoder settings: the same film

    script.write_text(SCRIPT.replace("a ship in a storm", "a lighthouse at night"))
    code, out, _ = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), script=script)
    assert code == 0
    assert counts(out) == (UNIQUE - 5, 5)  # the last keyframe and the transition into it
    assert probe(film)["frames"] == FRAMES


def test_preview_is_a_quarter_of_the_frames_at_half_size(tmp_path, capsys):
    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT.replace("width: 64", "width: 128"))
    monkey_out = tmp_path / "p.mp4"
    code, out, err = render(tmp_path, capsys, "--models", "tiny", "--preview", "--out", str(monkey_out), script=script)
    assert code == 0, err
    info = probe(monkey_out)
    assert info["frames"] == math.ceil(FRAMES / 4) and info["size"] == (64, 32) and info["fps"] == 1.0
    assert sum(counts(out)) < UNIQUE


def test_film_of_a_chain(tmp_path, capsys):
    config = tmp_path / "loop.yaml"
    config.write_text("schema_version: 1\nname: tinychain\nseed: 4\nstart:\n  prompt: a lantern in a desert\n"
                      "paint:\n  width: 64\n  height: 64\n  steps: 1\n")
    chain = tmp_path / "chain"
    assert main(["loop", str(config), "--models", "tiny", "--steps", "3", "--out", str(chain)]) == 0
    capsys.readouterr()
    film = tmp_path / "chain.mp4"
    code, out, err = render(tmp_path, capsys, "--from-chain", str(chain), "--fps", "4", "--hold", "0.5",
                            "--transition", "0.5", "--out", str(film))
    assert code == 0, err
    assert probe(film)["frames"] == 3 * 2 + 2 * 2
    from zoetrope.loop.chainlog import read_chain

    steps = read_chain(chain).steps
    srt = film.with_suffix(".srt").read_text()
    assert steps[0]["prompt"] in srt  # step 1 has no caption: its prompt is shown
    for step in steps[1:]:
        assert step["caption"] in srt
    assert counts(out) == (0, 3 + 2 * 2)


BAD_SCRIPTS = {
    "negative hold": (SCRIPT.replace("hold: 0.5\n  - prompt: \"two", "hold: -1\n  - prompt: \"two"),
                      r":15: keyframes\[0\]\.hold: .*greater than 0"),
    "unknown key": (SCRIPT.replace('    subtitle: "In the garden"', "    colour: red"),
                    r":17: keyframes\[1\]\.colour: unknown key"),
    "size": (SCRIPT.replace("width: 64", "width: 60"), r":5: width: .*multiple of 8"),
    "audio": (SCRIPT.replace("fps: 4", "fps: 4\naudio: missing.wav"), r":5: audio: audio file not found"),
    "empty": (SCRIPT.split("keyframes:")[0] + "keyframes: []\n", r":12: keyframes: List should have at least 1"),
    "wrong type": (SCRIPT.replace("steps: 2", "steps: many"), r":7: steps: Input should be a valid integer"),
}


@pytest.mark.parametrize("name", sorted(BAD_SCRIPTS))
def test_bad_script_exits_2_with_one_line_and_no_film(tmp_path, capsys, name):
    text, pattern = BAD_SCRIPTS[name]
    script = tmp_path / "bad.yaml"
    script.write_text(text)
    film = tmp_path / "bad.mp4"
    code, out, err = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), script=script)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {script}:"), err
    assert re.search(pattern, lines[0]), lines[0]
    assert not film.exists() and not any(tmp_path.glob("*.mp4")) and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "9"], "--batch-size: must be 1..8, the painter call width here"),
    (["--rows", "0"], "--rows: must be 1..64"),
    (["--rows", "2", "--batch-size", "3"], "--batch-size: must be 1..2"),
    (["--out", "film.gif"], "--out: a film needs one of"),
    (["--fps", "8"], "--fps, --hold and --transition apply to --from-chain"),
    (["--from-chain", "nowhere"], "exactly one"),
])
def test_bad_options_exit_2(tmp_path, capsys, args, message):
    script = tmp_path / "ok.yaml"
    script.write_text(SCRIPT)
    code, _, err = render(tmp_path, capsys, *args, script=script)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_chain_exits_2(tmp_path, capsys):
    code, _, err = render(tmp_path, capsys, "--from-chain", str(tmp_path / "nowhere"))
    assert code == 2 and "no such chain folder" in err


def test_a_failure_while_encoding_leaves_no_film(tmp_path, capsys, monkeypatch):
    import zoetrope.film.encode

    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT)
    film = tmp_path / "f.mp4"
    real = zoetrope.film.encode.FrameWriter.write

    def failing(self, frame):
        if self.frames_written == 5:
            raise OSError("disk full")
        real(self, frame)

    monkeypatch.setattr(zoetrope.film.encode.FrameWriter, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        main(["render", str(script), "--models", "tiny", "--out", str(film), "--cache-root", str(tmp_path / "c")])
    assert not film.exists() and not list(tmp_path.glob(".*mp4"))


def test_call_width_is_the_rule_recorded_in_the_film_and_can_be_set(tmp_path, capsys):
    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT)
    film = tmp_path / "f.mp4"
    code, out, err = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), script=script)
    assert code == 0, err
    assert "painter calls of 8 rows decoded 1 at a time" in out  # the CPU rule at 64 px: nothing measured
    assert not (tmp_path / "cache" / "moon" / "frames" / "rows.json").exists()
    [scene] = json.loads(film.with_suffix(".json").read_text())["scenes"]
    assert scene["walk_calls"] == {"rows": 8, "threads": 1, "decode": 1}
    code, out, _ = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), "--rows", "2", script=script)
    assert code == 0 and "painter calls of 2 rows" in out
    assert counts(out) == (0, UNIQUE)  # another call width, other keys: rendered afresh, never mixed
    assert probe(film)["frames"] == FRAMES
    assert json.loads(film.with_suffix(".json").read_text())["scenes"][0]["walk_calls"]["rows"] == 2


def test_a_failure_while_painting_stops_the_encoder_and_leaves_no_film(tmp_path, capsys, monkeypatch):
    import zoetrope.film.walk

    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT)
    film = tmp_path / "f.mp4"
    real, calls = zoetrope.film.walk.Walker.paint, []

    def failing(self, jobs):
        calls.append(len(jobs))
        if len(calls) == 3:
            raise RuntimeError("CUDA error: an illegal memory access")
        return real(self, jobs)

    monkeypatch.setattr(zoetrope.film.walk.Walker, "paint", failing)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        main(["render", str(script), "--models", "tiny", "--out", str(film), "--rows", "2",
              "--cache-root", str(tmp_path / "c")])
    assert not film.exists() and not list(tmp_path.glob(".*mp4"))
    assert len(list((tmp_path / "c" / "moon" / "frames").glob("*.png"))) == 4  # two saved batches are kept


# ------------------------------------------------------------------------------------------ the painter line


def test_the_first_line_names_each_scenes_painter(tmp_path, capsys):
    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT)
    film = tmp_path / "f.mp4"
    code, out, err = render(tmp_path, capsys, "--out", str(film), script=script)  # the scene's own `model: tiny`
    assert code == 0, err
    assert out.splitlines()[0] == "scene moon: walk with painter tiny (revision tiny-v1)"
    code, out, err = render(tmp_path, capsys, "--models", "tiny", "--out", str(film), script=script)
    assert code == 0, err
    assert out.splitlines()[0] == "scene moon: walk with painter tiny (revision tiny-v1), from --models"


def test_a_scene_without_a_model_says_the_default_before_loading_it(tmp_path, capsys, monkeypatch):
    import zoetrope.stages.models

    def no_load(*args, **kwargs):  # never load (or fetch) sd-turbo in a test: stop where the load begins
        raise zoetrope.stages.models.ModelLoadError("not loaded in tests")

    monkeypatch.setattr(zoetrope.stages.models, "load_painter", no_load)
    script = tmp_path / "moon.yaml"
    script.write_text(SCRIPT.replace("model: tiny\n", ""))
    code, out, err = render(tmp_path, capsys, "--out", str(tmp_path / "f.mp4"), script=script)
    assert code == 2 and "not loaded in tests" in err
    assert re.fullmatch(r"scene moon: walk with painter stabilityai/sd-turbo \(revision \S+\), the default: the scene names "
                        r"no model \(set `model:` or --models\)", out.splitlines()[0]), out


def test_a_film_file_names_the_painter_of_every_scene(tmp_path, capsys, monkeypatch):
    import zoetrope.stages.models

    monkeypatch.setattr(zoetrope.stages.models, "load_painter",
                        lambda *a, **k: (_ for _ in ()).throw(zoetrope.stages.models.ModelLoadError("stop")))
    body = "\n".join("    " + line for line in SCRIPT.split("schema_version: 1\n")[1].splitlines())
    film_file = tmp_path / "two.yaml"
    film_file.write_text("schema_version: 1\ntitle: Two\nscenes:\n"
                         f"  - name: first\n{body}\n  - name: second\n{body}\n")
    code, out, _ = render(tmp_path, capsys, "--out", str(tmp_path / "f.mp4"), script=film_file)
    assert code == 2
    assert out.splitlines()[:2] == ["scene first: walk with painter tiny (revision tiny-v1)",
                                    "scene second: walk with painter tiny (revision tiny-v1)"]
    # The same painter, named by one scene and defaulted in the other: each line says which
    first, second = body.replace("model: tiny", "model: sd-turbo"), body.replace("    model: tiny\n", "")
    film_file.write_text("schema_version: 1\ntitle: Two\nscenes:\n"
                         f"  - name: first\n{first}\n  - name: second\n{second}\n")
    code, out, _ = render(tmp_path, capsys, "--out", str(tmp_path / "f.mp4"), script=film_file)
    lines = out.splitlines()
    assert code == 2 and re.fullmatch(r"scene first: walk with painter stabilityai/sd-turbo \(revision \S+\)", lines[0])
    assert lines[1].startswith("scene second: walk with painter stabilityai/sd-turbo") and "the default" in lines[1]


def test_the_film_of_a_chain_uses_the_logged_painter_and_says_so(tmp_path, capsys):
    from zoetrope.film.render import RenderRequest, painter_lines, read_inputs

    config = tmp_path / "loop.yaml"
    config.write_text("name: c\nseed: 4\nstart:\n  prompt: a lantern\npaint:\n  width: 64\n  height: 64\n")
    chain = tmp_path / "chain"
    assert main(["loop", str(config), "--models", "tiny", "--steps", "1", "--out", str(chain)]) == 0
    inputs = read_inputs(RenderRequest(from_chain=chain))
    assert (inputs.painter.spec, inputs.painter.revision, inputs.painter.origin) == ("tiny", "tiny-v1", "chain log")
    assert painter_lines(inputs) == ["scene chain: walk with painter tiny (revision tiny-v1), as logged by the chain"]
    assert inputs.film.size == (64, 64) and inputs.out == Path("renders/films/chain.mp4")
