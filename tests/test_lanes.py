"""CPU lanes: painter calls side by side at one intra-op thread each, with the same frames as one at a time."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from zoetrope.film.engines.walk import render_missing
from zoetrope.film.walk import needed_jobs, painter_identity, plan_scene
from zoetrope.settings.scene import SceneScript
from zoetrope.stages.lanes import cpu_lanes, in_order, intra_op_threads


def script() -> SceneScript:
    return SceneScript.model_validate({
        "fps": 4, "width": 64, "height": 64, "steps": 2, "seed": 5, "model": "tiny", "transition": 1.5,
        "keyframes": [{"prompt": "a red moon over the sea", "hold": 0.25},
                      {"prompt": "two old men in a garden", "hold": 0.25},
                      {"prompt": "a ship in a storm", "hold": 0.25}],
    })


@pytest.fixture
def threads():
    """The test's torch thread count, put back afterwards (lanes follow it)."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def pngs(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_in_order_keeps_the_order_and_runs_calls_side_by_side():
    running, peak, lock = [0], [0], threading.Lock()

    def paint(batch: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 if batch % 2 == 0 else 0.01)  # even batches finish last
        with lock:
            running[0] -= 1
        return batch * 10

    assert list(in_order(paint, iter(range(6)), 3)) == [(b, b * 10) for b in range(6)]
    assert peak[0] == 3
    assert list(in_order(paint, iter(range(3)), 1)) == [(0, 0), (1, 10), (2, 20)]


def test_a_failed_call_re_raises_in_order_and_stops_the_rest():
    started = []

    def paint(batch: int) -> int:
        started.append(batch)
        if batch == 1:
            raise RuntimeError("CUDA error: out of memory")
        time.sleep(0.02)
        return batch

    seen = []
    with pytest.raises(RuntimeError, match="out of memory"):
        for batch, _ in in_order(paint, iter(range(50)), 2):
            seen.append(batch)
    assert seen == [0] and len(started) < 50  # batches after the failure were never drawn


def test_an_early_end_stops_the_calls_still_running_at_their_next_step():
    from zoetrope.stages.lanes import Cancelled, check_cancelled

    steps, stopped = [], []

    def paint(batch: int) -> int:
        if batch == 0:
            time.sleep(0.05)
            raise KeyboardInterrupt  # as Ctrl-C reaches a render
        try:
            for step in range(1000):  # a long call, step by step as Painter.denoise runs
                check_cancelled()
                steps.append(step)
                time.sleep(0.01)
        except Cancelled:
            stopped.append(batch)
            raise
        return batch

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(in_order(paint, iter(range(2)), 2))
    assert stopped == [1] and len(steps) < 100 and time.monotonic() - start < 5
    check_cancelled()  # off the lanes: nothing to stop


def test_lanes_leave_the_thread_counts_as_they_were(threads):
    threads(2)
    list(in_order(lambda b: torch.get_num_threads(), iter(range(4)), 2))
    assert torch.get_num_threads() == 2
    later = []
    worker = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert later == [2]  # a thread started afterwards gets the process's count again, not the lanes' 1
    assert [n for _, n in in_order(lambda b: torch.get_num_threads(), iter(range(4)), 2)] == [1, 1, 1, 1]
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_lanes_paint_what_one_call_at_a_time_paints(tiny_painter, tmp_path, threads):
    plan = plan_scene("t", script(), painter_identity(tiny_painter), rows=2, threads=1)
    threads(2)
    assert cpu_lanes(tiny_painter, _params(plan)) == 2
    laned = render_missing(tiny_painter, plan, tmp_path / "lanes")
    threads(1)
    assert cpu_lanes(tiny_painter, _params(plan)) == 1
    single = render_missing(tiny_painter, plan, tmp_path / "single", batch_size=1)
    assert (laned.lanes, single.lanes) == (2, 1) and laned.rendered == single.rendered == len(needed_jobs(plan))
    assert pngs(tmp_path / "lanes") == pngs(tmp_path / "single")
    assert "on 2 CPU lanes" in laned.summary() and "lanes" not in single.summary()

    # resuming with one frame missing paints it again, the same (its keyframes' prompts encoded alone)
    threads(2)
    victim = sorted((tmp_path / "lanes").glob("*.png"))[-1]
    expected = victim.read_bytes()
    victim.unlink()
    again = render_missing(tiny_painter, plan, tmp_path / "lanes")
    assert again.rendered == 1 and victim.read_bytes() == expected


def test_a_plan_without_a_thread_count_paints_one_call_at_a_time(tiny_painter, tmp_path, threads):
    threads(2)
    plan = plan_scene("t", script(), painter_identity(tiny_painter), rows=2)  # a 0.4 cache's plan
    assert plan.threads is None and render_missing(tiny_painter, plan, tmp_path).lanes == 1
    fixed = plan_scene("t", script(), painter_identity(tiny_painter), rows=2, threads=1)
    assert {j.key for j in fixed.jobs}.isdisjoint(j.key for j in plan.jobs)  # other kernels, other keys


def test_only_painters_whose_calls_may_overlap_get_lanes(tiny_painter, threads):
    class Pipeline:  # a painter without the lean path's per-call scheduler
        plan = tiny_painter.plan

        def concurrent(self, params) -> bool:
            return False

    threads(2)
    assert cpu_lanes(Pipeline(), _params_of(64)) == 1
    assert cpu_lanes(tiny_painter, _params_of(64)) == 2


def _params(plan):
    from zoetrope.film.walk import walk_params

    return walk_params(plan.script, plan.width, plan.height)


def _params_of(size: int):
    from zoetrope.settings.params import PaintParams

    return PaintParams(width=size, height=size, steps=2)
