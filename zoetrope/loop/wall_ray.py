"""`loop --chains K --ray ...`: a wall's K chains with their model calls on Ray workers.

The chains themselves stay on this machine exactly as in multichain.run_many: each in its thread, with its
folder, log, seeds and writer lock (taken by the CLI before any worker starts), and the content policy,
budget and watchdog around it. Only the model calls move: chain k is served by worker (k - 1) mod W (an actor
per GPU, each holding the painter and the captioner once), and the chains of one worker are batched by their
own gate into one call on it, so each chain's captions and pixels are those of running it locally (per-item
kernels and per-item noise, multichain.py). RemotePainter and RemoteCaptioner are the stage contracts
(PainterLike, CaptionerLike) on a worker; replay verify --ray uses them too.
"""

from __future__ import annotations

from collections.abc import Callable

from zoetrope.loop.multichain import BatchGate, GatedCaptioner, GatedPainter


class RemoteCaptioner:
    """CaptionerLike: captions computed on worker `worker` of `pool`."""

    def __init__(self, pool, worker: int = 0):
        self.pool, self.worker, self.ref = pool, worker, pool.captioner_ref

    def caption(self, images, params, seeds=None):
        return self.pool.call(self.worker, "caption", images, params, seeds)


class RemotePainter:
    """PainterLike: paintings (and token counts) computed on worker `worker` of `pool`; `plan` is the workers'."""

    def __init__(self, pool, worker: int = 0):
        self.pool, self.worker = pool, worker
        self.ref, self.plan, self.token_limit = pool.painter_ref, pool.plan, pool.token_limit

    def count_tokens(self, prompt: str) -> int:
        return self.pool.call(self.worker, "count_tokens", prompt)

    def paint(self, prompts=None, *, params, seeds=None, negative_prompts=None, init_images=None, **direct):
        return self.pool.call(self.worker, "paint", prompts, params=params, seeds=seeds,
                              negative_prompts=negative_prompts, init_images=init_images, **direct)


def open_wall_pool(address: str, config, chains: int, device: str | None = None):
    """Workers holding the config's painter and captioner: one per GPU (or node), at most one per chain."""
    from zoetrope.stages.cluster import ModelSpec, open_pool

    m = config.models
    spec = ModelSpec(m.painter, m.painter_revision, m.captioner, m.captioner_revision, device,
                     config.speed.options())
    return open_pool(address, spec, workers=chains)


def wall_models(pool, chains: int) -> list[tuple]:
    """(captioner, painter, gate) for chains 1..K: chain k on worker (k - 1) mod W, a gate per worker."""
    members = [0] * pool.size
    for k in range(chains):
        members[k % pool.size] += 1
    gates = [BatchGate(n) for n in members]
    per_worker = [(GatedCaptioner(RemoteCaptioner(pool, w), gates[w]), GatedPainter(RemotePainter(pool, w), gates[w]),
                   gates[w]) if members[w] else None for w in range(pool.size)]
    return [per_worker[k % pool.size] for k in range(chains)]


def run_wall_ray(config, chains: int, root, pool, stop, start_image=None,
                 on_step: Callable[[int, dict], None] = lambda k, record: None) -> int:
    """multichain.run_many with the model calls on `pool`'s workers; returns the steps committed."""
    from zoetrope.loop.multichain import run_many

    return run_many(config, chains, root, RemotePainter(pool), RemoteCaptioner(pool), pool.plan, stop, start_image,
                    on_step=on_step, shared=wall_models(pool, chains))
