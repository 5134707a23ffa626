"""Per-item kernels, so that an image does not depend on what else shares its batch.

Batched kernels are free to reorder float sums by batch size: on CPU, oneDNN picks another convolution
algorithm for some shapes and MKL computes one row with a GEMV but several with a GEMM; cuDNN and cuBLAS
choose kernels by shape too. Those differences are ~1e-6, but they reach the PNG as a level or two, and
`--chains K` promises each chain the images it would paint alone. Inside `active()`, every convolution,
linear layer and group norm of an installed model runs one item at a time (with the same strides a lone
item has); attention, layer norms and element-wise ops stay batched, since their kernels already work item
by item. `tests/test_per_item.py` checks the claim on the pipelines' own calls.
Outside it (film walks, which pad every call to a fixed batch instead) nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

# Module globals, not thread-locals: torch.compile can guard on them, and a model serves one call at a time.
_enabled = False
_items: int | None = None

SPLIT_LAYERS = (nn.Conv2d, nn.Linear, nn.GroupNorm)


@contextmanager
def active(items: int | None = None) -> Iterator[None]:
    """Split layer inputs by item. By default every row is an item (classifier-free guidance interleaves an
    item's rows, so nothing coarser is safe); with `items=k`, each input is k equal runs of consecutive rows,
    as in beam search, where an image's beams stay together and a lone image's call is not split at all."""
    global _enabled, _items
    previous = _enabled, _items
    _enabled, _items = True, items
    try:
        yield
    finally:
        _enabled, _items = previous


def _split_forward(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    def run(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not _enabled or x.dim() < 2:
            return forward(x, *args, **kwargs)
        rows = x.shape[0]
        size = rows // _items if _items and rows % _items == 0 else 1
        if size == rows:
            return forward(_one(x) if rows == 1 else x, *args, **kwargs)
        if size == 1:
            return torch.cat([forward(_one(x[i:i + 1]), *args, **kwargs) for i in range(rows)])
        return torch.cat([forward(x[i:i + size], *args, **kwargs) for i in range(0, rows, size)])

    run.__wrapped__ = forward  # type: ignore[attr-defined]
    return run


def _one(item: torch.Tensor) -> torch.Tensor:
    """The item with its batch stride set to its size: a lone image and a batch's slice then look alike to
    kernels that pick a path from the strides (CPU GroupNorm does, for channels-last input)."""
    return item.as_strided(item.shape, (item.numel(), *item.stride()[1:]))


def install(model: nn.Module) -> None:
    """Wrap each layer of `model` that is one of SPLIT_LAYERS (idempotent)."""
    for module in model.modules():
        if isinstance(module, SPLIT_LAYERS) and not hasattr(module.forward, "__wrapped__"):
            module.forward = _split_forward(module.forward)
