"""Per-item kernels, so that an image does not depend on what else shares its batch.

Batched kernels are free to reorder float sums by batch size: on CPU, oneDNN picks another convolution
algorithm for some shapes and MKL computes one row with a GEMV but several with a GEMM; cuDNN and cuBLAS
choose kernels by shape too. Those differences are ~1e-6, but they reach the PNG as a level or two, and
`--chains K` promises each chain the images it would paint alone. Inside `active()`, every convolution,
linear layer and group norm of an installed model runs one item at a time (with the same strides a lone
item has); attention, layer norms and element-wise ops stay batched, since their kernels already work item
by item. `tests/test_per_item.py` checks the claim on the pipelines' own calls.

`install` only registers a model: its layers are wrapped the first time `active()` is entered, so a process
that never makes a per-item call (a film render: walks pad every call to a fixed batch instead) runs the
models' own forwards, with no wrapper in any layer. Once wrapped, a layer outside `active()` runs its own
forward unchanged. `batched()` turns `active()` off for walls that prefer speed (`--chains-exact off`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

# Module globals, not thread-locals: torch.compile can guard on them, and a model serves one call at a time.
_enabled = False
_items: int | None = None
_suspended = False  # inside batched(): active() splits nothing
_registered: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # installed, not yet wrapped

SPLIT_LAYERS = (nn.Conv2d, nn.Linear, nn.GroupNorm)


@contextmanager
def active(items: int | None = None) -> Iterator[None]:
    """Split layer inputs by item. By default every row is an item (classifier-free guidance interleaves an
    item's rows, so nothing coarser is safe); with `items=k`, each input is k equal runs of consecutive rows,
    as in beam search, where an image's beams stay together and a lone image's call is not split at all."""
    global _enabled, _items
    if _suspended:
        yield
        return
    _wrap_registered()
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


@contextmanager
def batched() -> Iterator[None]:
    """Plain batched kernels even inside `active()`: for `--chains K --chains-exact off`, where a wall takes
    the speed of one batched forward over the promise that each chain paints what it would alone."""
    global _suspended
    previous, _suspended = _suspended, True
    try:
        yield
    finally:
        _suspended = previous


def install(model: nn.Module) -> None:
    """Register `model` for per-item calls (idempotent); its layers are wrapped when `active()` is first
    entered, not now, so models that never make a per-item call keep their own forwards."""
    _registered.add(model)


def is_wrapped(model: nn.Module) -> bool:
    """Whether any layer of `model` carries the per-item wrapper."""
    return any(hasattr(m.forward, "__wrapped__") for m in model.modules() if isinstance(m, SPLIT_LAYERS))


def _wrap_registered() -> None:
    """Wrap each SPLIT_LAYERS layer of every registered model (idempotent), then forget the models."""
    for model in list(_registered):
        for module in model.modules():
            if isinstance(module, SPLIT_LAYERS) and not hasattr(module.forward, "__wrapped__"):
                module.forward = _split_forward(module.forward)
        _registered.discard(model)
