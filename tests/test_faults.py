"""Faults around a running installation: the writer killed under the display, the chain folder deleted under
it. The display keeps answering and says why it is unhealthy; nothing raises a traceback."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.gallery_helpers import config, make_chain
from tests.test_serve import get, start
from zoetrope.loop.chainlog import LOCK_NAME, writer_pid

HOLD = """
import sys, time
from zoetrope.loop.chainlog import lock_chain
lock = lock_chain(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors():
    """Warnings and errors of the server and of Zoetrope (uvicorn's loggers do not reach caplog)."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "zoetrope")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler.records
    for lg in loggers:
        lg.removeHandler(handler)


@pytest.mark.e2e
def test_a_killed_writer_turns_healthz_503_at_once(tmp_path):
    chain = make_chain(tmp_path / "chain", ["a lighthouse at night"])
    writer = subprocess.Popen([sys.executable, "-c", HOLD, str(chain)], stdout=subprocess.PIPE, text=True)
    server = start(chain, config=config(display={"healthz_silence_s": 600}))
    try:
        assert writer.stdout.readline().strip() == "locked"
        status, body, _ = get(server, "/healthz")
        assert status == 200 and json.loads(body)["writer_pid"] == writer.pid
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        status, body, _ = get(server, "/healthz")
        assert status == 503 and json.loads(body)["unhealthy_reason"] == "no writer holds the chain's lock"
        assert (chain / LOCK_NAME).exists() and writer_pid(chain) is None  # the stale file holds nobody
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
        server.stop()


@pytest.mark.e2e
def test_the_chain_folder_deleted_under_serve(tmp_path, errors):
    chain = make_chain(tmp_path / "chain", ["a lighthouse at night", "a garden of glass"])
    server = start(chain)
    try:
        assert get(server, "/status")[0] == 200
        shutil.rmtree(chain)
        time.sleep(0.6)  # a few polls of the gone log
        status, body, _ = get(server, "/status")
        report = json.loads(body)
        assert status == 200 and report["unhealthy_reason"] == f"the chain folder {chain} is missing"
        assert report["disk_free_bytes"] is None and report["writer_running"] is False and not report["healthy"]
        status, body, _ = get(server, "/healthz")
        assert status == 503 and json.loads(body)["unhealthy_reason"] == f"the chain folder {chain} is missing"
        assert json.loads(get(server, "/latest.json")[1])["step"] == 2  # the kiosk keeps its last picture
        assert get(server, "/chain/step-000002.png")[0] == 404
        assert get(server, "/")[0] == 200
        make_chain(chain, ["the chain is back"])  # and it follows a chain made there again
        deadline = time.monotonic() + 5
        while json.loads(get(server, "/latest.json")[1])["caption"] != "the chain is back":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert json.loads(get(server, "/status")[1])["unhealthy_reason"] == "no writer holds the chain's lock"
    finally:
        server.stop()
    assert [r.getMessage() for r in errors if r.levelno >= logging.ERROR] == []
    assert not [r for r in errors if r.exc_info]
