"""Progress for every command that shows it (render, replay play, join): one helper, two faces.

On a terminal a tqdm bar per count (the walk's and the encoder's one above the other); anywhere else (a file,
journald, a CI log) plain lines: one every STEP_PERCENT of the total and one at the end, no `\\r` and no cursor
codes. Either way a finished count ends in one line that says it is done (`walk: 72/72 frames in 3.4 s, 21.2
frame/s`): a bar never stays at 94 % once the film is written, and no bar is drawn twice (a terminal bar is
cleared and replaced by that line). A count that stops short (the command failed) says nothing more: the error
line does.
Counts are frames everywhere. Lines for humans go to stdout through `say`, which keeps the bars whole.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

STEP_PERCENT = 10  # a plain line every this much of the total (and one at the end)
_open: list[Bar] = []  # bars drawn now; a terminal bar takes the first free row
_lock = threading.Lock()  # the walk's bar and the encoder's are updated from two threads


def is_terminal(stream: IO[str]) -> bool:
    """Whether `stream` draws bars (a tty); a closed or odd stream counts as a file."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Bar:
    """One count towards `total` (frames), drawn on `stream` (default stderr, as tqdm's bars are).

    Satisfies film.render.Progress (`update`, `close`). `what` names the count (walk, encode, play, join)."""

    def __init__(self, what: str, total: int, unit: str = "frames", stream: IO[str] | None = None,
                 step_percent: int = STEP_PERCENT):
        self.what, self.total, self.unit = what, max(0, int(total)), unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self._step = max(1, step_percent)
        self._next = self._step  # the next percentage a plain line is written at
        self._closed = False
        self._tqdm: Any = None
        with _lock:
            if is_terminal(self.stream) and self.total > 0:
                from tqdm import tqdm

                rows = {bar._row for bar in _open if bar._tqdm is not None}
                self._row = next(r for r in range(len(rows) + 1) if r not in rows)
                self._tqdm = tqdm(total=self.total, unit=unit.rstrip("s") or unit, desc=what, file=self.stream,
                                  dynamic_ncols=True, leave=False, position=self._row)
            _open.append(self)

    def update(self, n: int = 1) -> None:
        with _lock:
            if self._closed:
                return
            self.done += n
            if self._tqdm is not None:
                self._tqdm.update(n)
                return
            if self.total <= 0 or self.done >= self.total:
                return  # the last line is close()'s
            percent = 100 * self.done // self.total
            if percent >= self._next:
                self._next = (percent // self._step + 1) * self._step
                self._write(f"{self.what}: {self.done}/{self.total} {self.unit} ({percent} %)")

    def close(self) -> None:
        """Clear a terminal bar; a finished count says so in one line."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            if self in _open:
                _open.remove(self)
            if self._tqdm is not None:
                self._tqdm.close()
            if self.total > 0 and self.done >= self.total:
                seconds = time.monotonic() - self.started
                rate = f", {self.done / seconds:.1f} {self.unit.rstrip('s')}/s" if seconds > 0 else ""
                self._write(f"{self.what}: {self.done}/{self.total} {self.unit} in {seconds:.1f} s{rate}")

    def _write(self, line: str) -> None:
        if self._tqdm is not None or any(bar._tqdm is not None for bar in _open):
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)  # above the bars still drawn
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(what: str, total: int) -> Bar:
    """The progress factory the film pipeline takes (`progress=bar`): frames on stderr."""
    return Bar(what, total)


class FrameCounter:
    """An `on_frame(done, total)` callback (join, replay play) drawing one Bar, opened at the first frame and
    closed at the last; use as a context manager, so a failed command clears its bar too."""

    def __init__(self, what: str):
        self.what = what
        self.bar: Bar | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = Bar(self.what, total)
        self.bar.update(done - self.bar.done)
        if done >= total:
            self.bar.close()

    def __enter__(self) -> FrameCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def say(line: str) -> None:
    """A line for humans on stdout that does not tear a bar drawn on the terminal below it."""
    if any(b._tqdm is not None for b in _open):
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
    else:
        print(line)
    sys.stdout.flush()
