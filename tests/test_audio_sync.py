"""Audio-synced films (film/audio_sync.py) end to end on the tiny painter: length, audio stream, plot, and the
picture moving where the onsets are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_audio import write_wav
from zoetrope.base.errors import UserError
from zoetrope.film.encode import probe
from zoetrope.film.render import RenderRequest, render_film

pytest.importorskip("librosa")

SCENE = """\
schema_version: 1
fps: 8
width: 64
height: 64
steps: 1
model: tiny
seed: 2
transition: 2.0
audio: {{file: song.wav, sync: onsets{extra}}}
keyframes:
  - prompt: "a lantern in fog"
    hold: 1.0
  - prompt: "a ship on a dark sea"
    hold: 1.0
  - prompt: "a lighthouse at dawn"
    hold: 1.0
"""


def render(tmp_path: Path, clicks, extra: str = "", name: str = "film") -> tuple[dict, dict]:
    folder = tmp_path / name
    folder.mkdir()
    write_wav(folder / "song.wav", clicks=clicks, seconds=6.0)
    (folder / "scene.yaml").write_text(SCENE.format(extra=extra))
    out = folder / "film.mp4"
    render_film(RenderRequest(script=folder / "scene.yaml", out=out, cache_root=tmp_path / "cache"))
    return probe(out), json.loads(out.with_suffix(".json").read_text())


def test_a_synced_film_lasts_as_long_as_its_audio_and_moves_on_the_onsets(tmp_path):
    info, record = render(tmp_path, clicks=(1.6, 2.2, 4.4))
    assert abs(info["frames"] / 8 - 6.0) <= 1 / 8 and info["audio"]  # 6 s within one frame, with sound
    assert (tmp_path / "film" / "film.timing.png").stat().st_size > 1000
    assert record["audio"]["sync"] == "onsets" and record["frames"] == 48
    moved, _ = render(tmp_path, clicks=(1.2, 3.0, 3.4), name="moved")
    a = sorted(p.name for p in (tmp_path / "cache").glob("*/frames/*.png"))
    assert len(a) > 40  # the two films share keyframe stills, but their transitions are painted elsewhere in t
    assert moved["frames"] == info["frames"]


def test_the_walk_positions_follow_the_clicks(tmp_path):
    from zoetrope.film.audio_sync import sync_film
    from zoetrope.settings.scene import load_film

    def positions(clicks, name):
        (tmp_path / name).mkdir()
        write_wav(tmp_path / name / "song.wav", clicks=clicks, seconds=6.0)
        (tmp_path / name / "s.yaml").write_text(SCENE.format(extra=""))
        film, timing = sync_film(load_film(tmp_path / name / "s.yaml"), tmp_path / "cache")
        assert film.frame_count() == 48
        return timing.positions

    early, late = positions((1.3,), "early"), positions((2.6,), "late")
    # frame 12 (1.5 s) lies in the first transition: past the early click the walk has moved, before the late not
    assert early[12] - 0 > 0.5 > late[12] - 0


def test_bad_audio_is_one_line_and_nothing_loads(tmp_path):
    (tmp_path / "song.wav").write_text("not audio")
    (tmp_path / "scene.yaml").write_text(SCENE.format(extra=""))
    with pytest.raises(UserError) as info:
        render_film(RenderRequest(script=tmp_path / "scene.yaml", out=tmp_path / "f.mp4", cache_root=tmp_path / "c"))
    assert str(info.value).startswith(str(tmp_path / "song.wav")) and "\n" not in str(info.value)
    assert not (tmp_path / "f.mp4").exists() and not (tmp_path / "c").exists()


def test_snap_needs_sync_and_end_after_start(tmp_path):
    from zoetrope.settings.scene import load_film

    write_wav(tmp_path / "song.wav", clicks=(1.0,), seconds=6.0)
    for extra, field in ((", sync: none, snap: beats", "audio.snap"), (", start: 3, end: 2", "audio.end")):
        (tmp_path / "s.yaml").write_text(SCENE.format(extra=extra).replace("sync: onsets, sync: none", "sync: none"))
        with pytest.raises(UserError, match=rf"s.yaml:9: {field}"):
            load_film(tmp_path / "s.yaml")
