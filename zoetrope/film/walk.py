"""Keyframes -> frames: the latent walk, rendered in batches through a frame cache on disk.

1. `plan_scene` lays out the timeline: each keyframe's frame once (repeated for its hold) and, between
   keyframes, round(transition x fps) frames at eased t strictly between 0 and 1.
2. Each unique frame gets a key: a hash of everything that determines it (model, device, dtype, size, steps,
   guidance, scheduler, both keyframes' prompts and seeds, t, and the painter call's shape: its rows, intra-op
   threads and VAE width, from `call_shape`, a rule of the device type, the frame size and explicit settings).
   A frame already in `<cache>/frames/<key>.png` is never rendered again: a rerun resumes, and an edited
   keyframe changes only the keys of the segments that touch it.
3. `Walker` (run by the walk engine, engines/walk.py) encodes each needed keyframe's prompt once, draws its
   noise once, then for each batch slerps the noise and lerps the embeddings and calls the painter.

Determinism: CPU float kernels are not batch-invariant (a frame painted in a batch of 1 differs from the same
frame in a batch of 4 by one level in a few pixels: GEMM and conv take different paths for different row
counts). So every painter call has exactly `plan.rows` rows (`rows:` in the scene, `--rows`, or call_rows'
rule; never a measurement, which would make a film depend on how busy the machine was), padded by repeating
the last frame: a frame's bytes then depend only on its own inputs, whatever `--batch-size` is. Rows are independent (no
cross-row op), so the padding does not leak into the real frames.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from zoetrope.base import png
from zoetrope.base.errors import UserError
from zoetrope.base.files import write_durable
from zoetrope.film.engines.run import RenderStats
from zoetrope.film.interpolate import lerp, slerp
from zoetrope.settings.params import PaintParams
from zoetrope.settings.scene import SceneScript
from zoetrope.stages.lanes import intra_op_threads

ROWS = 8  # rows per painter call at the device type's reference size (call_rows): fixed, so no batch changes a frame
REFERENCE_PIXELS = {"cpu": 256 * 256, "cuda": 512 * 512, "mps": 512 * 512}  # where a call of ROWS rows is the rule
WALK_VERSION = 1  # bump when the rendering of a frame changes: it is part of every key


@dataclass(frozen=True)
class Job:
    """One unique frame: keyframe `a` alone (b is None) or the walk from `a` to `b` at eased `t`."""

    a: int
    b: int | None
    t: float
    key: str
    guidance: float | None = None  # under a guidance schedule: this frame's (the scene's value where it is shown)


@dataclass
class ScenePlan:
    """A scene's unique frames (`jobs`) and the film order (`sequence`: one job index per film frame)."""

    name: str
    script: SceneScript
    width: int
    height: int
    jobs: list[Job]
    sequence: list[int]
    keyframe_start: list[int]  # film frame (within the scene) where keyframe i's hold begins
    keyframe_jobs: list[int]
    rows: int = ROWS  # painter call width the keys were made for
    threads: int | None = None  # intra-op threads of each call (1 on CPU: lanes, call_shape); None: the process's
    decode: int | None = None  # latents per VAE call, narrower than `rows` (call_shape); None: the whole call

    def frame_paths(self, cache: Path) -> list[Path]:
        return [cache / f"{self.jobs[j].key}.png" for j in self.sequence]


WalkStats = RenderStats  # the walk's counts: one stats type for every engine (film/engines/run.py)


def call_rows(device: str, width: int, height: int) -> int:
    """The painter call width when neither the scene (`rows:`) nor the command line (`--rows`) names one: ROWS
    rows at the device type's reference size, proportionally fewer for larger frames (a call's activations grow
    with its pixels; 256 px on CPU: 8, 512 px: 2; 512 px on a GPU: 8), never fewer than 1. A rule of the device
    type and the frame size alone: the same scene gives the same keys, and so the same film, on a busy machine
    and an idle one, whatever memory is free."""
    reference = REFERENCE_PIXELS.get(device.split(":")[0], REFERENCE_PIXELS["cpu"])
    return max(1, min(ROWS, ROWS * reference // (width * height)))


def call_shape(painter, width: int, height: int, rows: int | None = None) -> tuple[int, int | None, int | None]:
    """(rows, threads, decode) of every walk call: `rows` as given, else call_rows; on CPU one intra-op thread a
    call (CPU kernels sum in an order that depends on the thread count, so the count is fixed, and the cores
    are used by running calls side by side on lanes: stages/lanes.py); latents decoded one at a time where the
    painter does (Painter.decodes_per_row), else None (the whole call). All three are in every frame's key."""
    device = painter.plan.device
    rows = rows or call_rows(device, width, height)
    return rows, 1 if device == "cpu" else None, 1 if painter.decodes_per_row else None


def painter_identity(painter, speed=None) -> dict:
    """The parts of the painter that change a frame's pixels; speed options too (TAESD changes the picture,
    and another attention kernel or memory layout may change its last bits); the LoRAs fused into it (sha256
    and weight; none: the key is as before LoRAs existed, so older caches stay valid)."""
    from dataclasses import asdict

    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.lora import loras_of
    from zoetrope.stages.models import fingerprint

    identity = {"model": fingerprint(painter.ref), "device": painter.plan.device, "dtype": painter.plan.dtype_name,
                "speed": asdict(speed if speed is not None else SpeedOptions())}
    if loras := loras_of(painter):
        identity["loras"] = [{"sha256": ref.sha256, "weight": ref.weight} for ref in loras]
    return identity


def frame_key(identity: dict, script: SceneScript, width: int, height: int, a: int, b: int | None, t: float,
              rows: int = ROWS, guidance: float | None = None, threads: int | None = None,
              decode: int | None = None) -> str:
    """sha256 of everything that determines a frame's pixels; `t` as float.hex so equal means bit-equal. Under a
    guidance schedule, the frame's own guidance (bit-exact) and the scene's peak (it decides whether the call
    runs classifier-free guidance at all); a constant guidance keys as it always did. `threads`: the calls'
    intra-op thread count where the cache fixed it (CPU kernels sum by it); None keys as before 0.5. `decode`:
    the VAE's width where narrower than the call (Painter.decode); None keys as before 0.6."""
    def end(i: int | None):
        return None if i is None else {"prompt": script.prompt_of(i), "negative": script.negative_of(i),
                                       "seed": script.seed_of(i)}

    record = {
        "walk": WALK_VERSION, "rows": rows, **identity, "width": width, "height": height, "steps": script.steps,
        "guidance": script.guidance, "scheduler": script.scheduler, "a": end(a), "b": end(b), "t": float(t).hex(),
    }
    if guidance is not None:
        record["guidance"] = {"frame": float(guidance).hex(), "peak": script.guidance_peak()}
    if threads is not None:
        record["threads"] = threads
    if decode is not None:
        record["decode"] = decode
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def plan_scene(name: str, script: SceneScript, identity: dict, *, width: int | None = None,
               height: int | None = None, rows: int = ROWS, only: set[int] | None = None,
               threads: int | None = None, decode: int | None = None) -> ScenePlan:
    """Lay out a scene's frames by the frame-count rule at the script's fps.

    `rows` is the painter call width the frames will be rendered at, `threads` each call's intra-op threads,
    `decode` its latents per VAE call (all part of their keys where set; see the top and call_shape).
    `only`: the segments (keyframe i's hold and its transition to i + 1) this walk renders, when other engines
    render the rest (film/engines.py); `keyframe_start[i]` is then where segment i starts in this walk's
    sequence. Every keyframe still gets its job (a transition needs both ends' embeddings and noise), but only
    what the sequence shows is rendered, and keys do not depend on `only`. Frame counts and t come from the
    script (`hold_frames`, `transition_ts_of`): the rule, or an audio-synced render's.
    """
    width, height = width or script.width, height or script.height
    decode = decode if decode is not None and decode < rows else None  # the whole call: keyed as before 0.6
    jobs: list[Job] = []
    sequence: list[int] = []
    starts: list[int] = []
    keyframe_jobs: list[int] = []
    n_keys = len(script.keyframes)
    scheduled = script.guidance_frames()  # per scene frame, under a guidance schedule
    at = [0]  # scene frame where each segment starts
    for i in range(n_keys):
        at.append(at[-1] + script.hold_frames(i) + script.transition_frames(i))

    def job(a: int, b: int | None, t: float, frame: int) -> Job:
        g = None if scheduled is None else scheduled[min(frame, len(scheduled) - 1)]
        return Job(a, b, t, frame_key(identity, script, width, height, a, b, t, rows, g, threads, decode), g)

    for i in range(n_keys):
        keyframe_jobs.append(len(jobs))
        jobs.append(job(i, None, 0.0, at[i]))
    for i in range(n_keys):
        starts.append(len(sequence))
        if only is not None and i not in only:
            continue
        sequence += [keyframe_jobs[i]] * script.hold_frames(i)
        if i + 1 < n_keys:
            for k, t in enumerate(script.transition_ts_of(i)):
                sequence.append(len(jobs))
                jobs.append(job(i, i + 1, t, at[i] + script.hold_frames(i) + k))
    return ScenePlan(name, script, width, height, jobs, sequence, starts, keyframe_jobs, rows, threads, decode)


def keyframes_of(jobs: list[Job]) -> set[int]:
    """The keyframes whose embeddings and noise `jobs` interpolate (both ends of a transition)."""
    return {j.a for j in jobs} | {j.b for j in jobs if j.b is not None}


def needed_jobs(plan: ScenePlan) -> list[Job]:
    """Jobs the film shows, in film order, each once (a keyframe held 0 frames is not rendered)."""
    seen: set[int] = set()
    out = []
    for j in plan.sequence:
        if j not in seen:
            seen.add(j)
            out.append(plan.jobs[j])
    return out


def write_frame(path: Path, image: Image.Image) -> None:
    """Atomically (no fsync: a cache may lose a frame in a crash, never hold half of one); two renders that
    write the same frame write the same bytes, so the last rename wins harmlessly. A failing write (a full
    disk) is a UserError naming the frame."""
    try:
        write_durable(path, png.encode(image), sync=False)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the frame ({exc.strerror or exc})") from None


def walk_params(script: SceneScript, width: int, height: int) -> PaintParams:
    return PaintParams(steps=script.steps, guidance=script.guidance_peak(), width=width, height=height,
                       scheduler=script.scheduler)


class FrameFeed:
    """Tells a consumer on another thread (the film encoder) when cache frames appear, so it can take them in
    film order while the walk is still painting. `close()` ends the walk's side, with its error if it failed."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self.consumer_error: BaseException | None = None  # set by a consumer that failed: the walk stops too

    def consumer_failed(self, error: BaseException) -> None:
        self.consumer_error = error

    def saved(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cv:
            self._closed, self._error = True, error
            self._cv.notify_all()

    def wait(self, path: Path) -> None:
        with self._cv:
            while not path.is_file():
                if self._error is not None:
                    raise RuntimeError("the walk stopped before this frame") from self._error
                if self._closed:
                    raise FileNotFoundError(f"{path}: the walk ended without rendering this frame")
                self._cv.wait()


class Walker:
    """Renders a scene's missing frames; holds each keyframe's embeddings and noise for the whole scene."""

    def __init__(self, painter, plan: ScenePlan):
        self.painter = painter
        self.plan = plan
        self.params = walk_params(plan.script, plan.width, plan.height)
        self._embeds: dict[int, dict[str, torch.Tensor]] = {}
        self._noise: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()  # lanes share a walker: each keyframe's inputs are made once

    def prepare(self, keyframes: set[int]) -> None:
        """Prompt embeddings and noise, once per keyframe."""
        with self._lock:
            self._prepare(keyframes)

    def _prepare(self, keyframes: set[int]) -> None:
        todo = sorted(k for k in keyframes if k not in self._embeds)
        if not todo:
            return
        # A plan that fixes its threads (0.5 on) encodes each prompt alone: the text encoder's kernels, like the
        # UNet's, are not batch-invariant, and which keyframes a call needs depends on what the cache lacks
        groups = [todo] if self.plan.threads is None else [[i] for i in todo]
        with intra_op_threads(self.plan.threads):
            self._encode(groups)

    def _encode(self, groups: list[list[int]]) -> None:
        s = self.plan.script
        for group in groups:
            embeds = self.painter.encode([s.prompt_of(i) for i in group], [s.negative_of(i) for i in group],
                                         self.params.guidance)
            for row, i in enumerate(group):
                self._embeds[i] = {name: tensor[row:row + 1] for name, tensor in embeds.items()}
                self._noise[i] = self.painter.noise([s.seed_of(i)], self.plan.width, self.plan.height)

    def inputs(self, job: Job) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One row of prompt embeddings (lerp) and noise (slerp) for a job."""
        if job.b is None:
            return self._embeds[job.a], self._noise[job.a]
        ea, eb = self._embeds[job.a], self._embeds[job.b]
        embeds = {name: lerp(ea[name], eb[name], job.t) for name in ea}
        return embeds, slerp(self._noise[job.a], self._noise[job.b], job.t)

    def paint(self, jobs: list[Job]) -> list[Image.Image]:
        """Paint up to `rows` jobs in one call of exactly `rows` rows (padded with the last job), at the plan's
        intra-op threads: here, on a lane, or on a Ray worker alike."""
        with intra_op_threads(self.plan.threads):
            return self._paint(jobs)

    def _paint(self, jobs: list[Job]) -> list[Image.Image]:
        rows_n = self.plan.rows
        if not 0 < len(jobs) <= rows_n:
            raise ValueError(f"a painter call takes 1..{rows_n} jobs but got {len(jobs)}.")
        self.prepare(keyframes_of(jobs))
        rows = [self.inputs(j) for j in jobs]
        rows += [rows[-1]] * (rows_n - len(rows))
        embeds = {name: torch.cat([r[0][name] for r in rows]) for name in rows[0][0]}
        latents = torch.cat([r[1] for r in rows])
        guidance = None if jobs[0].guidance is None else [j.guidance for j in jobs]
        if guidance is not None:  # a guidance schedule: each row its own, padded like the rows
            guidance += [guidance[-1]] * (rows_n - len(guidance))
        return self.painter.paint(params=self.params, prompt_embeds=embeds, latents=latents, guidance_rows=guidance,
                                  keep=len(jobs))[:len(jobs)]
