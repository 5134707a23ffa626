"""The caption <-> paint cycle (after Chatonsky's *Counterfeits*) and its repetition guard. No file I/O:
it yields finished steps; the caller makes them durable.

Step n paints image n. With a start prompt, step 1 paints that prompt (it has no caption); with a start
image, step 1 captions it. Every seed derives from the run's base seed and the step number, and the guard
remembers only captions that were logged, so a resumed chain continues exactly as if never stopped.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

from PIL import Image

from zoetrope.settings.loop import GuardSettings, LoopConfig

if TYPE_CHECKING:
    from zoetrope.stages.protocols import CaptionerLike, PainterLike

log = logging.getLogger(__name__)

RESEED_ATTEMPT_BASE = 1000  # re-seeded attempts draw from step_seed(seed, n, 1000 + k): no clash with the guard's


def step_seed(base: int, step: int, attempt: int = 0) -> int:
    """A 31-bit seed per (run seed, step, attempt): stable, and unrelated for neighbouring steps or runs."""
    digest = hashlib.sha256(f"zoetrope/{base}/{step}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def attempt_base(seed: int, step: int, attempt: int) -> int:
    """The base seed of a step's attempt: the run's own for the first, a fresh one for each re-seeded retry."""
    return seed if attempt == 0 else step_seed(seed, step, RESEED_ATTEMPT_BASE + attempt)


_WORD = re.compile(r"\w+", re.UNICODE)


def caption_similarity(a: str, b: str) -> float:
    """Word-sequence similarity in [0, 1] (difflib's ratio on lower-cased words, punctuation ignored)."""
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    if not wa and not wb:
        return 1.0
    return SequenceMatcher(None, wa, wb, autojunk=False).ratio()


class RepetitionGuard:
    """Spots a caption that repeats, or nearly repeats, one of the last K logged captions."""

    def __init__(self, settings: GuardSettings, recent: list[tuple[int, str]] = ()):
        self.settings = settings
        self.recent: deque[tuple[int, str]] = deque(recent, maxlen=settings.window)

    def match(self, caption: str) -> tuple[int, float] | None:
        """(step, similarity) of the most similar recent caption at or above the threshold."""
        if not self.settings.enabled:
            return None
        best = max(((s, caption_similarity(caption, c)) for s, c in self.recent), key=lambda x: x[1], default=None)
        return best if best and best[1] >= self.settings.threshold else None

    def remember(self, step: int, caption: str) -> None:
        self.recent.append((step, caption))


@dataclass
class Step:
    """A painted step, as the chain log records it (images as PIL objects; the writer names them).

    `attempt` counts the re-seeded attempts the runner made before this one (0: the first try);
    `recaptioned` and `appended_word` say what the repetition guard did: re-captioned with sampling under a
    fresh seed, and appended a lexicon word to the caption before the prompt template."""

    step: int
    input_image: Image.Image | None
    caption: str | None
    caption_params: dict | None
    prompt: str
    negative_prompt: str
    seed: int
    paint_params: dict
    image: Image.Image
    seconds: dict[str, float]
    events: list[dict] = field(default_factory=list)
    attempt: int = 0
    recaptioned: bool = False
    appended_word: str | None = None


class Chain:
    """Owns the step: `attempt(image)` makes a candidate for the current step without changing the chain;
    `accept(step)` keeps it (the guard remembers its caption, the step number advances). A caller that
    rejects a candidate (a black image, a blocked prompt) just asks for another attempt.
    """

    def __init__(self, config: LoopConfig, captioner: CaptionerLike, painter: PainterLike, *, next_step: int = 1,
                 recent_captions: list[tuple[int, str]] = ()):
        self.config = config
        self.captioner = captioner
        self.painter = painter
        self._step_number = next_step
        self._guard = RepetitionGuard(config.guard, recent_captions)
        self._warned_truncation = False

    @property
    def step_number(self) -> int:
        """The step that the next attempt paints."""
        return self._step_number

    @property
    def recent_captions(self) -> list[tuple[int, str]]:
        """(step, caption) pairs the guard compares with, oldest first."""
        return list(self._guard.recent)

    def run(self, image: Image.Image | None, until: int | None = None) -> Iterator[Step]:
        """Yield accepted steps from `step_number` on, forever or through step `until`."""
        while until is None or self._step_number <= until:
            step = self.next_step(image)
            image = step.image
            yield step

    def next_step(self, image: Image.Image | None) -> Step:
        """The first attempt at the current step, accepted."""
        step = self.attempt(image)
        self.accept(step)
        return step

    def accept(self, step: Step) -> None:
        """Keep `step` as the current step: the guard remembers its caption and the chain moves on."""
        if step.step != self._step_number:
            raise ValueError(f"`step` is an attempt at step {step.step} but the chain is at step {self._step_number}.")
        if step.caption is not None:
            self._guard.remember(step.step, step.caption)
        self._step_number += 1

    def attempt(self, image: Image.Image | None, *, attempt: int = 0, sample_caption: bool = False,
                size: tuple[int, int] | None = None) -> Step:
        """Caption `image`, build the prompt and paint a candidate for the current step; the chain is unchanged.

        `attempt` k > 0 re-seeds the step from `step_seed(seed, n, RESEED_ATTEMPT_BASE + k)`; `sample_caption`
        captions by sampling (a beam caption is the same whatever the seed); `size` paints smaller (after an
        out-of-memory error). The first attempt with none of these is what an undisturbed chain paints.
        """
        n, cfg = self._step_number, self.config
        base = attempt_base(cfg.seed, n, attempt)
        started = time.perf_counter()
        seed = step_seed(base, n)
        events: list[dict] = []
        caption = caption_params = word = None
        recaptioned = False
        if image is None:  # step 1 of a prompt-started chain paints the start prompt itself
            prompt = cfg.start.prompt
        else:
            mode = "sample" if sample_caption else None
            caption, caption_params, seed, recaptioned, word = self._caption(image, n, base, seed, mode, events)
            prompt = cfg.prompt.build(caption if word is None else f"{caption}, {word}")
        caption_seconds = time.perf_counter() - started
        self._check_length(prompt, events)

        params = cfg.paint.params()
        if size is not None:
            params = replace(params, width=size[0], height=size[1])
        drift = cfg.paint.mode == "drift" and image is not None
        painted = self.painter.paint(
            [prompt], params=params, seeds=[seed], negative_prompts=[cfg.prompt.negative],
            init_images=[image] if drift else None,
        )[0]
        if not drift:  # text-to-image: strength does not apply, so the record does not claim one
            params = replace(params, strength=None)
        total = time.perf_counter() - started
        return Step(
            step=n, input_image=image, caption=caption, caption_params=caption_params, prompt=prompt,
            negative_prompt=cfg.prompt.negative, seed=seed, paint_params=params.as_log(), image=painted,
            seconds={"caption": round(caption_seconds, 4), "paint": round(total - caption_seconds, 4),
                     "total": round(total, 4)},
            events=events, attempt=attempt, recaptioned=recaptioned, appended_word=word,
        )

    def _caption(self, image: Image.Image, n: int, base: int, seed: int, mode: str | None, events: list[dict]):
        """Caption `image`; when the guard fires, perturb: sampled re-caption, fresh seed, lexicon word.
        Returns (caption, caption params, seed, recaptioned, appended word)."""
        params = self.config.caption.params(**({"mode": mode} if mode else {}))
        caption = self.captioner.caption([image], params, seeds=[seed])[0]
        hit = self._guard.match(caption)
        if hit is None:
            return caption, params.as_log(), seed, False, None
        seed = step_seed(base, n, attempt=1)
        params = self.config.caption.params(mode="sample")
        resampled = self.captioner.caption([image], params, seeds=[seed])[0]
        word = None
        if self._guard.match(resampled) is not None:
            word = random.Random(seed).choice(self.config.guard.lexicon)
        events.append({"kind": "repetition_guard", "caption": caption, "similar_to_step": hit[0],
                       "similarity": round(hit[1], 4)})
        log.info("step %d: caption repeats step %d (%.2f); re-captioned by sampling under a fresh seed%s", n, hit[0],
                 hit[1], f", appended {word!r}" if word else "")
        return resampled, params.as_log(), seed, True, word

    def _check_length(self, prompt: str, events: list[dict]) -> None:
        """The text encoder reads a fixed number of tokens: the rest is cut, and the log says so."""
        tokens, limit = self.painter.count_tokens(prompt), self.painter.token_limit
        if tokens > limit:
            events.append({"kind": "prompt_truncated", "tokens": tokens, "limit": limit})
            if not self._warned_truncation:
                log.warning("prompt is %d tokens; the text encoder reads %d, so it is truncated", tokens, limit)
                self._warned_truncation = True
