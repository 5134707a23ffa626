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
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from PIL import Image

from zoetrope.settings.loop import GuardSettings, LoopConfig

log = logging.getLogger(__name__)


def step_seed(base: int, step: int, attempt: int = 0) -> int:
    """A 31-bit seed per (run seed, step, attempt): stable, and unrelated for neighbouring steps or runs."""
    digest = hashlib.sha256(f"zoetrope/{base}/{step}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


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
    """A painted step, as the chain log records it (images as PIL objects; the writer names them)."""

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


class Chain:
    """Advances one chain: `next_step(image)` captions `image`, builds the prompt, and paints the next one."""

    def __init__(self, config: LoopConfig, captioner, painter, *, next_step: int = 1,
                 recent_captions: list[tuple[int, str]] = ()):
        self.config = config
        self.captioner = captioner
        self.painter = painter
        self.step_number = next_step
        self.guard = RepetitionGuard(config.guard, recent_captions)
        self._warned_truncation = False

    def run(self, image: Image.Image | None, until: int | None = None) -> Iterator[Step]:
        """Yield steps from `self.step_number` on, forever or through step `until`."""
        while until is None or self.step_number <= until:
            step = self.next_step(image)
            image = step.image
            yield step

    def next_step(self, image: Image.Image | None) -> Step:
        n, cfg = self.step_number, self.config
        started = time.perf_counter()
        seed = step_seed(cfg.seed, n)
        events: list[dict] = []
        caption = caption_params = None
        if image is None:  # step 1 of a prompt-started chain paints the start prompt itself
            prompt = cfg.start.prompt
        else:
            caption, caption_params, seed, word = self._caption(image, n, seed, events)
            prompt = cfg.prompt.build(caption if word is None else f"{caption}, {word}")
        caption_seconds = time.perf_counter() - started
        self._check_length(prompt, events)

        params = cfg.paint.params()
        drift = cfg.paint.mode == "drift" and image is not None
        painted = self.painter.paint(
            [prompt], params=params, seeds=[seed], negative_prompts=[cfg.prompt.negative],
            init_images=[image] if drift else None,
        )[0]
        if not drift:  # text-to-image: strength does not apply, so the record does not claim one
            params = params.__class__(**(params.as_log() | {"strength": None}))
        total = time.perf_counter() - started
        if caption is not None:
            self.guard.remember(n, caption)
        self.step_number += 1
        return Step(
            step=n, input_image=image, caption=caption, caption_params=caption_params, prompt=prompt,
            negative_prompt=cfg.prompt.negative, seed=seed, paint_params=params.as_log(), image=painted,
            seconds={"caption": round(caption_seconds, 4), "paint": round(total - caption_seconds, 4),
                     "total": round(total, 4)},
            events=events,
        )

    def _caption(self, image: Image.Image, n: int, seed: int, events: list[dict]):
        """Caption `image`; when the guard fires, perturb: sampled re-caption, fresh seed, lexicon word."""
        params = self.config.caption.params()
        caption = self.captioner.caption([image], params, seeds=[seed])[0]
        hit = self.guard.match(caption)
        if hit is None:
            return caption, params.as_log(), seed, None
        seed = step_seed(self.config.seed, n, attempt=1)
        params = self.config.caption.params(mode="sample")
        resampled = self.captioner.caption([image], params, seeds=[seed])[0]
        actions = ["sample_caption", "reseed"]
        word = None
        if self.guard.match(resampled) is not None:
            word = random.Random(seed).choice(self.config.guard.lexicon)
            actions.append(f"lexicon:{word}")
        events.append({
            "kind": "repetition_guard", "caption": caption, "similar_to_step": hit[0],
            "similarity": round(hit[1], 4), "actions": actions,
        })
        log.info("step %d: caption repeats step %d (%.2f); perturbing: %s", n, hit[0], hit[1], ", ".join(actions))
        return resampled, params.as_log(), seed, word

    def _check_length(self, prompt: str, events: list[dict]) -> None:
        """The text encoder reads a fixed number of tokens: the rest is cut, and the log says so."""
        tokens, limit = self.painter.count_tokens(prompt), self.painter.token_limit
        if tokens > limit:
            events.append({"kind": "prompt_truncated", "tokens": tokens, "limit": limit})
            if not self._warned_truncation:
                log.warning("prompt is %d tokens; the text encoder reads %d, so it is truncated", tokens, limit)
                self._warned_truncation = True
