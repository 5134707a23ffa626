"""The kiosk display: a Starlette app that shows the newest step of a chain full-screen and pushes each new
one to the page over Server-Sent Events (the browser's EventSource reconnects by itself).

Read-only: it tails chain.jsonl and serves only step images and start.png from the chain folder, nothing
else (no path traversal), and never takes the chain's writer lock. /status reports the loop's health;
/healthz is 200 only while a writer holds the chain's lock (asked with chainlog.writer_pid, which never takes
it) and its last step is within `display.healthz_silence_s`, else 503 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from zoetrope.base.errors import UserError
from zoetrope.loop.care.watchdog import HEARTBEAT_NAME, read_heartbeat
from zoetrope.loop.chainlog import LOG_NAME, STEP_IMAGE_PATTERN, LogTail, writer_pid
from zoetrope.loop.display import DISPLAY_DIR
from zoetrope.settings.loop import DisplaySettings, LoopConfig

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_SERVABLE = re.compile(r"^(step-\d{6,}\.png|start\.png)$")
POLL_S = 0.2


def safe_chain_file(folder: Path, name: str) -> Path | None:
    """The file `name` in `folder` if it is a servable chain image, else None (the caller answers 404)."""
    if not _SERVABLE.match(name):  # one flat name: no "/", "..", absolute paths or hidden files
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path


def display_copy(path: Path) -> Path:
    """The upscaled copy of a step image in the loop's display cache (loop/display.py) when there is one,
    else the image itself: a 4K kiosk gets the larger picture, and a missing copy costs nothing."""
    copy = (path.parent / DISPLAY_DIR / path.name).resolve()
    return copy if copy.parent == path.parent / DISPLAY_DIR and copy.is_file() else path


def newest_chain(root: Path) -> Path | None:
    """The chain folder under `root` whose log changed last (for `serve --latest`)."""
    logs = [p for p in Path(root).glob(f"*/{LOG_NAME}") if p.is_file()]
    return max(logs, key=lambda p: p.stat().st_mtime).parent if logs else None


@dataclass
class ChainWatcher:
    """Tails one chain log: the newest step, when steps arrived, and energy totals."""

    folder: Path | None
    latest_root: Path | None = None
    version: int = 0
    current: dict | None = None
    last_step_time: float | None = None
    step_times: deque = field(default_factory=lambda: deque(maxlen=100000))
    energy_j: float = 0.0
    energy_steps: int = 0
    steps: int = 0
    run_id: str | None = None
    hold_s: float | None = None  # display.upscale: wait this long for a new step's upscaled copy
    _held: tuple[dict, float] | None = None  # (the step to show, when it was first seen)
    _next_latest_check: float = 0.0
    _tail: LogTail | None = None

    def poll(self) -> bool:
        """Read what was appended since the last poll; True when a new step is there to show."""
        now = time.time()
        if self.latest_root is not None and now >= self._next_latest_check:
            self._next_latest_check = now + 2.0
            newest = newest_chain(self.latest_root)
            if newest is not None and newest != self.folder:
                log.info("serving the newest chain: %s", newest)
                self._reset(newest)
        if self.folder is None:
            return False
        if self._tail is None or self._tail.path.parent != self.folder:
            self._tail = LogTail(self.folder)
        read = self._tail.read()
        if read is None:
            return self._release(now)
        if read.restarted:  # cut back (a resume dropped a torn line): counted again from the top
            self._reset(self.folder)
        first = read.first
        self.steps += read.steps
        self.energy_j += read.energy_j
        self.energy_steps += read.energy_steps
        if self._tail.header is not None:
            self.run_id = self._tail.header.get("run_id")
        newest = next((r for r in reversed(read.records) if r.get("kind") == "step"), None)
        st_mtime = read.mtime
        if first:
            self._seed_times(now)
        elif newest is not None:
            self.step_times.append(st_mtime)
        if newest is None:
            return self._release(now)
        self.last_step_time = st_mtime
        entry = {
            "run": self.run_id, "step": newest["step"],
            "caption": newest["caption"] if newest.get("caption") is not None else newest.get("prompt", ""),
            "image": f"/chain/{newest['image']}?v={(newest.get('image_sha256') or '')[:16]}",
        }
        # The oldest held step's clock keeps running, so the kiosk is never more than hold_s behind; on the
        # first read (a server started late) the newest step is shown at once.
        since = now - (self.hold_s or 0.0) if first else (self._held[1] if self._held else now)
        self._held = (entry, since)
        return self._release(now)

    def _release(self, now: float) -> bool:
        """Show the held step once its display copy exists (its URL then says so, for the browser's cache) or
        hold_s has passed; without display.upscale at once. True when a new step is there to show."""
        if self._held is None:
            return False
        entry, since = self._held
        name = entry["image"].removeprefix("/chain/").split("?")[0]
        if self.folder is not None and (self.folder / DISPLAY_DIR / name).is_file():
            entry["image"] += "&display=1"
        elif self.hold_s is not None and now - since < self.hold_s:
            return False
        self.current, self._held = entry, None
        self.version += 1
        return True

    def _reset(self, folder: Path) -> None:
        self.folder, self.current, self.last_step_time, self._held = folder, None, None, None
        if self._tail is not None and self._tail.path.parent != folder:
            self._tail = None
        self.step_times.clear()
        self.energy_j, self.energy_steps, self.steps, self.run_id = 0.0, 0, 0, None
        self.version += 1

    def _seed_times(self, now: float) -> None:
        """Steps in the last hour before we started, from their images' modification times."""
        times = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                if STEP_IMAGE_PATTERN.match(entry.name):
                    mtime = entry.stat().st_mtime
                    if now - mtime <= 3600:
                        times.append(mtime)
        self.step_times.extend(sorted(times))

    def rate(self, now: float, since: float | None) -> tuple[int, float | None]:
        """(steps completed in the last hour, steps per hour among those made since `since`). The rate is
        None (unknown) without a running loop (`since` None) or with fewer than two of its steps: two old steps
        0.3 s apart say nothing about how fast a stopped chain goes."""
        recent = [t for t in self.step_times if now - t <= 3600]
        ours = sorted(t for t in recent if since is not None and t >= since)
        span = ours[-1] - ours[0] if len(ours) >= 2 else 0.0
        return len(recent), round((len(ours) - 1) / span * 3600, 2) if span > 0 else None


def unhealthy_reason(folder: Path | None, writer: int | None, silence: float, limit: float) -> str | None:
    """Why /healthz says 503, or None: healthy means a writer holds the chain's lock and steps still come."""
    if folder is None:
        return "no chain to show yet"
    if not folder.is_dir():
        return f"the chain folder {folder} is missing"
    if writer is None:
        return "no writer holds the chain's lock"
    if silence > limit:
        return f"no step for {silence:.0f} s"
    return None


def status_report(watcher: ChainWatcher, display: DisplaySettings, started: float, loop_state: dict | None,
                  min_free_mb: int, now: float) -> dict:
    folder = watcher.folder
    free = None
    if folder is not None:
        with contextlib.suppress(OSError):  # a folder deleted under the server: say so, do not fail
            free = shutil.disk_usage(folder).free
    writer = writer_pid(folder) if folder is not None else None
    last = watcher.last_step_time
    if loop_state and loop_state.get("last_step_time"):
        last = max(last or 0.0, loop_state["last_step_time"])
    silence = now - (last if last is not None else started)
    reason = unhealthy_reason(folder, writer, silence, display.healthz_silence_s)
    fresh = bool(loop_state) and not loop_state.get("stopped") and now - loop_state.get("updated", 0) < 120
    count, per_hour = watcher.rate(now, loop_state.get("started", now) if fresh else None)
    paused = loop_state.get("paused") if fresh else None
    if paused is None and free is not None and free < min_free_mb * 2**20:
        paused = "disk_full"
    return {
        "chain": str(folder) if folder else None, "run_id": watcher.run_id,
        "last_step": watcher.current["step"] if watcher.current else None,
        "last_step_time": last, "seconds_since_last_step": round(now - last, 1) if last else None,
        "steps_last_hour": count, "steps_per_hour": per_hour,
        "uptime_s": round(now - started, 1),
        "loop_uptime_s": loop_state.get("uptime_s") if fresh else None,
        "loop_running": fresh,
        "writer_pid": writer, "writer_running": writer is not None,
        "disk_free_bytes": free,
        "errors_last_hour": loop_state.get("errors_last_hour") if fresh else None,
        "recent_errors": loop_state.get("recent_errors", []) if fresh else [],
        "paused": paused, "pause_detail": loop_state.get("pause_detail") if fresh else None,
        "energy": energy_report(watcher),
        "healthy": reason is None, "unhealthy_reason": reason,
    }


def energy_report(watcher: ChainWatcher) -> dict:
    """Energy totals; null (unknown) where no step was measured, never 0.0 J (as `inspect` says "unknown")."""
    measured = watcher.energy_steps > 0
    return {"total_j": round(watcher.energy_j, 3) if measured else None,
            "total_kwh": round(watcher.energy_j / 3.6e6, 6) if measured else None,
            "steps_measured": watcher.energy_steps, "steps": watcher.steps}


def create_app(folder: Path | None = None, *, latest_root: Path | None = None,
               config: LoopConfig | None = None, display: DisplaySettings | None = None,
               loop_state: Callable[[], dict | None] | None = None) -> Starlette:
    """The kiosk app over one chain folder (or the newest chain under `latest_root`)."""
    config = config or LoopConfig()
    display = display or config.display
    watcher = ChainWatcher(Path(folder) if folder else None, Path(latest_root) if latest_root else None,
                           hold_s=display.upscale.hold_s if display.upscale else None)
    started = time.time()
    stopping = threading.Event()

    def state() -> dict | None:
        if loop_state is not None:
            return loop_state()
        return read_heartbeat(watcher.folder / HEARTBEAT_NAME) if watcher.folder else None

    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "/*CONFIG*/null", json.dumps(display.model_dump(mode="json")).replace("</", "<\\/"))

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def chain_file(request: Request) -> Response:
        if watcher.folder is None:
            return Response("not found", status_code=404)
        path = safe_chain_file(watcher.folder, request.path_params["name"])
        if path is None:
            return Response("not found", status_code=404)
        return FileResponse(display_copy(path), headers={"Cache-Control": "public, max-age=86400"})

    async def latest(request: Request) -> Response:
        return JSONResponse(watcher.current, headers={"Cache-Control": "no-store"})

    async def status(request: Request) -> Response:
        report = status_report(watcher, display, started, state(), config.resilience.min_free_mb, time.time())
        return JSONResponse(report, headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        report = status_report(watcher, display, started, state(), config.resilience.min_free_mb, time.time())
        body = {"healthy": report["healthy"], "unhealthy_reason": report["unhealthy_reason"],
                "writer_pid": report["writer_pid"], "seconds_since_last_step": report["seconds_since_last_step"],
                "silence_limit_s": display.healthz_silence_s, "paused": report["paused"]}
        return JSONResponse(body, status_code=200 if report["healthy"] else 503)

    async def events(request: Request) -> Response:
        async def stream():
            yield "retry: 1000\n\n"  # the browser reconnects after 1 s if we go away
            seen, quiet = -1, 0.0
            while not stopping.is_set():
                if watcher.version != seen and watcher.current is not None:
                    seen = watcher.version
                    quiet = 0.0
                    yield f"event: step\nid: {watcher.current['step']}\ndata: {json.dumps(watcher.current)}\n\n"
                elif quiet >= 15.0:  # keeps proxies and idle timers from closing the stream
                    quiet = 0.0
                    yield ": ping\n\n"
                await asyncio.sleep(POLL_S)
                quiet += POLL_S

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.to_thread(watcher.poll)  # the first read may be a long log

        async def follow():
            while not stopping.is_set():
                try:
                    await asyncio.to_thread(watcher.poll)  # never block the event loop on the disk
                except OSError as exc:  # a vanished or unreadable file: keep showing the last image
                    log.warning("reading the chain failed: %s", exc)
                await asyncio.sleep(POLL_S)

        task = asyncio.create_task(follow())
        yield
        stopping.set()
        task.cancel()

    app = Starlette(routes=[
        Route("/", index), Route("/status", status), Route("/healthz", healthz), Route("/latest.json", latest),
        Route("/events", events), Route("/chain/{name:path}", chain_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan)
    app.state.watcher = watcher
    app.state.stopping = stopping
    return app


def bind_display(host: str, port: int) -> socket.socket:
    """The display's listening socket, bound now: call it before anything slow (a model load) and before saying
    where the display is, so a taken port is one UserError line (exit 2) and `display on ...` is only ever
    printed for a socket we hold. `port=0` picks a free port (read it with `sock.getsockname()[1]`). Pass the
    socket to `serve_forever` or `ServerThread(app, sock=...)`; uvicorn then serves on it as it is."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: expected 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"--host {host}: cannot listen there ({getattr(exc, 'strerror', None) or exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: {host}:{port} is already in use (another display?); "
                            "stop it or give another --port") from None
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def _server(app: Starlette, host: str, port: int):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                         timeout_graceful_shutdown=2, lifespan="on"))


def serve_forever(app: Starlette, sock: socket.socket) -> None:
    """`serve`: uvicorn on a socket bind_display already holds, until Ctrl-C or SIGTERM."""
    _server(app, *sock.getsockname()[:2]).run(sockets=[sock])


class ServerThread:
    """uvicorn in a background thread (for `loop --display` and the tests); `port=0` picks a free port. With
    `sock` (from bind_display) it serves on that socket, so the port can be taken before the models load."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8765, sock: socket.socket | None = None):
        self.app = app
        self.sock = sock
        if sock is not None:
            host, port = sock.getsockname()[:2]
        self.server = _server(app, host, port)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock] if sock else None},
                                       name="zoetrope-display", daemon=True)

    def start(self, timeout: float = 15.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise UserError(f"the display server did not start on port {self.server.config.port} "
                                "(is the port in use? give another --port)")
            time.sleep(0.05)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.app.state.stopping.set()  # ends the endless event streams, so shutdown is quick
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.sock is not None:
            self.sock.close()


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
