"""Keeping a chain alive for weeks: the step runner behind `loop`.

Per step: wait for the budget; paint with retries (exponential backoff); after CUDA out-of-memory free the
cache and retry once smaller, and exit non-zero if that fails too (in-process OOM recovery is unreliable,
so the supervisor restarts us and `--resume` continues); re-seed a black image or a step the content
policy blocks; commit it, pausing while the disk is full and rolling back anything a failed commit left,
so the log never holds a half line nor the folder an orphan image. Nothing here changes what a healthy
step writes: an undisturbed run is byte-identical to the plain chain.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoetrope.base.files import is_temp_name, sha256_file
from zoetrope.loop.care.budget import Budget
from zoetrope.loop.care.energy import EnergyMeter, joules_since, read_start
from zoetrope.loop.care.policy import ContentPolicy, GuardedPainter, PromptBlocked
from zoetrope.loop.care.retention import apply_retention
from zoetrope.loop.care.watchdog import LoopState, Watchdog
from zoetrope.loop.chain import Chain, Step, attempt_base
from zoetrope.loop.chainlog import LOG_NAME, START_IMAGE, ChainWriter, step_record

log = logging.getLogger(__name__)

DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class StepFailed(Exception):
    """A step kept failing; the process should exit non-zero and be restarted by its supervisor."""


class DiskFull(Exception):
    """A commit hit a full disk; everything it wrote was rolled back."""


def is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def free_memory() -> None:
    """Release what PyTorch caches, so a retry has the most room it can get."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as exc:  # freeing is best effort; the retry decides
        log.debug("empty_cache failed: %s", exc)


def is_black(image: Image.Image, max_level: int = 4) -> bool:
    """True for an all-black image (what NaN latents decode to) or one with non-finite values."""
    array = np.asarray(image)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return True
    return int(array.max(initial=0)) <= max_level


def shrunk(size: int, factor: float) -> int:
    return max(64, int(size * factor) // 8 * 8)


def commit_or_roll_back(writer: ChainWriter, record: dict, image: Image.Image) -> dict:
    """`writer.commit`, but a disk-full error leaves the folder as before (log cut back to its last whole
    line, the step's image and temp files removed) and raises DiskFull. `writer` must then be reopened."""
    log_path = writer.folder / LOG_NAME
    size = log_path.stat().st_size
    try:
        return writer.commit(record, image)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        try:
            writer.close()  # may flush buffered bytes; they are cut off below
        except OSError:
            pass
        os.truncate(log_path, size)
        (writer.folder / record["image"]).unlink(missing_ok=True)
        for path in writer.folder.glob(f".{record['image']}.*"):
            if is_temp_name(path.name):
                path.unlink(missing_ok=True)
        raise DiskFull(str(exc)) from exc


@dataclass
class Extras:
    """The gallery's services around the chain; each may be absent."""

    policy: ContentPolicy | None = None
    energy: EnergyMeter | None = None
    budget: Budget | None = None
    watchdog: Watchdog | None = None

    def painter_for(self, painter):
        """The painter a chain should use: behind the blocklist when there is one, so a blocked prompt costs
        no GPU time (or energy)."""
        if self.policy is not None and self.policy.blocklist.terms:
            return GuardedPainter(painter, self.policy.blocklist)
        return painter


class Runner:
    """Runs a Chain to a ChainWriter, surviving what weeks of unattended running bring."""

    def __init__(self, chain: Chain, writer: ChainWriter, stop, extras: Extras,
                 on_step: Callable[[dict], None] = lambda record: None, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 disk_free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free):
        self.chain, self.writer, self.config, self.stop, self.extras = chain, writer, chain.config, stop, extras
        self.on_step, self.clock, self.sleep, self.disk_free = on_step, clock, sleep, disk_free
        self.state = extras.watchdog.state if extras.watchdog else LoopState(str(writer.folder))
        self._stopped_in_commit = False  # a stop came while a step was being written (see `run`)

    # -------------------------------------------------------------------------------------- the loop

    def run(self, image: Image.Image | None, input_name: str | None, input_sha: str | None,
            until: int | None) -> int:
        """Advance and commit steps until `until` or a stop request; returns how many were committed.

        Step n is made durable (PNG encoding, hashing, fsyncs) and announced on a writer thread while step
        n+1 is being painted: the models never wait for the disk. At most one commit is in flight, and
        step n+1's record is built only once step n is durable (it names step n's image and hash), so a
        crash loses at most the step being written and the one being painted, never a committed one.

        A stop request finishes the current step, the one after the last announced: when it comes while step n
        is still being written, that is step n, and step n+1 (already being painted) is not committed.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        done = 0
        pending: Future | None = None

        def settle() -> bool:
            """Wait for the commit in flight, if any, and make it the next step's input; False when it was
            abandoned (a stop came during a disk-full pause)."""
            nonlocal pending, done, input_name, input_sha
            if pending is None:
                return True
            future, pending = pending, None
            record = future.result()
            if record is None:
                return False
            done += 1
            input_name, input_sha = record["image"], record["image_sha256"]
            return True

        if self.extras.watchdog:
            self.extras.watchdog.ready()
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-writer")
        try:
            while (until is None or self.chain.step_number <= until) and not self.stop.requested:
                budget = self.extras.budget
                if budget is not None and budget.active and not settle():  # pace after every committed step
                    break
                if not self._wait_for_budget():
                    break
                produced = self._produce(image)
                if not settle() or produced is None or self._stopped_in_commit:
                    break
                step, energy_j, from_start = produced
                if from_start:
                    input_name, input_sha = self._start_input()
                record = step_record(step, input_name, input_sha, energy_j)
                pending = committer.submit(self._commit_and_announce, record, step.image)
                image = step.image
        except KeyboardInterrupt:
            log.info("abandoned the step in progress; the log holds every completed step")
        finally:
            try:
                settle()  # a step already painted is still made durable on the way out
            finally:
                committer.shutdown(wait=True)
                self.writer.close()
                if self.extras.watchdog:
                    self.extras.watchdog.stopping()
        return done

    def _commit_and_announce(self, record: dict, image: Image.Image) -> dict | None:
        committed = self._commit(record, image)
        if committed is not None:
            # Asked to stop before this step was announced: it was the current step, the last one to keep.
            self._stopped_in_commit = bool(self.stop.requested)
            self._after_commit(committed)
        return committed

    def _after_commit(self, record: dict) -> None:
        now = self.clock()
        s = self.state
        s.last_step, s.last_step_time, s.steps_this_run = record["step"], now, s.steps_this_run + 1
        s.energy_j_this_run += record["energy_j"] or 0.0
        s.pause(None)
        if self.extras.budget:
            self.extras.budget.spend(now, record["energy_j"])
        if record["step"] % self.config.retention.check_every == 0:
            apply_retention(self.writer.folder, record["step"], self.config.retention)
        if self.extras.watchdog:
            self.extras.watchdog.beat()
        self.on_step(record)

    def _wait(self, seconds: float) -> bool:
        """Sleep in short slices, proving life to the watchdog; False when a stop was requested."""
        end = self.clock() + seconds
        while not self.stop.requested:
            left = end - self.clock()
            if left <= 0:
                return True
            if self.extras.watchdog:
                self.extras.watchdog.beat()
            self.sleep(min(left, 2.0))
        return False

    def _wait_for_budget(self) -> bool:
        budget = self.extras.budget
        if budget is None or not budget.active:
            return True
        while True:
            seconds, why = budget.wait_s(self.clock())
            if seconds <= 0:
                self.state.pause(None)
                budget.started(self.clock())
                return True
            if self.state.paused != "budget":
                log.info("budget (%s): waiting %.0f s before the next step", why, seconds)
            self.state.pause("budget", why, self.clock())
            if not self._wait(min(seconds, 60.0)):
                return False

    # ----------------------------------------------------------------------------------- producing

    def _start_input(self) -> tuple[str | None, str | None]:
        path = self.writer.folder / START_IMAGE
        return (START_IMAGE, sha256_file(path)) if self.config.start.image is not None else (None, None)

    def _start_image(self) -> Image.Image | None:
        if self.config.start.image is None:
            return None
        from zoetrope.base.images import load_image

        return load_image(self.writer.folder / START_IMAGE)

    def _produce(self, image: Image.Image | None) -> tuple[Step, float | None, bool] | None:
        """One acceptable step (with its energy and whether it restarted from the start), or None on stop."""
        rc, chain = self.config.resilience, self.chain
        n = chain.step_number
        events: list[dict] = []
        reseed = failures = blocked = black = 0
        size: tuple[int, int] | None = None
        sample_caption = from_start = False
        start_mj = read_start(self.extras.energy)
        while True:
            step = None
            try:
                step = chain.attempt(image, attempt=reseed, sample_caption=sample_caption, size=size)
            except PromptBlocked as exc:
                problem = {"kind": "policy_blocked", "where": "prompt", "term": exc.term}
            except Exception as exc:
                self.state.error(f"step {n}: {type(exc).__name__}: {exc}", self.clock())
                if is_oom(exc):
                    free_memory()
                    if size is not None:
                        raise StepFailed(f"step {n}: out of memory again at {size[0]}x{size[1]}") from exc
                    p = self.config.paint
                    size = (shrunk(p.width, rc.oom_shrink), shrunk(p.height, rc.oom_shrink))
                    log.warning("step %d: out of memory; freed the cache, retrying once at %dx%d", n, *size)
                    events.append({"kind": "oom_retry", "width": size[0], "height": size[1]})
                    continue
                failures += 1
                if failures > rc.retries:
                    raise StepFailed(f"step {n} failed {failures} times; last: {type(exc).__name__}: {exc}") from exc
                delay = min(rc.backoff_s * 2 ** (failures - 1), rc.backoff_max_s)
                log.warning("step %d failed (%s: %s); retry %d/%d in %.1f s", n, type(exc).__name__, exc,
                            failures, rc.retries, delay)
                self.state.pause("retry_backoff", str(exc)[:200], self.clock())
                if not self._wait(delay):
                    return None
                continue
            if step is not None:
                problem = self._problem(step)
                if problem is None:
                    if self.state.paused == "retry_backoff":  # other pauses (disk full) belong to the writer
                        self.state.pause(None)
                    step.events = step.events + events
                    chain.accept(step)
                    return step, joules_since(self.extras.energy, start_mj), from_start
            reseed += 1
            if problem["kind"] == "black_image":
                black += 1
                if black >= rc.black_max_attempts:
                    raise StepFailed(f"step {n}: {black} black images in a row (NaN in the model?)")
            else:
                blocked += 1
                sample_caption = True  # a beam caption is the same whatever the seed
                policy = self.config.policy
                if not from_start and (policy.on_block == "skip" or blocked >= policy.max_attempts):
                    from_start, image = True, self._start_image()
                    problem["action"] = "skip_to_start"
                elif from_start and blocked >= 2 * policy.max_attempts:
                    raise StepFailed(f"step {n}: the content policy blocked {blocked} attempts, "
                                     "even from the start prompt/image")
            problem |= {"attempt": reseed, "retry_seed_base": attempt_base(self.config.seed, n, reseed)}
            events.append(problem)
            log.warning("step %d: %s; re-seeding (attempt %d)", n, problem["kind"], reseed)

    def _problem(self, step: Step) -> dict | None:
        if is_black(step.image):
            return {"kind": "black_image"}
        if self.extras.policy is not None:
            hit = self.extras.policy.check(step.caption, step.prompt, step.image)
            if hit is not None:
                return {"kind": "policy_blocked"} | hit
        return None

    # ------------------------------------------------------------------------------------ committing

    def _commit(self, record: dict, image: Image.Image) -> dict | None:
        """Commit, pausing while the disk is full; None when a stop came during the pause."""
        rc = self.config.resilience
        folder = self.writer.folder
        while True:
            free = self.disk_free(folder)
            if free >= rc.min_free_mb * 2**20:
                try:
                    record = commit_or_roll_back(self.writer, record, image)
                    if self.state.paused == "disk_full":
                        log.warning("disk space is back; step %d committed, the loop goes on", record["step"])
                    self.state.pause(None)
                    return record
                except DiskFull as exc:
                    self.writer = ChainWriter(folder, self.writer.painter)
                    self.state.error(f"step {record['step']}: disk full ({exc})", self.clock())
                    detail = f"write failed: {exc}"
            else:
                detail = f"{free / 2**20:.0f} MB free, below {rc.min_free_mb} MB"
            if self.state.paused != "disk_full":
                log.error("disk full (%s): pausing; retrying every %.0f s", detail, rc.disk_retry_s)
            self.state.pause("disk_full", detail, self.clock())
            if not self._wait(rc.disk_retry_s):
                return None
