"""Telling the supervisor the loop is alive: systemd's sd_notify (READY=1, WATCHDOG=1, STATUS=...) over the
NOTIFY_SOCKET datagram socket, and a heartbeat file that `serve` (or a person) reads for /status.

The protocol is one datagram per message (see sd_notify(3)); it is small enough not to need a dependency.
A step that hangs sends nothing, so systemd's WatchdogSec kills and restarts the process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.base.files import write_durable

log = logging.getLogger(__name__)

HEARTBEAT_NAME = "heartbeat.json"
ERROR_WINDOW_S = 3600.0


def sd_notify(message: str, environ: dict | None = None) -> bool:
    """Send one sd_notify message; False (and nothing sent) when not run by systemd with Type=notify."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:  # the supervisor went away: the loop itself must go on
        log.debug("sd_notify(%s) failed: %s", message, exc)
        return False
    return True


@dataclass
class LoopState:
    """What the running loop knows about itself; written as the heartbeat and shown by /status."""

    chain: str
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    last_step: int | None = None
    last_step_time: float | None = None
    steps_this_run: int = 0
    energy_j_this_run: float = 0.0
    paused: str | None = None  # "disk_full" | "budget" | "retry_backoff" | None
    paused_since: float | None = None
    pause_detail: str | None = None
    errors: deque = field(default_factory=lambda: deque(maxlen=1000))  # (time, message)

    def pause(self, reason: str | None, detail: str | None = None, now: float | None = None) -> None:
        if reason != self.paused:
            self.paused_since = None if reason is None else (now or time.time())
        self.paused, self.pause_detail = reason, detail

    def error(self, message: str, now: float | None = None) -> None:
        self.errors.append((now or time.time(), message[:300]))

    def as_dict(self, now: float | None = None) -> dict:
        now = now or time.time()
        recent = [{"time": t, "message": m} for t, m in self.errors if now - t <= ERROR_WINDOW_S]
        return {
            "chain": self.chain, "pid": self.pid, "started": self.started, "updated": now,
            "uptime_s": round(now - self.started, 1), "last_step": self.last_step,
            "last_step_time": self.last_step_time, "steps_this_run": self.steps_this_run,
            "energy_j_this_run": round(self.energy_j_this_run, 3), "paused": self.paused,
            "paused_since": self.paused_since, "pause_detail": self.pause_detail,
            "errors_last_hour": len(recent), "recent_errors": recent[-10:],
        }


class Watchdog:
    """Heartbeat file + systemd notifications. Writing the file may fail (a full disk): the loop goes on."""

    def __init__(self, state: LoopState, heartbeat: Path | None, environ: dict | None = None):
        self.state = state
        self.heartbeat = heartbeat
        self.environ = environ
        self._warned = False

    def ready(self) -> None:
        self._write()
        sd_notify("READY=1", self.environ)

    def beat(self) -> None:
        """Called after each step and every few seconds while waiting: proof of life."""
        self._write()
        status = f"step {self.state.last_step or 0}" + (f", paused: {self.state.paused}" if self.state.paused else "")
        sd_notify(f"WATCHDOG=1\nSTATUS={status}", self.environ)

    def stopping(self) -> None:
        sd_notify("STOPPING=1", self.environ)
        self._write(stopped=True)

    def _write(self, stopped: bool = False) -> None:
        if self.heartbeat is None:
            return
        data = self.state.as_dict() | {"stopped": stopped}
        try:
            write_durable(self.heartbeat, json.dumps(data).encode(), sync=False)
            self._warned = False
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write the heartbeat %s: %s", self.heartbeat, exc)
                self._warned = True


def read_heartbeat(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
