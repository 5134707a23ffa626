"""Retention: keep the last N, thin older steps to every k-th, stay under a size; never the log or the last image."""

from __future__ import annotations

import pytest

from tests.gallery_helpers import config, make_runner
from zoetrope.loop.care.retention import apply_retention, plan_deletions, step_images
from zoetrope.loop.chainlog import read_chain
from zoetrope.settings.loop import LoopConfig, RetentionSettings


def sizes(n: int, each: int = 100) -> dict[int, int]:
    return {s: each for s in range(1, n + 1)}


def test_keep_last():
    assert plan_deletions(sizes(10), 10, RetentionSettings(keep_last=3)) == [1, 2, 3, 4, 5, 6, 7]


def test_thin_older_steps_to_every_kth():
    assert plan_deletions(sizes(20), 20, RetentionSettings(keep_last=5, thin_every=4)) == [
        1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15]


def test_size_cap_removes_the_oldest_but_never_the_last():
    assert plan_deletions(sizes(10, 400_000_000), 10, RetentionSettings(max_gb=1.0)) == list(range(1, 9))
    assert plan_deletions({10: 5 * 10**9}, 10, RetentionSettings(max_gb=1.0)) == []
    # thinning first (5, 10 survive beside 11, 12), then the cap takes the oldest survivors
    plan = plan_deletions(sizes(12, 300_000_000), 12, RetentionSettings(keep_last=2, thin_every=5, max_gb=1.0))
    assert [s for s in range(1, 13) if s not in plan] == [10, 11, 12]


def test_no_policy_deletes_nothing(tmp_path):
    assert plan_deletions(sizes(5), 5, RetentionSettings()) == []
    assert apply_retention(tmp_path, 5, RetentionSettings()) == []


def test_thin_every_needs_keep_last():
    with pytest.raises(ValueError, match="thin_every needs keep_last"):
        LoopConfig.model_validate({"retention": {"thin_every": 3}})


def test_the_runner_applies_retention_and_keeps_every_log_line(tmp_path):
    cfg = config(retention={"keep_last": 3, "thin_every": 4, "check_every": 5})
    runner, *_ = make_runner(tmp_path / "c", cfg)
    assert runner.run(None, None, None, until=12) == 12
    chain = read_chain(tmp_path / "c")
    assert [s["step"] for s in chain.steps] == list(range(1, 13))  # every line stays
    # checked at step 10: 1..7 thinned to 4; steps 8..12 not yet considered
    assert sorted(step_images(tmp_path / "c")) == [4, 8, 9, 10, 11, 12]
    apply_retention(tmp_path / "c", 12, cfg.retention)
    assert sorted(step_images(tmp_path / "c")) == [4, 8, 10, 11, 12]
    assert (tmp_path / "c" / "chain.jsonl").stat().st_size > 0
