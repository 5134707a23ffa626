"""The engine seam (film/engines/clips.py, film/layout.py) on a fake clip painter: chunking, the frame rule,
conditioning, keys that change exactly where an edit reaches, whole-chunk writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from zoetrope.film.engines import clips as engines
from zoetrope.film.layout import FilmModels, lay_out
from zoetrope.settings.scene import Film, SceneScript


class FakeClips:
    """A ClipPainterLike whose frames are solid colours hashed from the request (so any input change shows)."""

    def __init__(self, max_frames: int = 17, conditioned: bool = True, step: int = 8):
        self.max_frames, self.takes_conditions, self.step = max_frames, conditioned, step
        self.identity = {"fake": 1}
        self.calls = []

    def call_frames(self, wanted: int) -> int:
        assert 1 <= wanted <= self.max_frames, wanted
        return -(-(wanted - 1) // self.step) * self.step + 1

    def paint_clip(self, request):
        assert request.frames == self.call_frames(request.frames)
        assert all(c.frame < request.frames for c in request.conditions)
        assert self.takes_conditions or not request.conditions
        self.calls.append(request)
        digest = hashlib.sha256(repr((request.prompts, request.seed, request.frames,
                                      [(c.frame, [im.tobytes() for im in c.images]) for c in request.conditions])
                                     ).encode()).digest()
        return [Image.new("RGB", (request.width, request.height), (digest[0], digest[1], n % 256))
                for n in range(request.frames)]


def script(**over) -> SceneScript:
    data = {"fps": 8, "width": 64, "height": 64, "seed": 5, "engine": "ltx", "transition": 1.0,
            "keyframes": [{"prompt": "a boat", "hold": 2.0}, {"prompt": "a storm", "hold": 1.0},
                          {"prompt": "a harbour", "hold": 0.5}]}
    data.update(over)
    return SceneScript.model_validate(data)


def layout(s: SceneScript, tmp_path: Path, clips=None, walk_painter=None):
    models = FilmModels(painter=walk_painter, walk_identity={"model": "fake"} if walk_painter else None,
                        clips={"ltx": clips or FakeClips(), "animatediff": FakeClips(conditioned=False)})
    request = SimpleNamespace(preview=False, cache_root=tmp_path, rows=2, batch_size=None)
    return lay_out(Film("t", [("t", s)], None), models, request)


def test_every_segment_has_exactly_its_planned_frames(tmp_path):
    s = script()
    film = layout(s, tmp_path)
    assert len(film.shots) == s.frame_count() == 16 + 8 + 8 + 8 + 4
    scene = film.scenes[0]
    assert [len(seg.paths) for seg in scene.segments] == [24, 16, 4]
    chunks = scene.chunks
    assert all(c.call_frames <= 17 and (c.call_frames - 1) % 8 == 0 for c in chunks)
    assert all(c.skip + c.frames <= c.call_frames for c in chunks)
    # segment 0 (24 frames, 17 per call): continued from the previous chunk's tail
    first = [c for c in chunks if c.segment == 0]
    assert len(first) >= 2 and first[1].skip == 1 and first[1].conditions[0].sources[0].digest.startswith(first[0].key)


def test_segments_after_the_first_start_from_the_frame_before(tmp_path):
    scene = layout(script(), tmp_path).scenes[0]
    seg1 = scene.segments[1].chunks[0]
    last_of_0 = scene.segments[0].paths[-1]
    assert seg1.skip == 1 and seg1.conditions[0].sources[0].path == last_of_0


def test_a_given_image_starts_its_segment_and_ends_the_one_before(tmp_path):
    picture = tmp_path / "storm.png"
    Image.new("RGB", (80, 48), "navy").save(picture)
    s = script(keyframes=[{"prompt": "a boat", "hold": 0.5}, {"prompt": "a storm", "hold": 1.0, "image": str(picture)},
                          {"prompt": "a harbour", "hold": 0.5}])
    scene = layout(s, tmp_path).scenes[0]
    before, starts = scene.segments[0].chunks[-1], scene.segments[1].chunks[0]
    end = [c for c in before.conditions if c.frame > 0]
    assert end and end[0].frame == before.skip + before.frames and end[0].sources[0].digest.startswith("sha256:")
    assert starts.skip == 0 and starts.conditions[0].sources[0].path == picture


def test_editing_a_keyframe_rerenders_its_segment_and_the_conditioned_ones_after(tmp_path):
    before = {c.segment: c.key for c in layout(script(), tmp_path).scenes[0].chunks}
    edited = script(keyframes=[{"prompt": "a boat", "hold": 2.0}, {"prompt": "a calm", "hold": 1.0},
                               {"prompt": "a harbour", "hold": 0.5}])
    after = {c.segment: c.key for c in layout(edited, tmp_path).scenes[0].chunks}
    assert before[0] == after[0] and before[1] != after[1] and before[2] != after[2]


def test_animatediff_chunks_are_independent_and_travel_to_the_next_prompt(tmp_path):
    s = script(engine="animatediff")
    scene = layout(s, tmp_path).scenes[0]
    chunks = scene.chunks
    assert all(not c.conditions and c.skip == 0 for c in chunks)
    last_of_0 = [c for c in chunks if c.segment == 0][-1]
    assert last_of_0.prompts[max(last_of_0.prompts)] == s.prompt_of(1)
    assert sum(c.frames for c in chunks) == s.frame_count()


def test_render_writes_whole_chunks_and_a_rerun_renders_none(tmp_path):
    clips = FakeClips()
    film = layout(script(), tmp_path, clips)
    scene = film.scenes[0]
    stats = engines.render_chunks(clips, scene.chunks, scene.cache, scene.script, 64, 64)
    frames = sum(c.frames for c in scene.chunks)  # counts are film frames, every engine alike
    assert (stats.rendered, stats.calls) == (frames, len(scene.chunks))
    assert all(p.is_file() for p in scene.segments[0].paths)
    again = engines.render_chunks(clips, scene.chunks, scene.cache, scene.script, 64, 64)
    assert (again.rendered, again.cached, again.calls) == (0, frames, 0)
    assert len(clips.calls) == len(scene.chunks)
    # each conditioned call got the frames it was keyed on
    second = clips.calls[1]
    tail = [Image.open(p).convert("RGB").tobytes() for p in scene.chunks[0].frame_paths(scene.cache)[-1:]]
    assert [im.tobytes() for im in second.conditions[0].images] == tail


def test_a_killed_chunk_write_leaves_nothing_and_is_swept(tmp_path):
    clips = FakeClips()
    scene = layout(script(), tmp_path, clips).scenes[0]
    scene.cache.mkdir(parents=True)
    dead = scene.cache / f".{scene.chunks[0].key}.999999-0000000000000000.tmp"  # a dead writer's half chunk
    dead.mkdir()
    (dead / "0000.png").write_bytes(b"half")
    engines.render_chunks(clips, scene.chunks[:1], scene.cache, scene.script, 64, 64)
    assert not dead.exists() and scene.chunks[0].folder(scene.cache).is_dir()
    assert not [n for n in os.listdir(scene.cache) if n.startswith(".")]


def test_a_model_whose_calls_are_too_short_is_one_line(tmp_path):
    from zoetrope.base.errors import UserError

    with pytest.raises(UserError, match="too short to continue"):
        layout(script(), tmp_path, FakeClips(max_frames=1))


def test_the_engine_size_rule_is_checked_before_any_model():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ltx engine needs a multiple of 32"):
        script(width=72)
    assert script(engine="animatediff", width=72).width == 72
