"""The content policy: blocklist matching, and a blocked step re-seeded or skipped, logged, never committed."""

from __future__ import annotations

import pytest

from tests.fakes import FakeCaptioner
from tests.gallery_helpers import config, make_runner
from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.loop.care.policy import Blocklist, ContentPolicy, load_policy
from zoetrope.loop.chainlog import read_chain
from zoetrope.loop.runner import Extras, StepFailed
from zoetrope.settings.loop import LoopConfig, PolicySettings


def test_blocklist_matches_whole_words_and_phrases_in_any_case_and_script():
    b = Blocklist(["gore", "Dead Body", "دم", "血"])
    assert b.find("A scene of GORE at dusk") == "GORE"
    assert b.find("a dead   body in the river") == "dead   body"
    assert b.find("gorest and goretex") is None and b.find("a body, dead") is None
    assert b.find("منظر دم في الليل") == "دم"
    assert b.find("红色的血") is None  # no word boundary inside CJK text: whole words only, by design
    assert b.find("血 and water") == "血"
    assert Blocklist([]).find("anything") is None and b.find(None) is None


def test_blocklist_file_is_read_and_a_missing_one_is_an_error(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# the curator's list\nknife  # sharp things\n\nwar\n", encoding="utf-8")
    policy = load_policy(PolicySettings(blocklist=["blood"], blocklist_file=str(path)))
    assert policy.blocklist.terms == ["blood", "knife", "war"]
    with pytest.raises(UserError, match="blocklist_file: cannot read"):
        load_policy(PolicySettings(blocklist_file=str(tmp_path / "missing.txt")))


def test_the_safety_checker_without_its_weights_is_a_clear_error(tmp_path):
    settings = PolicySettings(safety_checker=True, safety_checker_model=str(tmp_path / "no-such-checker"))
    with pytest.raises(ModelLoadError, match="policy.safety_checker: cannot load"):
        load_policy(settings)


def scripted_captioner():
    """Beam captions always name a blocked word; sampled captions do not."""
    def script(key, mode, seed):
        return "a knife on a table" if mode == "beam" else f"a quiet garden number {seed}"
    return FakeCaptioner(script=script)


def policy_for(cfg: LoopConfig, checker=None) -> Extras:
    return Extras(policy=ContentPolicy(Blocklist(cfg.policy.blocklist), checker))


def test_a_blocked_caption_is_reseeded_with_a_sampled_caption_and_logged(tmp_path):
    cfg = config(policy={"blocklist": ["knife"]}, guard={"enabled": True, "window": 4})
    runner, painter, captioner, _ = make_runner(tmp_path / "c", cfg, captioner=scripted_captioner(),
                                                extras=policy_for(cfg))
    assert runner.run(None, None, None, until=3) == 3
    steps = read_chain(tmp_path / "c").steps
    for step in steps[1:]:
        assert "knife" not in step["caption"] and "knife" not in step["prompt"]
        assert step["caption_params"]["mode"] == "sample"
        event = step["events"][0]
        assert event["kind"] == "policy_blocked" and event["where"] == "prompt" and event["term"] == "knife"
    # the blocked prompt was never painted, and the guard never remembered the blocked caption
    assert not any("knife" in call["prompts"][0] for call in painter.calls)
    assert all("knife" not in c for _, c in runner.chain.recent_captions)


def test_a_step_blocked_every_time_skips_to_the_start_prompt(tmp_path):
    cfg = config(policy={"blocklist": ["knife", "garden"], "max_attempts": 2})
    runner, painter, _, _ = make_runner(tmp_path / "c", cfg, captioner=scripted_captioner(), extras=policy_for(cfg))
    assert runner.run(None, None, None, until=2) == 2
    step2 = read_chain(tmp_path / "c").steps[1]
    assert step2["caption"] is None and step2["prompt"] == cfg.start.prompt and step2["input_image"] is None
    kinds = [(e["kind"], e.get("action")) for e in step2["events"]]
    assert kinds == [("policy_blocked", None), ("policy_blocked", "skip_to_start")]


def test_on_block_skip_goes_to_the_start_at_once(tmp_path):
    cfg = config(policy={"blocklist": ["knife"], "on_block": "skip"})
    runner, *_ = make_runner(tmp_path / "c", cfg, captioner=scripted_captioner(), extras=policy_for(cfg))
    assert runner.run(None, None, None, until=3) == 3
    steps = read_chain(tmp_path / "c").steps
    assert [s["caption"] for s in steps] == [None, None, None]
    assert [len(s["events"]) for s in steps] == [0, 1, 1]


def test_the_image_checker_blocks_and_a_policy_that_blocks_everything_exits(tmp_path):
    cfg = config(policy={"max_attempts": 2})
    calls = []

    def checker(images):
        calls.append(images[0].size)
        return [True]

    runner, *_ = make_runner(tmp_path / "c", cfg, extras=policy_for(cfg, checker))
    with pytest.raises(StepFailed, match="content policy blocked 4 attempts"):
        runner.run(None, None, None, until=2)
    assert read_chain(tmp_path / "c").steps == [] and len(calls) == 4
    assert not list((tmp_path / "c").glob("step-*.png"))


def test_policy_config_rejects_bad_values():
    with pytest.raises(ValueError):
        LoopConfig.model_validate({"policy": {"on_block": "hide"}})
    with pytest.raises(ValueError):
        LoopConfig.model_validate({"policy": {"blocklist": [""]}})


def test_a_start_prompt_the_policy_blocks_is_an_error(tmp_path):
    from zoetrope.loop.run import gallery_extras

    cfg = config(start={"prompt": "a knife on a table"}, policy={"blocklist": ["Knife"]})
    with pytest.raises(UserError, match="start.prompt: contains the blocked term 'knife'"):
        gallery_extras(cfg, tmp_path / "c")
    assert not (tmp_path / "c").exists()
