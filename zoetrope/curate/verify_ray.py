"""`replay verify DIR --ray ...`: a chain's steps regenerated in parallel on Ray workers, the same report.

Every step's inputs are in its log (its input image, caption parameters, prompt, seed), so each step whose
logged input image is intact is regenerated as a task of its own on the workers, in step order and ahead of
the report. verify.verify_chain itself is unchanged and writes the report: it calls the painter and the
captioner below, which answer from those tasks when the call is one that was sent ahead (a lookup by the
call's arguments), and otherwise call a worker there and then: a step whose input had to be regenerated first
depends on the step before it, so it runs in order. Same table, same summary, same exit code as a local verify.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from pathlib import Path

from zoetrope.curate.replay import chain_models, check_file, environment_differences, read_pixels
from zoetrope.curate.verify import Environment, StepCheck, VerifyReport, chain_to_verify, verify_chain
from zoetrope.loop.chainlog import ChainLog
from zoetrope.loop.wall_ray import RemoteCaptioner, RemotePainter


def _digest(image) -> str | None:
    if image is None:
        return None
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def caption_key(images, params, seeds) -> tuple:
    return ("caption", tuple(_digest(i) for i in images), repr(params), tuple(seeds or ()))


def paint_key(prompts, params, seeds, negative_prompts, init_images) -> tuple:
    return ("paint", tuple(prompts or ()), repr(params), tuple(seeds or ()), tuple(negative_prompts or ()),
            None if init_images is None else tuple(_digest(i) for i in init_images))


def _regenerate(worker, keys: tuple, caption: tuple | None, paint: dict) -> tuple:
    """On a worker: one step's caption (when it has one) and painting, as verify_chain asks for them."""
    text = None if caption is None else worker.captioner.caption(*caption)[0]
    return text, worker.painter.paint(**paint)[0]


def _versions(worker) -> dict:
    from zoetrope.loop.run import library_versions

    return library_versions()


class Ahead:
    """The steps with intact inputs, regenerated on the pool in step order. verify_chain makes its calls in
    the same order, so a call is answered by the next result of the stream when its arguments match, and is
    made there and then when they do not (a step regenerated from the step before it)."""

    def __init__(self, pool, chain: ChainLog):
        from zoetrope.settings.params import CaptionParams, PaintParams

        self._head: deque[list] = deque()  # [keys, values, next index] of results not fully taken
        records = iter(chain.steps)

        def next_task() -> tuple | None:
            for record in records:
                name = record.get("input_image")
                image = None
                if name is not None:
                    if not check_file(chain, name, record.get("input_sha256")).ok:
                        continue  # regenerated in order by verify_chain, from the step before
                    image = read_pixels(chain.folder / name)
                caption = None
                if record.get("caption") is not None:
                    caption = ([image], CaptionParams(**record["caption_params"]), [record["seed"]])
                params = PaintParams(**record["paint_params"])
                paint = {"prompts": [record["prompt"]], "params": params, "seeds": [record["seed"]],
                         "negative_prompts": [record["negative_prompt"]],
                         "init_images": [image] if params.strength is not None else None}
                return (None if caption is None else caption_key(*caption), paint_key(**paint)), caption, paint
            return None

        self._stream = pool.ordered(next_task, _regenerate)

    def take(self, key: tuple):
        """The next result when it answers this call, else None (the caller computes it)."""
        if not self._head:
            item = next(self._stream, None)
            if item is None:
                return None
            (keys, _, _), values = item
            self._head.append([[k for k in keys if k is not None], [v for k, v in zip(keys, values,
                                                                                        strict=True) if k is not None], 0])
        keys, values, index = self._head[0]
        if keys[index] != key:
            return None
        self._head[0][2] += 1
        if index + 1 == len(keys):
            self._head.popleft()
        return values[index]


class _AheadCaptioner(RemoteCaptioner):
    def __init__(self, pool, ahead: Ahead):
        super().__init__(pool)
        self.ahead = ahead

    def caption(self, images, params, seeds=None):
        found = self.ahead.take(caption_key(images, params, seeds)) if len(images) == 1 else None
        return [found] if found is not None else super().caption(images, params, seeds)


class _AheadPainter(RemotePainter):
    def __init__(self, pool, ahead: Ahead):
        super().__init__(pool)
        self.ahead = ahead

    def paint(self, prompts=None, *, params, seeds=None, negative_prompts=None, init_images=None, **direct):
        found = None
        if not direct and prompts is not None and len(prompts) == 1:
            found = self.ahead.take(paint_key(prompts, params, seeds, negative_prompts, init_images))
        if found is not None:
            return [found]
        return super().paint(prompts, params=params, seeds=seeds, negative_prompts=negative_prompts,
                             init_images=init_images, **direct)


def verify_folder_ray(folder: Path, address: str, models: dict[str, str] | None = None, device: str | None = None,
                      min_psnr: float | None = None, on_environment: Callable[[Environment], None] = lambda env: None,
                      on_step: Callable[[StepCheck], None] = lambda check: None) -> VerifyReport:
    """verify.verify_folder with the models on Ray workers (`replay verify DIR --ray ADDRESS`)."""
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.cluster import ModelSpec, open_pool

    chain, min_psnr = chain_to_verify(folder, min_psnr)
    (painter, painter_revision), (captioner, captioner_revision), config = chain_models(chain, models)
    # The logged speed settings matter: a TAESD decoder paints other pixels than the full VAE.
    speed = config.speed.options() if config is not None else SpeedOptions()
    pool = open_pool(address, ModelSpec(painter, painter_revision, captioner, captioner_revision, device, speed))
    try:
        return verify_with_pool(chain, pool, min_psnr, on_environment, on_step)
    finally:
        pool.close()


def verify_with_pool(chain: ChainLog, pool, min_psnr: float,
                     on_environment: Callable[[Environment], None] = lambda env: None,
                     on_step: Callable[[StepCheck], None] = lambda check: None) -> VerifyReport:
    """verify_chain with the steps regenerated on `pool` (workers holding the chain's painter and captioner)."""
    versions = pool.call(0, "run", _versions)
    plan = pool.plan
    on_environment(Environment(environment_differences(chain.header, plan, versions), plan.device,
                               plan.dtype_name, min_psnr))
    ahead = Ahead(pool, chain)
    return verify_chain(chain, _AheadPainter(pool, ahead), _AheadCaptioner(pool, ahead), plan, versions,
                        min_psnr, on_step=on_step)
