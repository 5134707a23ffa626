"""The curator's content policy: a word blocklist on captions and prompts, and (optionally) diffusers'
StableDiffusionSafetyChecker on the painted image. A blocked step is never committed, so never shown;
the runner re-seeds or skips it and logs an event on the step that replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.settings.loop import PolicySettings


class Blocklist:
    """Whole-word, case-insensitive matching of words and phrases (any Unicode script)."""

    def __init__(self, terms: Sequence[str]):
        self.terms = [t.strip() for t in terms if t.strip()]
        if self.terms:
            parts = sorted((r"\s+".join(map(re.escape, t.split())) for t in self.terms), key=len, reverse=True)
            self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE | re.UNICODE)
        else:
            self._pattern = None

    def find(self, text: str | None) -> str | None:
        """The first blocked term in `text`, as written there, or None."""
        if not text or self._pattern is None:
            return None
        match = self._pattern.search(text)
        return match.group(0) if match else None


class PromptBlocked(Exception):
    """Raised by GuardedPainter instead of painting a prompt with a blocked term."""

    def __init__(self, term: str):
        super().__init__(f"blocked term {term!r}")
        self.term = term


class GuardedPainter:
    """A painter that refuses blocked prompts (the prompt holds the caption, so both are checked)."""

    def __init__(self, painter, blocklist: Blocklist):
        self._painter, self._blocklist = painter, blocklist

    def paint(self, prompts, **kwargs):
        for prompt in prompts:
            term = self._blocklist.find(prompt)
            if term is not None:
                raise PromptBlocked(term)
        return self._painter.paint(prompts, **kwargs)

    def __getattr__(self, name):
        return getattr(self._painter, name)


def read_blocklist_file(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"policy.blocklist_file: cannot read {path} ({exc})") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


class SafetyChecker:
    """diffusers' StableDiffusionSafetyChecker: True for each image it flags."""

    def __init__(self, model, processor, device: str, dtype):
        self.model, self.processor, self.device, self.dtype = model, processor, device, dtype

    def __call__(self, images: list[Image.Image]) -> list[bool]:
        import torch

        clip = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        arrays = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
        with torch.no_grad():
            _, flagged = self.model(images=arrays, clip_input=clip)
        return [bool(f) for f in flagged]


@dataclass
class ContentPolicy:
    blocklist: Blocklist
    image_checker: Callable[[list[Image.Image]], list[bool]] | None = None

    def check(self, caption: str | None, prompt: str, image: Image.Image) -> dict | None:
        """None when the step may be shown, else what blocked it (for the event)."""
        for where, text in (("caption", caption), ("prompt", prompt)):
            term = self.blocklist.find(text)
            if term is not None:
                return {"where": where, "term": term}
        if self.image_checker is not None and self.image_checker([image])[0]:
            return {"where": "image", "term": "safety_checker"}
        return None


def load_policy(settings: PolicySettings, device: str | None = None, dtype=None, base: Path = Path(".")) -> ContentPolicy:
    """Build the policy; a blocklist file that cannot be read, or checker weights that cannot be loaded when
    the policy asks for them, is an error (never a silent skip)."""
    terms = list(settings.blocklist)
    if settings.blocklist_file:
        path = Path(settings.blocklist_file)
        terms += read_blocklist_file(path if path.is_absolute() else base / path)
    checker = None
    if settings.safety_checker:
        from zoetrope.stages.models import load_safety_checker

        model, processor = load_safety_checker(settings.safety_checker_model, device or "cpu", dtype)
        checker = SafetyChecker(model, processor, device or "cpu", model.dtype)
    return ContentPolicy(Blocklist(terms), checker)
