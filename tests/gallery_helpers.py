"""Helpers for the gallery tests: a chain folder on fakes, a fake clock, a runner built around them, and a
writer lock held as another process would hold it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes import FakeCaptioner, FakePainter
from zoetrope.loop.care.watchdog import LoopState, Watchdog
from zoetrope.loop.chain import Chain
from zoetrope.loop.chainlog import SCHEMA_VERSION, ChainWriter
from zoetrope.loop.runner import Extras, Runner
from zoetrope.settings.loop import LoopConfig


def config(**changes) -> LoopConfig:
    base = {"seed": 7, "paint": {"width": 64, "height": 64}, "guard": {"enabled": False}}
    return LoopConfig.model_validate(base | changes)


def header(cfg: LoopConfig) -> dict:
    return {"kind": "header", "schema_version": SCHEMA_VERSION, "run_id": "test", "created": "t",
            "config": cfg.model_dump(mode="json"), "models": {"painter": {"id": "fake-painter", "revision": None},
                                                              "captioner": {"id": "fake-captioner", "revision": None}},
            "parent": None}


@dataclass
class FakeTime:
    """A clock that only moves when the code sleeps."""

    now: float = 1_000_000.0
    sleeps: list[float] = field(default_factory=list)
    on_sleep: list = field(default_factory=list)  # callables run at each sleep (to change the world)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook(self)


class Stop:
    requested = False


def make_runner(folder: Path, cfg: LoopConfig, painter=None, captioner=None, extras: Extras | None = None,
                time: FakeTime | None = None, disk_free=lambda p: 10**12, heartbeat: bool = True):
    painter, captioner = painter or FakePainter(), captioner or FakeCaptioner()
    writer = ChainWriter.create(folder, header(cfg), None)
    if extras is None:
        extras = Extras(watchdog=Watchdog(LoopState(str(folder)), folder / "heartbeat.json" if heartbeat else None))
    chain = Chain(cfg, captioner, extras.painter_for(painter))
    time = time or FakeTime()
    runner = Runner(chain, writer, Stop(), extras, clock=time.clock, sleep=time.sleep, disk_free=disk_free)
    return runner, painter, captioner, time


def append_step(folder: Path, caption: str, energy_j: float | None = None, colour: int = 90) -> dict:
    """Commit one more step to the chain in `folder`, as the loop would (image first, then the line)."""
    import numpy as np
    from PIL import Image

    from zoetrope.loop.chainlog import read_chain, step_image_name

    chain = read_chain(folder)
    n = chain.last_step + 1
    record = {"kind": "step", "step": n, "input_image": None, "input_sha256": None, "caption": caption,
              "caption_params": {}, "prompt": caption, "negative_prompt": "", "seed": n,
              "paint_params": {"steps": 1, "guidance": 0.0, "width": 64, "height": 48, "scheduler": "euler",
                               "strength": None},
              "image": step_image_name(n), "image_sha256": None, "seconds": {"total": 0.1}, "energy_j": energy_j,
              "events": []}
    writer = ChainWriter.reopen(chain)
    image = Image.fromarray(np.full((48, 64, 3), (colour * n) % 256, np.uint8))
    try:
        return writer.commit(record, image)
    finally:
        writer.close()


def make_chain(folder: Path, captions: list[str], energy_j: float | None = None) -> Path:
    ChainWriter.create(folder, header(config()), None).close()
    for caption in captions:
        append_step(folder, caption, energy_j)
    return folder


@contextlib.contextmanager
def held_elsewhere(folder: Path, pid: int = 4242) -> Iterator[int]:
    """Hold the chain's writer lock as another process does: an OFD lock on a file description of our own,
    outside chainlog's bookkeeping (so this process's chainlog sees a foreign writer), naming `pid`. Closing
    the descriptor drops it, as a killed process's lock goes with it."""
    from zoetrope.loop.chainlog import LOCK_NAME

    fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("@hhqqi0q", fcntl.F_WRLCK, 0, 0, 0, 0))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)
        yield pid
    finally:
        os.close(fd)
