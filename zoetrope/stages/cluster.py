"""Ray: the connection (`--ray local:N | auto | ray://host:port`) and the workers that hold the models once.

Ray's batch-inference pattern: an actor per GPU (a CPU actor where there is none) loads its models once and
then takes work items that carry everything they need; `WorkerPool.ordered` hands them out lazily, a couple in
flight per worker, and gives the results back in submission order for a streaming consumer (the film encoder,
a verify table). Faults are Ray's: a worker process killed or a node lost restarts the actor (it loads its
models again) and retries the tasks it had in flight (`max_restarts`, `max_task_retries`); a worker dead for
good hands its tasks to another. A worker that cannot load its model answers every call with that one-line
error instead of dying, so the caller stops at once with it, never waiting on an actor that will not come.

`ray` is imported here only, and only when `--ray` is given (extra `ray`, see INSTALL). CPU kernels are not
thread-invariant (a frame painted with 1 intra-op thread differs from the same frame with 2), so CPU workers
run with the driver's thread count: their frames are those of a local render.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zoetrope.base.errors import UserError
from zoetrope.base.extras import install_hint
from zoetrope.settings.params import SpeedOptions
from zoetrope.stages.protocols import WAIT

LOAD_SECONDS = float(os.environ.get("ZOETROPE_RAY_LOAD_SECONDS", 600))  # a worker's model load, at most
PROBE_SECONDS = 5.0  # a TCP connection to a ray:// address: an unreachable one fails well under 10 s
MAX_LOCAL_WORKERS = 64
RESTARTS = 3  # per actor: a worker process killed (kill -9, OOM) restarts and reloads its models
IN_FLIGHT = 2  # tasks queued per worker, so it never idles while the driver takes a result and sends more
INSTALL = f"Ray is not installed; install it with {install_hint('ray')}"
FORMS = "local:N (N workers on this machine), auto (the Ray cluster this machine is part of) or ray://host:port"


@dataclass(frozen=True)
class Address:
    """A parsed `--ray` value: `kind` "local" (with `workers`), "auto" or "client" (a ray:// `url`)."""

    kind: str
    workers: int | None = None
    url: str | None = None


def parse_address(text: str) -> Address:
    """`local:N`, `auto` or `ray://host[:port]`; anything else is a one-line UserError naming the value."""
    value = text.strip()
    if value == "auto":
        return Address("auto")
    if match := re.fullmatch(r"local:(-?\d+)", value):
        n = int(match.group(1))
        if not 1 <= n <= MAX_LOCAL_WORKERS:
            raise UserError(f"--ray: local:N needs 1..{MAX_LOCAL_WORKERS} workers (got {value})")
        return Address("local", workers=n)
    if match := re.fullmatch(r"ray://([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])(?::(\d{1,5}))?", value):
        port = int(match.group(2) or 10001)
        if not 1 <= port <= 65535:
            raise UserError(f"--ray: port must be 1..65535 (got {value})")
        return Address("client", url=f"ray://{match.group(1)}:{port}")
    raise UserError(f"--ray: expected {FORMS} (got {text!r})")


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray: {INSTALL}") from None
    return ray


def _probe(url: str) -> None:
    """Fail in PROBE_SECONDS, not after the Ray client's retries, when nothing answers at host:port."""
    import socket

    host, port = url.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise UserError(f"--ray: cannot reach {url} ({exc.strerror or exc or 'timed out'})") from None


def one_line(exc: BaseException) -> str:
    """The first line of what a worker raised (a RayTaskError carries it as `cause`), without Ray's traceback."""
    cause = getattr(exc, "cause", None)
    lines = [line.strip() for line in str(cause or exc).splitlines() if line.strip()] or [type(exc).__name__]
    if cause is None and len(lines) > 1:  # a worker that died: Ray's story, then the exception's last line
        return f"{lines[0].split(',')[0]}: {lines[-1]}"[:300]
    return lines[0][:300]


# ------------------------------------------------------------------------------------------ the worker


@dataclass(frozen=True)
class ModelSpec:
    """What each worker loads: the painter and/or the captioner (spec, revision), device, speed, CPU threads,
    and a film's clip painters (`clips`: engine -> (loader, its keyword arguments), each loader called as
    `loader(device, **kwargs)`; film/engines/ names them). All load at the worker's start, so a failing one
    stops the pool's start."""

    painter: str | None = None
    painter_revision: str | None = None
    captioner: str | None = None
    captioner_revision: str | None = None
    device: str | None = None
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    threads: int | None = None  # intra-op threads of CPU workers; None: the driver's (see the top)
    clips: dict[str, tuple[Callable, dict]] = field(default_factory=dict)


class WorkerFailed(Exception):
    """A worker that could not load its models, raised on every call it gets (pickled back to the driver)."""


class ModelWorker:
    """The actor body: loads the models in __init__ (so a restarted actor loads them again) and runs calls."""

    def __init__(self, spec: ModelSpec):
        import ray

        self.state: dict[str, Any] = {}  # what a callable keeps between calls (a walk's keyframe latents)
        self.painter = self.captioner = self.plan = None
        self.clips: dict[str, Any] = {}  # engine -> clip painter (a drift's is made on first use: film/engines)
        self.where = f"ray worker {ray.util.get_node_ip_address()} pid {os.getpid()}"
        self.error: str | None = None
        try:
            import torch

            from zoetrope.stages.device import pick_device
            from zoetrope.stages.models import load_captioner, load_painter, quiet_libraries

            quiet_libraries()
            self.plan = pick_device(spec.device)
            if self.plan.device == "cpu" and spec.threads:
                torch.set_num_threads(spec.threads)
            if spec.painter:
                self.painter = load_painter(spec.painter, self.plan, spec.painter_revision, spec.speed)
            if spec.captioner:
                self.captioner = load_captioner(spec.captioner, self.plan, spec.captioner_revision)
            for engine, (load, kwargs) in spec.clips.items():
                self.clips[engine] = load(spec.device, **kwargs)
        except Exception as exc:  # answered on every call, so the driver stops with it instead of waiting
            self.error = f"{self.where}: {one_line(exc)}"

    def _check(self) -> None:
        if self.error is not None:
            raise WorkerFailed(self.error)

    def info(self) -> dict:
        self._check()
        return {"where": self.where, "pid": os.getpid(), "plan": self.plan,
                "painter": getattr(self.painter, "ref", None), "captioner": getattr(self.captioner, "ref", None),
                "token_limit": getattr(self.painter, "token_limit", None),
                "decodes_per_row": self.painter.decodes_per_row if self.painter is not None else None,
                "clips": {engine: {"identity": clip.identity, "max_frames": clip.max_frames, "ref": clip.ref,
                                   "takes_conditions": clip.takes_conditions,
                                   "calls": tuple(clip.call_frames(n) for n in range(1, clip.max_frames + 1))}
                          for engine, clip in self.clips.items()}}

    def run(self, fn: Callable, *args) -> Any:
        """`fn(worker, *args)` on the held models: the generic call (film chunks, verify steps, probes)."""
        self._check()
        return fn(self, *args)

    def paint(self, prompts, **kwargs):
        self._check()
        return self.painter.paint(prompts, **kwargs)

    def caption(self, images, params, seeds=None):
        self._check()
        return self.captioner.caption(images, params, seeds)

    def count_tokens(self, prompt: str) -> int:
        self._check()
        return self.painter.count_tokens(prompt)


# -------------------------------------------------------------------------------------------- the pool


class WorkerPool:
    """The workers of one command, all holding the same models; `close()` ends them (and a local instance).
    A stages.protocols.Executor: a film's units go to `ordered` as they would to stages.lanes.LocalPool."""

    lanes = 1  # CPU lanes are a local pool's; a worker runs one call at a time
    remote = True  # frames come back as PNG bytes, encoded on the workers

    def __init__(self, ray, actors: list, infos: list[dict], owns_instance: bool):
        self._ray, self.actors, self.infos, self._owns = ray, actors, infos, owns_instance
        self.plan = infos[0]["plan"]
        self.painter_ref, self.captioner_ref = infos[0]["painter"], infos[0]["captioner"]
        self.token_limit = infos[0]["token_limit"]
        self.decodes_per_row = infos[0]["decodes_per_row"]  # the walk's call shape (film/walk.py call_shape)
        self.clips = infos[0]["clips"]  # engine -> what the driver needs to lay chunks out (film/distributed)

    @property
    def size(self) -> int:
        return len(self.actors)

    def describe(self) -> str:
        return f"{self.size} Ray worker{'s' * (self.size != 1)} ({self.plan.device}, {self.plan.dtype_name})"

    def pids(self) -> list[int]:
        """The workers' process ids now (a restarted worker has a new one)."""
        return [info["pid"] for info in self.get([a.info.remote() for a in self.actors])]

    def get(self, refs):
        """ray.get, with a worker's error as one UserError line."""
        return _get(self._ray, refs)

    def put(self, value):
        """A value in Ray's object store, sent to each worker once however many tasks name it."""
        return self._ray.put(value)

    def call(self, worker: int, method: str, *args, **kwargs):
        """A synchronous call of one worker's method (`run`, `paint`, `caption`, `count_tokens`)."""
        return self.get(getattr(self.actors[worker], method).remote(*args, **kwargs))

    def ordered(self, next_task: Callable[[], tuple | None], fn: Callable) -> Iterator[tuple[tuple, Any]]:
        """Run `fn(worker, *task)` for tasks taken lazily from `next_task()` (None: no more) and yield
        (task, result) in task order; `next_task()` returns WAIT when its next task needs a result still in
        flight (it is asked again after each result). A worker dead for good hands its tasks to the others; an error raised
        by a task (a worker that cannot load its model) is one UserError line, at once."""
        ray = self._ray
        live = list(range(self.size))
        load = dict.fromkeys(live, 0)
        flight: dict[Any, tuple[int, int, tuple]] = {}  # ref -> (seq, worker, task)
        retry: deque[tuple[int, tuple]] = deque()
        done: dict[int, tuple[tuple, Any]] = {}
        counter = {"seq": 0, "emitted": 0, "exhausted": False}

        def take() -> tuple[int, tuple] | None:
            if retry:
                return retry.popleft()
            if counter["exhausted"]:
                return None
            task = next_task()
            if task is WAIT:
                return None
            if task is None:
                counter["exhausted"] = True
                return None
            counter["seq"] += 1
            return counter["seq"] - 1, task

        while True:
            for w in sorted(live, key=lambda w: load[w]):  # fill the least loaded workers first
                while load[w] < IN_FLIGHT and (item := take()) is not None:
                    flight[self.actors[w].run.remote(fn, *item[1])] = (item[0], w, item[1])
                    load[w] += 1
            if not flight:
                break
            ready, _ = ray.wait(list(flight), num_returns=1)
            n, w, task = flight.pop(ready[0])
            load[w] -= 1
            try:
                done[n] = (task, ray.get(ready[0]))
            except ray.exceptions.RayActorError as exc:  # restarts spent or node gone: another worker takes it
                if w in live:
                    live.remove(w)
                retry.append((n, task))
                if not live:
                    raise UserError(f"ray: every worker died; the last: {one_line(exc)}") from None
            except ray.exceptions.RayError as exc:
                raise UserError(one_line(exc)) from None
            while counter["emitted"] in done:
                yield done.pop(counter["emitted"])
                counter["emitted"] += 1

    def close(self) -> None:
        _close(self._ray, self.actors, self._owns)


def _get(ray, refs):
    try:
        return ray.get(refs)
    except ray.exceptions.RayError as exc:
        raise UserError(one_line(exc)) from None


def _close(ray, actors: list, owns_instance: bool) -> None:
    for actor in actors:
        try:
            ray.kill(actor)
        except Exception:  # noqa: S110 - already gone with its node: nothing to end
            pass
    if owns_instance:
        ray.shutdown()


def _connect(ray, address: Address, gpus_wanted: bool) -> tuple[bool, int, dict]:
    """Join or start Ray; returns (started here, workers, actor options)."""
    import logging

    import torch

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    restarts = {"max_restarts": RESTARTS, "max_task_retries": RESTARTS}
    if address.kind == "local":
        n = address.workers
        gpus = torch.cuda.device_count() if gpus_wanted and torch.cuda.is_available() else 0
        if gpus and n > gpus:
            raise UserError(f"--ray: local:{n} asks for {n} GPU workers but this machine has {gpus} GPUs")
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=max(n, os.cpu_count() or 1) if gpus else n, num_gpus=gpus, **quiet)
        free = ray.available_resources()
        need, unit = ("GPU", 1) if gpus else ("CPU", 1)
        if free.get(need, 0) < n * unit:
            raise UserError(f"--ray: local:{n} needs {n} {need}s free in this process's Ray instance "
                            f"but it has {free.get(need, 0):g}")
        return started, n, restarts | ({"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1})
    if address.kind == "client":
        _probe(address.url)
    if ray.is_initialized():
        started = False
    else:
        try:
            ray.init(address=address.url or "auto", **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"--ray: cannot join {address.url or 'auto'} ({one_line(exc)})") from None
        started = True
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if gpus_wanted else 0
    if gpus:
        return started, gpus, restarts | {"num_gpus": 1, "num_cpus": 0}
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))  # one CPU worker per node, spread
    return started, max(1, nodes), restarts | {"num_cpus": 1, "scheduling_strategy": "SPREAD"}


def open_pool(address: str, spec: ModelSpec, workers: int | None = None) -> WorkerPool:
    """Connect (`local:N`, `auto`, `ray://host:port`) and start the workers, each loading `spec`'s models once;
    returns when all are loaded. `workers` caps their number (a wall of 2 chains needs 2). Every failure is
    one UserError line: a malformed or unreachable address, Ray missing, a worker that cannot load."""
    import time
    from pathlib import Path

    import torch

    parsed = parse_address(address)
    ray = import_ray()
    local = lambda s: str(Path(s).expanduser().resolve()) if s and Path(s).expanduser().is_dir() else s  # noqa: E731
    spec = ModelSpec(local(spec.painter), spec.painter_revision, local(spec.captioner), spec.captioner_revision,
                     spec.device, spec.speed, spec.threads or torch.get_num_threads(),
                     {engine: (load, {k: local(v) if isinstance(v, str) else v for k, v in kwargs.items()})
                      for engine, (load, kwargs) in spec.clips.items()})
    started, n, options = _connect(ray, parsed, spec.device != "cpu")
    n = min(n, workers) if workers else n
    remote = ray.remote(**options)(ModelWorker)
    actors = [remote.remote(spec) for _ in range(n)]
    try:
        refs = [a.info.remote() for a in actors]
        deadline = time.monotonic() + LOAD_SECONDS
        pending = list(refs)
        while pending:  # the first failing worker stops the start at once, with its error
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise UserError(f"--ray: {len(pending)} of {n} workers not ready after {LOAD_SECONDS:g} s "
                                f"(cluster resources: {ray.cluster_resources()})")
            _get(ray, ready)
        infos = _get(ray, refs)
    except BaseException:
        _close(ray, actors, started)
        raise
    first = infos[0]
    for info in infos[1:]:  # one film, one set of frame keys: every worker must paint the same bytes
        if (info["plan"], info["painter"], info["captioner"], {e: c["identity"] for e, c in info["clips"].items()}) \
                != (first["plan"], first["painter"], first["captioner"],
                    {e: c["identity"] for e, c in first["clips"].items()}):
            _close(ray, actors, started)
            raise UserError(f"--ray: workers differ: {first['where']} has {first['plan']}, {first['painter']}; "
                            f"{info['where']} has {info['plan']}, {info['painter']}")
    return WorkerPool(ray, actors, infos, started)
