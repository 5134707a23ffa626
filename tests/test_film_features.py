"""Film features wired through render_film on the tiny models: a drift with a zoom schedule, upscaled x2; fps_out;
LoRA styles in the frame keys and the film's record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoetrope.film.encode import probe
from zoetrope.film.render import RenderRequest, render_film

DRIFT = """\
schema_version: 1
fps: 8
width: 64
height: 64
steps: 2
seed: 4
model: tiny
transition: 0.5
motion:
  zoom: {{0: 1.0, 1s: 1.05}}
  strength: 0.6
{extra}
keyframes:
  - prompt: "a lantern in fog"
    hold: 0.5
  - prompt: "a ship on a dark sea"
    hold: 0.5
"""


def render(tmp_path: Path, text: str, name: str = "s", **request) -> tuple[dict, dict, object]:
    (tmp_path / f"{name}.yaml").write_text(text)
    out = tmp_path / f"{name}.mp4"
    result = render_film(RenderRequest(script=tmp_path / f"{name}.yaml", out=out, cache_root=tmp_path / "cache",
                                       **request))
    return probe(out), json.loads(out.with_suffix(".json").read_text()), result


def test_a_drift_with_a_zoom_schedule_upscaled_x2_is_twice_the_size(tmp_path):
    info, record, result = render(tmp_path, DRIFT.format(extra="upscale: {scale: 2}"), models={"upscaler": "tiny"})
    assert info["size"] == (128, 128) and info["frames"] == 8 + 4 == record["frames"]
    assert record["scenes"][0]["segments"][0]["engine"] == "drift" and "upscaler" in record["models"]
    assert result.rendered > 0
    # a rerun paints and upscales nothing; another scale upscales again without repainting
    again = render_film(RenderRequest(script=tmp_path / "s.yaml", out=tmp_path / "again.mp4",
                                      cache_root=tmp_path / "cache", models={"upscaler": "tiny"}))
    assert again.rendered == 0 and (tmp_path / "again.mp4").read_bytes() == (tmp_path / "s.mp4").read_bytes()
    x4, _, four = render(tmp_path, DRIFT.format(extra="upscale: {scale: 4}"), models={"upscaler": "tiny"})
    assert x4["size"] == (256, 256) and four.rendered == 0  # the painted frames are never recomputed


def test_fps_out_interpolates_to_twice_the_frames(tmp_path):
    info, record, result = render(tmp_path, DRIFT.format(extra="fps_out: 16"))
    assert info["frames"] == 24 and abs(info["fps"] - 16) < 1e-6 and result.frames == 24 and result.fps == 16
    assert record["fps_out"] == 16


def test_loras_enter_the_frame_keys_and_the_record(tmp_path):
    from zoetrope.stages.lora import build_tiny_lora

    lora = build_tiny_lora(tmp_path / "ink")
    walk = DRIFT.replace("motion:\n  zoom: {{0: 1.0, 1s: 1.05}}\n  strength: 0.6\n", "")
    _, plain, _ = render(tmp_path, walk.format(extra=""), name="plain")
    _, styled, _ = render(tmp_path, walk.format(extra=f"loras: [{{path: {lora}, weight: 0.8}}]"), name="styled")
    assert "loras" not in plain["models"]["painter"]
    assert styled["models"]["painter"]["loras"][0]["weight"] == 0.8
    assert len(styled["models"]["painter"]["loras"][0]["sha256"]) == 64
    frames = {p.name for p in (tmp_path / "cache").glob("*/frames/*.png")}
    assert len(frames) == 2 * len({p.name for p in (tmp_path / "cache" / "plain" / "frames").glob("*.png")})


def _pcm(path: Path):
    """The film's audio as mono 8 kHz float samples (ffmpeg decodes it)."""
    import subprocess

    import numpy as np

    from zoetrope.film.encode import ffmpeg_exe

    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "8000", "-f",
                          "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768


def test_an_audio_gain_schedule_fades_the_sound_in(tmp_path):
    import numpy as np

    from tests.test_audio import write_wav

    write_wav(tmp_path / "tone.wav", seconds=3.0, tone=440.0)
    walk = DRIFT.replace("motion:\n  zoom: {{0: 1.0, 1s: 1.05}}\n  strength: 0.6\n", "")
    info, record, _ = render(tmp_path, walk.format(extra="audio: {file: tone.wav, gain: {0: 0.0, 1s: 1.0}}"))
    assert info["audio"] and record["audio"]["gain"] == {"0": 0.0, "1s": 1.0}
    samples = _pcm(tmp_path / "s.mp4")
    rms = lambda a, b: float(np.sqrt(np.mean(samples[int(a * 8000):int(b * 8000)] ** 2)))  # noqa: E731
    assert rms(0.0, 0.2) < 0.25 * rms(1.1, 1.4)  # silent at first, full after the last key
    assert rms(0.3, 0.5) < rms(0.6, 0.9) < rms(1.1, 1.4)  # rising in between


def test_bad_gain_and_guidance_schedules_are_one_line(tmp_path):
    from tests.test_audio import write_wav
    from zoetrope.base.errors import UserError
    from zoetrope.settings.scene import load_film

    write_wav(tmp_path / "tone.wav", seconds=3.0, tone=440.0)
    walk = DRIFT.replace("motion:\n  zoom: {{0: 1.0, 1s: 1.05}}\n  strength: 0.6\n", "")
    cases = [
        (walk.format(extra="audio: {file: tone.wav, gain: {1s: 1.0, 0: 0.0}}"), r"s.yaml:\d+: audio.gain: "),
        (walk.format(extra="audio: {file: tone.wav, gain: {0: 0.0, 9s: 1.0}}"), r"s.yaml:\d+: audio.gain: .*past"),
        (walk.format(extra="audio: {file: tone.wav, gain: 5}"), r"s.yaml:\d+: audio.gain"),
        (DRIFT.format(extra="").replace("strength: 0.6", "strength: 0.6\n  guidance: {0: 1.0, 9s: 2.0}"),
         r"s.yaml:\d+: motion.guidance: .*past"),
    ]
    for text, pattern in cases:
        (tmp_path / "s.yaml").write_text(text)
        with pytest.raises(UserError, match=pattern):
            load_film(tmp_path / "s.yaml")


def test_a_guidance_schedule_reaches_each_drift_frame_and_its_key(tmp_path):
    from types import SimpleNamespace

    from zoetrope.film.engines.clips import plan_segment
    from zoetrope.settings.scene import SceneScript

    def chunks(guidance):
        script = SceneScript.model_validate({"fps": 8, "width": 64, "height": 64, "steps": 4, "guidance": 1.0,
                                             "motion": {"strength": 0.6, **guidance},
                                             "keyframes": [{"prompt": "a lantern", "hold": 2.0}]})
        clips = SimpleNamespace(takes_conditions=True, max_frames=9, call_frames=lambda n: n)
        return plan_segment(script, 0, "drift", clips, {"d": 1}, 64, 64, tmp_path, None, None, drifts=True)

    ramp, plain = chunks({"guidance": {0: 1.0, 16: 5.0}}), chunks({})
    assert "guidance" not in plain[1].motion and ramp[1].motion["guidance"][1] > 1.0
    assert ramp[-1].motion["guidance"][-1] == pytest.approx(5.0, abs=0.3)
    assert [c.key for c in ramp] != [c.key for c in plain]


def test_a_walk_guidance_schedule_paints_each_row_at_its_own_guidance(tmp_path, tiny_painter):
    from zoetrope.film.engines.walk import render_missing
    from zoetrope.film.walk import needed_jobs, painter_identity, plan_scene
    from zoetrope.settings.scene import SceneScript

    def script(guidance):
        return SceneScript.model_validate({"fps": 4, "width": 64, "height": 64, "steps": 2, "seed": 1,
                                           "guidance": guidance, "transition": 2.0,
                                           "keyframes": [{"prompt": "a lantern in fog"}, {"prompt": "a ship"}]})

    ramp = plan_scene("g", script({0: 1.0, "3s": 7.0}), painter_identity(tiny_painter), rows=4)
    flat = plan_scene("g", script(7.0), painter_identity(tiny_painter), rows=4)
    values = [j.guidance for j in needed_jobs(ramp)]
    assert values == sorted(values) and values[0] == 1.0 and values[-1] > 5.0
    assert {j.key for j in ramp.jobs}.isdisjoint(j.key for j in flat.jobs)  # a constant keys as it always did
    # each row at its own guidance: the same bytes in calls of 1 real row (3 padding) and of 4 different rows
    render_missing(tiny_painter, ramp, tmp_path / "one", batch_size=1)
    render_missing(tiny_painter, ramp, tmp_path / "four")
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").glob("*.png")}
    assert one == {p.name: p.read_bytes() for p in (tmp_path / "four").glob("*.png")} and len(one) == len(values)
    render_missing(tiny_painter, flat, tmp_path / "flat")
    flat_frames = [(tmp_path / "flat" / f"{j.key}.png").read_bytes() for j in needed_jobs(flat)]
    ramp_frames = [one[f"{j.key}.png"] for j in needed_jobs(ramp)]
    assert ramp_frames[0] != flat_frames[0]  # the ramp starts at guidance 1, the flat walk at 7
    assert ramp_frames[-1] == flat_frames[-1]  # and ends on 7: a row at 7 paints what a scalar 7 paints


def test_a_guidance_schedule_is_refused_where_a_call_takes_one_number(tmp_path):
    from zoetrope.base.errors import UserError
    from zoetrope.settings.scene import load_film

    (tmp_path / "s.yaml").write_text("engine: ltx\nwidth: 64\nheight: 64\nguidance: {0: 1.0, 1s: 3.0}\n"
                                     "keyframes:\n  - prompt: a boat\n    hold: 2.0\n")
    with pytest.raises(UserError, match=r"s.yaml:4: guidance: a guidance schedule needs drift or walk segments"):
        load_film(tmp_path / "s.yaml")
