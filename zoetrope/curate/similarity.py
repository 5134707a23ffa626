"""How far a chain drifts: caption-to-caption and image-to-image similarity, each naming its method.

Captions: a sentence-embedding model (mean pooling over tokens, as sentence-transformers does for
all-MiniLM-L6-v2), or the painter's own text encoder, or word overlap (the repetition guard's measure).
Images: cosine similarity of the painter's VAE latents, or the correlation of small RGB thumbnails.
Every embedder carries a `method` string that the report prints, so nobody mistakes one measure for another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass
class Measure:
    """A similarity in [-1, 1] (1 = same) between two items, and the words that say how it was computed."""

    method: str
    embed: Callable[[list], list] | None  # items -> one vector each, compared by cosine
    pairwise: Callable[[Any, Any], float] | None = None  # or a direct comparison of two items


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return 0.0 if na == 0 or nb == 0 else float(np.dot(a, b) / (na * nb))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token embeddings averaged over real tokens (sentence-transformers' pooling for MiniLM)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def sentence_embedder(model, tokenizer, name: str) -> Measure:
    @torch.inference_mode()
    def embed(texts: list[str]) -> list[np.ndarray]:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        hidden = model(**batch).last_hidden_state
        return list(mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy())

    return Measure(f"sentence embeddings ({name}, mean pooling, cosine)", embed)


def painter_text_embedder(painter) -> Measure:
    """The painter's text encoder (what the painter actually 'reads'), pooled over the prompt's real tokens."""
    tokenizer = painter.text2img.tokenizer

    def embed(texts: list[str]) -> list[np.ndarray]:
        hidden = painter.encode(texts, None, 0.0)["prompt_embeds"].float().cpu()
        mask = tokenizer(texts, padding="max_length", max_length=hidden.shape[1], truncation=True,
                         return_tensors="pt").attention_mask
        return list(mean_pool(hidden, mask).numpy())

    return Measure(f"the painter's text encoder ({painter.ref.id}, mean pooling, cosine)", embed)


def word_overlap() -> Measure:
    """No model at all: the repetition guard's word-sequence ratio of two captions."""
    from zoetrope.loop.chain import caption_similarity

    return Measure("word overlap (difflib ratio on words, the repetition guard's measure)", None, caption_similarity)


def vae_embedder(painter, size: int = 256) -> Measure:
    """Mean of the VAE posterior, flattened: the painter's own view of the picture's layout and colour."""
    vae = painter.text2img.vae

    def embed(images: list[Image.Image]) -> list[np.ndarray]:
        out = []
        for image in images:
            small = image.convert("RGB").resize((size, size), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(small, np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
            with torch.inference_mode():
                latent = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean
            out.append(latent.float().cpu().numpy().ravel())
        return out

    return Measure(f"the painter's VAE latents ({painter.ref.id}, {size}px, cosine)", embed)


def pixel_embedder(size: int = 32) -> Measure:
    """Zero-mean RGB thumbnails: cosine of these is Pearson correlation of the pixels."""

    def embed(images: list[Image.Image]) -> list[np.ndarray]:
        out = []
        for image in images:
            v = np.asarray(image.convert("RGB").resize((size, size), Image.BOX), np.float64).ravel()
            out.append(v - v.mean())
        return out

    return Measure(f"pixel statistics (correlation of {size}x{size} RGB thumbnails)", embed)


def series(measure: Measure, items: list) -> tuple[list[float | None], list[float | None]]:
    """Similarity of each item to the previous one and to the first; None where an item is None."""
    present = [i for i, item in enumerate(items) if item is not None]
    if measure.pairwise is not None:
        pairwise = measure.pairwise

        def sim(i: int, j: int) -> float:
            return pairwise(items[i], items[j])
    else:
        vectors = dict(zip(present, measure.embed([items[i] for i in present]), strict=True)) if present else {}

        def sim(i: int, j: int) -> float:
            return cosine(vectors[i], vectors[j])
    to_previous: list[float | None] = []
    to_start: list[float | None] = []
    for i, item in enumerate(items):
        ok = item is not None
        to_previous.append(sim(i, i - 1) if ok and i > 0 and items[i - 1] is not None else None)
        to_start.append(sim(i, 0) if ok and items[0] is not None else None)
    return to_previous, to_start
