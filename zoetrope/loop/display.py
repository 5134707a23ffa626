"""The kiosk's display cache (`display.upscale: {scale: 2|4, model: ...}`): an upscaled copy of each committed
step's image, `DIR/display/step-NNNNNN.png`, for a 4K screen.

It is a cache, not a record: the chain's own PNGs and chain.jsonl are exactly what they would be without it
(the chain log is the chain's record), and nothing here can stop or fail the chain. The copies are made on a
thread of their own, off the chain's critical path: `submit` hands over a committed step and returns at once;
when the upscaler is slower than the painter only the newest step waits (older ones are skipped: the kiosk
shows the newest). A failure (the model cannot load, an image size the upscaler refuses, out of memory) is
logged once per kind and that step simply has no copy, so the kiosk shows the original. Only the last `keep`
copies stay on disk, so weeks of running do not fill it. The upscaler is loaded on that thread at the first
step, so a slow or failing load never delays the chain either. Torch-free on import (serve reads DISPLAY_DIR).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DISPLAY_DIR = "display"
KEEP = 8  # copies kept: the kiosk shows only the newest, a few spare cover a slow page


class DisplayCache:
    """Upscaled copies of committed steps, written by one background thread (see the module docstring).

    `load` returns an object with `upscale([image], prompt=, seed=, steps=) -> [image]` (stages.upscale's
    Upscaler); it is called on the worker thread, once, at the first step.
    """

    def __init__(self, folder: Path, load: Callable[[], object], steps: int | None = None, keep: int = KEEP):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"`keep` has to be a positive int but is {keep!r}.")
        from zoetrope.base.files import sweep_temps

        self.folder, self.out = Path(folder), Path(folder) / DISPLAY_DIR
        self.out.mkdir(exist_ok=True)
        sweep_temps(self.out)  # what a killed run left half-written
        self._load, self.steps, self.keep = load, steps, keep
        self._upscaler = None
        self.broken = False  # the upscaler could not be loaded: nothing more is tried
        self.written: list[str] = []  # names of the copies written, in order
        self.failures: dict[str, int] = {}  # kind -> count (each kind is logged once)
        self._pending: dict | None = None
        self._busy = self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="zoetrope-display-upscale", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------ the chain side

    def submit(self, record: dict) -> None:
        """Queue a committed step record (its image is on disk); returns at once, replacing a queued one."""
        with self._cond:
            if self.broken or self._closing:
                return
            self._pending = record
            self._cond.notify_all()

    def wrap(self, on_step: Callable[[dict], None]) -> Callable[[dict], None]:
        """`on_step` that also queues the step here (after the caller's callback)."""
        def both(record: dict) -> None:
            try:
                on_step(record)
            finally:
                self.submit(record)
        return both

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or in progress; False on timeout (for tests and `close`)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float = 300.0) -> None:
        """Finish the queued step (the newest: the kiosk should end on its copy), then stop the thread. Past
        `timeout` it is left behind as a daemon; the atomic writes leave no half file either way."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("display upscale: still working after %.0f s; leaving it behind", timeout)

    # ----------------------------------------------------------------------------------- the worker side

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closing)
                record, self._pending = self._pending, None
                if record is None:
                    self._cond.notify_all()
                    return
                self._busy = True
            try:
                self._one(record)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _fail(self, kind: str, what: str, exc: BaseException) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if self.failures[kind] == 1:
            log.warning("display upscale: %s failed (%s: %s); the kiosk shows the original images%s", what,
                        type(exc).__name__, str(exc)[:300], "" if kind == "load" else " (said once)")

    def _one(self, record: dict) -> None:
        from PIL import Image

        from zoetrope.base.files import write_durable
        from zoetrope.base.png import encode

        if self._upscaler is None:
            try:
                self._upscaler = self._load()
            except Exception as exc:  # e.g. weights not cached offline: the chain goes on without copies
                self.broken = True
                self._fail("load", "loading the upscaler", exc)
                return
        name = record["image"]
        try:
            with Image.open(self.folder / name) as im:
                image = im.convert("RGB")
        except Exception as exc:  # removed by retention meanwhile, unreadable...
            self._fail("read", f"reading {name}", exc)
            return
        try:
            big = self._upscaler.upscale([image], prompt=record.get("prompt") or "", seed=int(record["seed"]),
                                         steps=self.steps)[0]
        except Exception as exc:  # a size it refuses, out of memory...: this step keeps its original
            self._fail(f"upscale:{type(exc).__name__}", f"upscaling {name}", exc)
            return
        try:
            write_durable(self.out / name, encode(big), sync=False)  # a cache: atomic, not fsynced
        except Exception as exc:  # a full disk must not fail the chain (the runner pauses for it)
            self._fail("write", f"writing {DISPLAY_DIR}/{name}", exc)
            return
        self.written.append(name)
        self._prune()

    def _prune(self) -> None:
        from zoetrope.loop.chainlog import STEP_IMAGE_PATTERN

        copies = sorted((int(m.group(1)), p) for p in self.out.iterdir() if (m := STEP_IMAGE_PATTERN.match(p.name)))
        for _, path in copies[:-self.keep]:
            path.unlink(missing_ok=True)


def open_display_cache(config, folder: Path, plan=None) -> DisplayCache | None:
    """The display cache a LoopConfig asks for (None without `display.upscale`). `plan` is the painter's
    DevicePlan (the upscaler shares its device); without one the device is picked as the painter's would be."""
    spec = config.display.upscale
    if spec is None:
        return None

    def load():
        from zoetrope.stages.device import pick_device
        from zoetrope.stages.models import quiet_libraries
        from zoetrope.stages.upscale import load_upscaler

        quiet_libraries()
        upscaler = load_upscaler(spec.model_or_default(), spec.scale, plan or pick_device(None))
        log.info("display upscale: %s x%d into %s/", upscaler.ref.id, upscaler.scale, DISPLAY_DIR)
        return upscaler

    return DisplayCache(folder, load, spec.steps)
