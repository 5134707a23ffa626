"""K independent chains advanced together (`loop --chains K`, for multi-screen walls).

Each chain runs its own unchanged Chain/Runner/ChainWriter in a thread, with its own log and seeds; the
models are shared through a gate that waits until every live chain has made its next model call, then runs
the compatible calls as one batched forward. Noise comes from per-item CPU generators and the layers whose
kernels depend on the batch run item by item (per_item.py), so chain k's captions and images are exactly
those of running it alone with seed `seed + k - 1`. With `exact=False` (`--chains-exact off`) the batched
forwards use plain batched kernels: faster (bench/chains_exact.py), the same chains up to float reordering,
which `replay verify` then judges by PSNR (each header's `wall` says which).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Call:
    key: Hashable
    payload: Any
    run: Callable[[list[Any]], list[Any]]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class BatchGate:
    """Holds each model call until every live member is waiting, then dispatches them grouped by key."""

    members: int
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _pending: list[_Call] = field(default_factory=list)

    def leave(self) -> None:
        """A member that finished (or failed) stops being waited for."""
        with self._cv:
            self.members -= 1
            self._dispatch_if_ready()

    def submit(self, key: Hashable, payload: Any, run: Callable[[list[Any]], list[Any]]) -> Any:
        call = _Call(key, payload, run)
        with self._cv:
            self._pending.append(call)
            self._dispatch_if_ready()
            while not call.done:
                self._cv.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _dispatch_if_ready(self) -> None:
        if not self._pending or len(self._pending) < self.members:
            return
        groups: dict[Hashable, list[_Call]] = defaultdict(list)
        for call in self._pending:
            groups[call.key].append(call)
        self._pending = []
        for calls in groups.values():
            try:
                results = calls[0].run([c.payload for c in calls])
                for c, r in zip(calls, results, strict=True):
                    c.result = r
            except BaseException as exc:  # each member re-raises it in its own thread
                for c in calls:
                    c.error = exc
            for c in calls:
                c.done = True
        self._cv.notify_all()


def _split(items: list, sizes: list[int]) -> list[list]:
    out, start = [], 0
    for n in sizes:
        out.append(items[start:start + n])
        start += n
    return out


class _Shared:
    """Delegates everything but the batched call to the wrapped model; `exact=False` runs the batched call
    on plain batched kernels instead of per-item ones."""

    def __init__(self, model, gate: BatchGate, exact: bool = True):
        self._model, self._gate, self._exact = model, gate, exact

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _kernels(self):
        from contextlib import nullcontext

        from zoetrope.stages import per_item

        return nullcontext() if self._exact else per_item.batched()


class GatedCaptioner(_Shared):
    def caption(self, images, params, seeds=None):
        return self._gate.submit(("caption", params), (images, seeds), lambda payloads: self._run(params, payloads))

    def _run(self, params, payloads):
        sizes = [len(images) for images, _ in payloads]
        images = [im for ims, _ in payloads for im in ims]
        seeds = None if any(s is None for _, s in payloads) else [x for _, s in payloads for x in s]
        with self._kernels():
            return _split(self._model.caption(images, params, seeds), sizes)


class GatedPainter(_Shared):
    def paint(self, prompts=None, *, params, seeds=None, negative_prompts=None, init_images=None, **direct):
        if direct or seeds is None:  # latents/embeddings (walks) are not chain calls: run them as given
            return self._model.paint(prompts, params=params, seeds=seeds, negative_prompts=negative_prompts,
                                     init_images=init_images, **direct)
        key = ("paint", params, init_images is not None, negative_prompts is None)
        return self._gate.submit(key, (prompts, seeds, negative_prompts, init_images),
                                 lambda payloads: self._run(params, payloads))

    def _run(self, params, payloads):
        sizes = [len(p[0]) for p in payloads]
        join = lambda i: None if payloads[0][i] is None else [x for p in payloads for x in p[i]]  # noqa: E731
        with self._kernels():
            images = self._model.paint(join(0), params=params, seeds=join(1), negative_prompts=join(2),
                                       init_images=join(3))
        return _split(images, sizes)


def run_many(config, chains: int, root, painter, captioner, plan, stop, start_image=None,
             on_step: Callable[[int, dict], None] = lambda k, record: None, shared: list | None = None,
             exact: bool = True) -> int:
    """Start `chains` chains under `root/chain-<k>` (seeds seed, seed+1, ...) and advance them together until
    `stop` is requested; `on_step(k, record)` hears of each committed step (k from 1). Returns the steps
    committed over all chains; an error in any chain is re-raised once all have stopped. `shared`: chain k's
    (captioner, painter, gate) where its model calls go elsewhere (wall_ray.py: a gate per Ray worker).
    `exact`: per-item kernels (each chain paints as it would alone) or plain batched ones (faster)."""
    from pathlib import Path

    from zoetrope.base.errors import UserError
    from zoetrope.loop.chain import Chain
    from zoetrope.loop.chainlog import require_new_chain
    from zoetrope.loop.run import gallery_extras, run_chain, start_run

    if config.budget.kwh_per_day is not None:
        raise UserError("budget.kwh_per_day: with --chains the GPU's energy cannot be attributed to one chain; "
                        "use budget.images_per_hour, or run the chains separately")
    root = Path(root)
    folders = [root / f"chain-{k}" for k in range(1, chains + 1)]
    for folder in folders:
        require_new_chain(folder)
    # Each chain keeps the config's content policy, budget and watchdog. Energy is not logged: the GPU's
    # energy during a batched forward belongs to all K chains, and splitting it would be a guess.
    configs = [config.model_copy(update={"seed": config.seed + k}) for k in range(chains)]
    extras_of = [gallery_extras(cfg, folder, plan.device, plan.dtype, measure_energy=False)
                 for cfg, folder in zip(configs, folders, strict=True)]
    if shared is None:
        gate = BatchGate(chains)
        shared = [(GatedCaptioner(captioner, gate, exact), GatedPainter(painter, gate, exact), gate)] * chains
    done, errors = [0] * chains, []

    def advance(k: int, folder) -> None:
        try:
            cfg = configs[k]
            wall = {"chains": chains, "chain": k + 1, "exact": exact}
            writer, point = start_run(folder, cfg, start_image, painter, captioner, plan, wall=wall)
            chain = Chain(cfg, shared[k][0], extras_of[k].painter_for(shared[k][1]), next_step=point.next_step)
            done[k] = run_chain(chain, writer, point, cfg.steps, stop,
                                on_step=lambda record: on_step(k + 1, record), extras=extras_of[k])
        except BaseException as exc:  # reported after every chain has stopped
            errors.append(exc)
            stop.requested = True
        finally:
            shared[k][2].leave()

    threads = [threading.Thread(target=advance, args=(k, f), name=f"chain-{k + 1}") for k, f in enumerate(folders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(done)
