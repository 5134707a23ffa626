"""Film features wired through render_film on the tiny models: a drift with a zoom schedule, upscaled x2; fps_out;
LoRA styles in the frame keys and the film's record."""

from __future__ import annotations

import json
from pathlib import Path

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
