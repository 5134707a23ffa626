"""The walk: timeline layout, frame keys, cache and resume, and byte-identical frames batched or not."""

from __future__ import annotations

import pytest

from zoetrope.film.engines.walk import render_missing
from zoetrope.film.walk import ROWS, Walker, needed_jobs, painter_identity, plan_scene
from zoetrope.settings.scene import SceneScript

IDENTITY = {"model": "test", "device": "cpu", "dtype": "float32"}


def script(**changes) -> SceneScript:
    data = {
        "fps": 4, "width": 64, "height": 64, "steps": 2, "seed": 5, "model": "tiny", "transition": 1.0,
        "keyframes": [{"prompt": "a red moon over the sea", "hold": 0.5},
                      {"prompt": "two old men in a garden", "hold": 0.5, "easing": "linear"},
                      {"prompt": "a ship in a storm", "hold": 0.25}],
    }
    return SceneScript.model_validate(data | changes)


def test_plan_follows_the_frame_count_rule_and_renders_each_keyframe_once():
    s = script()
    plan = plan_scene("t", s, IDENTITY)
    assert len(plan.sequence) == s.frame_count() == 2 + 4 + 2 + 4 + 1
    jobs = needed_jobs(plan)
    assert len(jobs) == 3 + 4 + 4  # three keyframes once each, plus the in-between frames
    assert len({j.key for j in jobs}) == len(jobs)
    # a keyframe's frame is repeated for its hold, then the transition never shows it again
    assert plan.sequence[:2] == [plan.keyframe_jobs[0]] * 2
    assert plan.sequence.count(plan.keyframe_jobs[1]) == 2
    between = [plan.jobs[j] for j in plan.sequence if plan.jobs[j].b is not None]
    assert all(0 < j.t < 1 for j in between)
    assert [j.t for j in between[4:]] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # linear easing of keyframe 1
    assert plan.keyframe_start == [0, 6, 12]


def test_editing_a_keyframe_changes_only_the_segments_touching_it():
    before = plan_scene("t", script(), IDENTITY)
    edited = script()
    edited.keyframes[2].prompt = "a lighthouse at night"
    after = plan_scene("t", edited, IDENTITY)
    changed = {(j.a, j.b) for j, k in zip(before.jobs, after.jobs, strict=True) if j.key != k.key}
    assert changed == {(2, None), (1, 2)}
    # keys also depend on everything else that changes pixels
    for change in ({"steps": 3}, {"seed": 6}, {"width": 72}, {"guidance": 2.0}, {"scheduler": "ddim"}):
        other = plan_scene("t", script(**change), IDENTITY)
        assert all(j.key != k.key for j, k in zip(before.jobs, other.jobs, strict=True)), change
    assert plan_scene("t", script(), IDENTITY | {"model": "other"}).jobs[0].key != before.jobs[0].key


def test_walk_interpolates_noise_on_the_sphere_and_embeddings_linearly(tiny_painter):
    plan = plan_scene("t", script(), painter_identity(tiny_painter))
    walker = Walker(tiny_painter, plan)
    walker.prepare({0, 1})
    middle = [j for j in plan.jobs if j.a == 0 and j.b == 1][1]  # ease-in-out: t = (1 - cos(0.4 pi)) / 2
    assert middle.t == pytest.approx(0.3454915)
    embeds, noise = walker.inputs(middle)
    e0, e1 = walker._embeds[0]["prompt_embeds"], walker._embeds[1]["prompt_embeds"]
    assert embeds["prompt_embeds"].allclose(e0 + (e1 - e0) * middle.t, atol=1e-6)
    n0, n1 = walker._noise[0], walker._noise[1]
    assert noise.norm().item() == pytest.approx((n0.norm().item() + n1.norm().item()) / 2, rel=0.02)
    assert noise.norm() > (n0 + (n1 - n0) * middle.t).norm() * 1.15  # lerp would shrink it


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_cache_resume_and_byte_identical_batching(tiny_painter, tmp_path):
    plan = plan_scene("t", script(), painter_identity(tiny_painter))
    n = len(needed_jobs(plan))

    first = render_missing(tiny_painter, plan, tmp_path / "a", batch_size=ROWS)
    assert (first.cached, first.rendered) == (0, n)
    assert first.calls == -(-n // ROWS)
    again = render_missing(tiny_painter, plan, tmp_path / "a", batch_size=ROWS)
    assert (again.cached, again.rendered, again.calls) == (n, 0, 0)
    assert again.summary().startswith(f"{n} frames cached, 0 rendered")

    # an interrupted render: some frames missing, a stray temp file left behind
    frames_a = files(tmp_path / "a")
    lost = sorted(frames_a)[:3]
    for name in lost:
        (tmp_path / "a" / name).unlink()
    resumed = render_missing(tiny_painter, plan, tmp_path / "a", batch_size=2)
    assert (resumed.cached, resumed.rendered) == (n - 3, 3)
    assert files(tmp_path / "a") == frames_a

    # one frame at a time in a fresh cache: the same bytes
    single = render_missing(tiny_painter, plan, tmp_path / "b", batch_size=1)
    assert single.rendered == n and single.calls == n
    assert files(tmp_path / "b") == frames_a
    # and the frames do move: the walk is not one image repeated
    assert len(set(frames_a.values())) == n


def test_a_narrower_vae_width_keeps_frames_byte_identical_and_is_keyed(tiny_painter, tmp_path):
    """Calls of 4 rows decoded 2 latents at a time (rows.py's VAE width): every batch size paints the same
    bytes, including a last call whose padding-only slice is skipped; the whole call's width keys as before."""
    identity = painter_identity(tiny_painter)
    sliced = plan_scene("t", script(), identity, rows=4, decode=2)
    assert sliced.decode == 2 and sliced.jobs[0].key != plan_scene("t", script(), identity, rows=4).jobs[0].key
    assert plan_scene("t", script(), identity, rows=4, decode=4).jobs[0].key == \
        plan_scene("t", script(), identity, rows=4).jobs[0].key
    render_missing(tiny_painter, sliced, tmp_path / "four", batch_size=4)
    for size in (1, 3):
        render_missing(tiny_painter, sliced, tmp_path / str(size), batch_size=size)
        assert files(tmp_path / str(size)) == files(tmp_path / "four")


def test_batch_size_is_checked(tiny_painter, tmp_path):
    plan = plan_scene("t", script(), painter_identity(tiny_painter))
    with pytest.raises(ValueError, match="batch_size"):
        render_missing(tiny_painter, plan, tmp_path, batch_size=ROWS + 1)


def test_frame_feed_hands_frames_over_as_they_appear(tmp_path):
    import threading

    from zoetrope.film.walk import FrameFeed

    feed, got = FrameFeed(), []
    frame = tmp_path / "a.png"
    consumer = threading.Thread(target=lambda: (feed.wait(frame), got.append(frame.read_bytes())))
    consumer.start()
    consumer.join(0.2)
    assert consumer.is_alive() and not got  # waits for the frame
    frame.write_bytes(b"png")
    feed.saved()
    consumer.join(5)
    assert got == [b"png"]
    feed.close(RuntimeError("painter died"))
    with pytest.raises(RuntimeError, match="stopped before this frame"):
        feed.wait(tmp_path / "b.png")
    closed = FrameFeed()
    closed.close()
    with pytest.raises(FileNotFoundError, match="without rendering"):
        closed.wait(tmp_path / "b.png")
