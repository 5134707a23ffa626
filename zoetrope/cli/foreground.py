"""Running a chain in the foreground of a terminal or a systemd unit: signals, progress lines, exit code 3.

Used by `loop` (cli/main.py, which hands `stop_on_signals` to loop/session.py's run_loop) and `replay fork`
(cli/replay.py); it lives apart from cli/main.py so that a subcommand module can use it without importing the
module that imports it. The core (loop.run.drive) takes a StopFlag and raises StepFailed; turning signals into
that flag and StepFailed into an exit status is the command line's business.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

EXIT_STEP_FAILED = 3  # distinct from a user error (2): systemd's Restart=always brings the loop back


def progress_line(record: dict) -> str:
    """One line per committed step (loop/run.py's step_line, which `loop` prints through loop/session.py)."""
    from zoetrope.loop.run import step_line

    return step_line(record)


def stop_on_signals():
    """A StopFlag that Ctrl-C and SIGTERM set: the first finishes the current step, the second abandons it."""
    import signal

    from zoetrope.loop.run import StopFlag

    stop = StopFlag()

    def handle(signum, frame):
        if stop.request():
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then stopping (again to abandon it)",
              file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    return stop


def run_in_foreground(config, painter, captioner, writer, point, stop, extras=None,
                      echo: Callable[[str], None] = print) -> int:
    """Run one chain with a progress line per step until done or `stop` is set. A step that keeps failing
    exits with EXIT_STEP_FAILED, for the supervisor to restart the loop (and `--resume` it)."""
    from zoetrope.loop.run import drive
    from zoetrope.loop.runner import StepFailed

    try:
        return drive(config, painter, captioner, writer, point, stop,
                     on_step=lambda record: echo(progress_line(record)), extras=extras)
    except StepFailed as exc:
        logging.getLogger("zoetrope").error("%s; exiting with status %d so the supervisor restarts the loop", exc,
                                            EXIT_STEP_FAILED, exc_info=exc.__cause__)
        raise SystemExit(EXIT_STEP_FAILED) from exc
