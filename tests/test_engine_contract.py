"""The engine contract (film/engines/): an engine registered from this file, with nothing else edited, is
accepted by the schema and `check`, named before anything loads, rendered through the one render path, cached,
and recorded; and no engine's name is spread over the house."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from zoetrope.film.engines import register, registered, unregister
from zoetrope.film.engines.clipbase import ClipEngine
from zoetrope.settings.engines import EngineSpec

ZOETROPE = Path(__file__).resolve().parents[1] / "zoetrope"
CALLS: list[int] = []


class SolidClips:
    """The throwaway engine's stage: a ClipPainterLike painting solid colours hashed from the request."""

    identity = {"solid": 1, "device": "cpu"}
    ref = None
    max_frames = 5
    takes_conditions = False

    def call_frames(self, wanted: int) -> int:
        return wanted

    def paint_clip(self, request):
        CALLS.append(request.frames)
        digest = hashlib.sha256(repr((request.prompts, request.seed)).encode()).digest()
        return [Image.new("RGB", (request.width, request.height), (digest[0], digest[1], 40 * n % 256))
                for n in range(request.frames)]


def load_solid(device, shade: int = 0) -> SolidClips:
    return SolidClips()


class Solid(ClipEngine):
    spec = EngineSpec("solid", "solid colours (a test's throwaway engine)", roles=(), model_fields={})

    def describe(self, names, why) -> str:
        return "solid with no model"

    def loader(self, choices, memory):
        return load_solid, {"shade": 1}


@pytest.fixture
def solid():
    engine = register(Solid())
    yield engine
    unregister(engine.name)


def scene(tmp_path: Path) -> Path:
    path = tmp_path / "solid.yaml"
    path.write_text("engine: solid\nfps: 8\nwidth: 64\nheight: 64\ntransition: 0.5\n"
                    "keyframes:\n  - prompt: a red room\n    hold: 1.0\n  - prompt: a blue room\n    hold: 0.5\n")
    return path


def test_a_throwaway_engine_renders_a_film_through_the_one_path(solid, tmp_path, capsys):
    from zoetrope.cli.main import main
    from zoetrope.film.render import RenderRequest, render_film

    path = scene(tmp_path)
    assert main(["check", str(path)]) == 0, capsys.readouterr()
    lines: list[str] = []
    request = RenderRequest(script=path, out=tmp_path / "solid.mp4", cache_root=tmp_path / "cache")
    CALLS.clear()
    result = render_film(request, on_line=lines.append)
    assert lines[0] == "scene solid: solid with no model"
    assert result.frames == 8 + 4 + 4 and (result.cached, result.rendered) == (0, 16)
    assert sum(CALLS) == 16 and max(CALLS) <= SolidClips.max_frames  # chunked by the engine's call length
    record = json.loads((tmp_path / "solid.json").read_text())
    assert [s["engine"] for s in record["scenes"][0]["segments"]] == ["solid", "solid"]
    assert record["models"]["solid"] == SolidClips.identity
    again = render_film(request, on_line=lines.append)
    assert (again.cached, again.rendered) == (16, 0)  # a warm cache paints nothing


def test_an_unknown_engine_is_one_line_naming_the_registered_ones(tmp_path):
    from zoetrope.base.errors import UserError
    from zoetrope.settings.scene import load_film

    with pytest.raises(UserError, match=r"solid.yaml:1: engine: .*expected one of animatediff, drift, ltx, walk"):
        load_film(scene(tmp_path))


def test_engine_null_and_no_engine_are_the_same(tmp_path):
    from zoetrope.settings.scene import SceneScript

    base = {"motion": {"zoom": 1.01}, "keyframes": [{"prompt": "a", "hold": 1.0}, {"prompt": "b", "hold": 1.0}]}
    left_out, typed = SceneScript.model_validate(base), SceneScript.model_validate({**base, "engine": None})
    assert left_out.engines() == typed.engines() == ["drift"]
    walk = SceneScript.model_validate({"keyframes": base["keyframes"]})
    assert walk.engines() == SceneScript.model_validate({"keyframes": base["keyframes"], "engine": None}).engines()


def test_no_engine_is_named_in_more_than_five_modules():
    """An engine's name as a string literal (`"ltx"`) appears in at most 5 modules of zoetrope/: its own, its
    stage's, and the model resolution of its role. ("drift" is also the loop's paint mode, a different thing
    named alike: settings/loop.py, loop/chain.py, curate/report.py and cli/replay.py are that mode's.)"""
    loop_mode = {"settings/loop.py", "loop/chain.py", "curate/report.py", "cli/replay.py"}
    for engine in registered():
        literal = re.compile(rf"""["']{re.escape(engine.name)}["']""")
        modules = sorted(str(p.relative_to(ZOETROPE)) for p in ZOETROPE.rglob("*.py") if literal.search(p.read_text()))
        if engine.name == "drift":
            modules = [m for m in modules if m not in loop_mode]
        assert len(modules) <= 5, (engine.name, modules)
