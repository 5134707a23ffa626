"""The caption <-> paint cycle on fakes: order, seeds, modes, and the repetition guard."""

from itertools import pairwise

import numpy as np
import pytest
from PIL import Image

from tests.fakes import FakeCaptioner, FakePainter
from zoetrope.loop.chain import Chain, RepetitionGuard, caption_similarity, step_seed
from zoetrope.settings.loop import GuardSettings, LoopConfig


def config(**changes) -> LoopConfig:
    base = {"seed": 11, "paint": {"width": 64, "height": 64}, "prompt": {"suffix": ", oil"}}
    return LoopConfig.model_validate(base | changes)


def grey(value: int = 128) -> Image.Image:
    return Image.fromarray(np.full((64, 64, 3), value, np.uint8))


def test_step_seed_is_stable_and_distinct():
    assert step_seed(11, 3) == step_seed(11, 3)
    seeds = {step_seed(11, n) for n in range(1, 200)} | {step_seed(12, 1), step_seed(11, 1, attempt=1)}
    assert len(seeds) == 201 and all(0 <= s < 2**31 for s in seeds)


def test_prompt_start_paints_the_prompt_then_captions_each_image_in_order():
    captioner, painter = FakeCaptioner(), FakePainter()
    steps = list(Chain(config(), captioner, painter).run(None, until=4))
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert steps[0].caption is None and steps[0].prompt == LoopConfig().start.prompt
    # step n captions image n-1 and paints its caption with the suffix, seeded by (base seed, n)
    for previous, step in pairwise(steps):
        assert step.input_image is previous.image
        assert step.prompt == f"{step.caption}, oil"
        assert step.seed == step_seed(11, step.step)
    assert [c["seeds"][0] for c in painter.calls] == [step_seed(11, n) for n in range(1, 5)]
    assert all(c["init"] is None and c["params"].strength is None for c in painter.calls)
    assert len(captioner.calls) == 3


def test_image_start_captions_the_start_image_first():
    captioner, painter = FakeCaptioner(), FakePainter()
    start = grey(40)
    first = next(Chain(config(), captioner, painter).run(start, until=1))
    assert first.caption is not None and first.input_image is start


def test_drift_mode_paints_image_to_image_with_strength():
    painter = FakePainter()
    cfg = config(paint={"mode": "drift", "strength": 0.4, "steps": 4, "width": 64, "height": 64})
    steps = list(Chain(cfg, FakeCaptioner(), painter).run(None, until=3))
    assert painter.calls[0]["init"] is None  # the start prompt has no image to drift from
    assert painter.calls[1]["init"] is not None and painter.calls[1]["params"].strength == 0.4
    assert steps[2].paint_params["strength"] == 0.4 and steps[0].paint_params["strength"] is None


def test_chain_is_deterministic():
    a = [s.image.tobytes() for s in Chain(config(), FakeCaptioner(), FakePainter()).run(None, until=5)]
    b = [s.image.tobytes() for s in Chain(config(), FakeCaptioner(), FakePainter()).run(None, until=5)]
    assert a == b


def test_guard_fires_on_a_scripted_attractor_and_perturbs():
    # Beam captions always fall into the same motif; sampled captions vary with the seed.
    def attractor(key, mode, seed):
        return "a man standing in a field" if mode == "beam" else f"a lighthouse number {seed}"

    captioner, painter = FakeCaptioner(attractor), FakePainter()
    steps = list(Chain(config(), captioner, painter).run(None, until=5))
    assert steps[1].events == []  # first occurrence is not a repeat
    fired = steps[2].events
    assert fired and fired[0]["kind"] == "repetition_guard" and fired[0]["similar_to_step"] == 2
    assert fired[0]["caption"] == "a man standing in a field" and fired[0]["similarity"] == 1.0
    assert steps[2].recaptioned and steps[2].appended_word is None and steps[2].attempt == 0
    assert not steps[1].recaptioned
    assert steps[2].seed == step_seed(11, 3, attempt=1) and steps[2].caption_params["mode"] == "sample"
    assert steps[2].caption == f"a lighthouse number {step_seed(11, 3, attempt=1)}"


def test_guard_adds_a_lexicon_word_when_sampling_repeats_too():
    captioner = FakeCaptioner(lambda key, mode, seed: "a man standing in a field")
    cfg = config(guard={"lexicon": ["orchard"]})
    steps = list(Chain(cfg, captioner, FakePainter()).run(None, until=3))
    assert steps[2].recaptioned and steps[2].appended_word == "orchard"
    assert steps[2].prompt == "a man standing in a field, orchard, oil"


def test_guard_disabled_never_fires():
    captioner = FakeCaptioner(lambda key, mode, seed: "the same caption")
    steps = list(Chain(config(guard={"enabled": False}), captioner, FakePainter()).run(None, until=4))
    assert all(s.events == [] for s in steps)


def test_guard_window_forgets_old_captions():
    guard = RepetitionGuard(GuardSettings(window=2, threshold=0.9), [(1, "a red boat"), (2, "x y z"), (3, "q r s")])
    assert guard.match("a red boat") is None
    assert guard.match("x y z") == (2, 1.0)


def test_caption_similarity_ignores_case_and_punctuation():
    assert caption_similarity("A cat, on a mat.", "a cat on a mat") == 1.0
    assert caption_similarity("a cat on a mat", "a dog in the sea") < 0.5
    assert 0.8 < caption_similarity("a cat sitting on a mat", "a cat sitting on the mat") < 1.0


def test_long_prompt_is_truncated_with_an_event():
    captioner = FakeCaptioner(lambda key, mode, seed: " ".join(["word"] * 120))
    steps = list(Chain(config(), captioner, FakePainter()).run(None, until=2))
    assert steps[1].events == [{"kind": "prompt_truncated", "tokens": 123, "limit": 77}]


def test_resumed_chain_continues_exactly():
    whole = list(Chain(config(), FakeCaptioner(), FakePainter()).run(None, until=6))
    recent = [(s.step, s.caption) for s in whole[:3] if s.caption]
    rest = list(Chain(config(), FakeCaptioner(), FakePainter(), next_step=4, recent_captions=recent).run(whole[2].image, until=6))
    assert [(s.step, s.caption, s.seed, s.image.tobytes()) for s in rest] == [
        (s.step, s.caption, s.seed, s.image.tobytes()) for s in whole[3:]
    ]


def test_an_attempt_changes_nothing_until_it_is_accepted():
    captioner = FakeCaptioner(lambda key, mode, seed: "a man standing in a field")
    chain = Chain(config(guard={"lexicon": ["orchard"]}), captioner, FakePainter())
    first = chain.next_step(None)
    second = chain.next_step(first.image)
    rejected = chain.attempt(second.image, attempt=1)
    assert chain.step_number == 3 and chain.recent_captions == [(2, "a man standing in a field")]
    again = chain.attempt(second.image, attempt=1)
    assert again.seed == rejected.seed and again.prompt == rejected.prompt  # a retry is the same attempt
    assert chain.attempt(second.image).seed != rejected.seed  # another attempt number, another seed
    chain.accept(again)
    assert chain.step_number == 4 and chain.recent_captions[-1] == (3, again.caption)
    with pytest.raises(ValueError, match="attempt at step 3 but the chain is at step 4"):
        chain.accept(rejected)


def test_attempt_options_sample_the_caption_and_shrink_the_painting():
    captioner = FakeCaptioner(lambda key, mode, seed: f"{mode} caption")
    chain = Chain(config(), captioner, FakePainter())
    first = chain.next_step(None)
    step = chain.attempt(first.image, attempt=2, sample_caption=True, size=(32, 48))
    assert step.caption == "sample caption" and step.attempt == 2
    assert (step.paint_params["width"], step.paint_params["height"]) == (32, 48)
