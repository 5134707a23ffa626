"""The display server on a real socket: /status, /healthz, the SSE push, and no way out of the chain folder."""

from __future__ import annotations

import http.client
import json
import os
import re
import time

import pytest

from tests.gallery_helpers import append_step, config, held_elsewhere, make_chain
from zoetrope.gallery.serve import ServerThread, create_app, safe_chain_file
from zoetrope.loop.care.watchdog import LoopState
from zoetrope.loop.chainlog import lock_chain


@pytest.fixture
def chain(tmp_path):
    return make_chain(tmp_path / "chain", ["a lighthouse at night", "a garden of glass"], energy_j=2.5)


def start(folder, **kw):
    return ServerThread(create_app(folder, **kw), "127.0.0.1", 0).start()


def get(server, path: str, timeout: float = 5.0):
    """A raw request: the path goes on the wire exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


@pytest.mark.e2e
def test_status_reports_the_chain_and_the_loop(chain):
    state = LoopState(str(chain), started=time.time() - 60)  # the loop that wrote both steps, a minute ago
    state.error("step 3: RuntimeError: boom")
    state.pause("disk_full", "write failed")
    server = start(chain, loop_state=state.as_dict)
    try:
        with lock_chain(chain):  # the loop of `loop --display`: the writer is this process
            status, body, headers = get(server, "/status")
        report = json.loads(body)
    finally:
        server.stop()
    assert status == 200 and headers["content-type"] == "application/json"
    assert report["last_step"] == 2 and report["run_id"] == "test"
    assert report["last_step_time"] == pytest.approx((chain / "chain.jsonl").stat().st_mtime)
    assert report["steps_last_hour"] == 2 and report["steps_per_hour"] > 0
    assert report["uptime_s"] >= 0 and report["disk_free_bytes"] > 0
    assert report["errors_last_hour"] == 1 and report["paused"] == "disk_full" and report["loop_running"]
    assert report["writer_pid"] == os.getpid() and report["writer_running"]
    assert report["healthy"] and report["unhealthy_reason"] is None
    assert report["energy"] == {"total_j": 5.0, "total_kwh": round(5.0 / 3.6e6, 6), "steps_measured": 2, "steps": 2}


def test_a_stopped_chain_has_no_rate_and_unmeasured_energy_is_unknown(tmp_path):
    """Two steps 0.3 s apart and no loop running: the rate is unknown, not 12000 an hour; energy never
    measured is unknown, not 0.0 J."""
    from zoetrope.gallery.serve import ChainWatcher, status_report
    from zoetrope.settings.loop import DisplaySettings

    folder = make_chain(tmp_path / "chain", ["a lighthouse at night", "a garden of glass"])
    watcher = ChainWatcher(folder)
    watcher.poll()
    now = time.time()
    watcher.step_times.extend([now - 10.3, now - 10.0])
    stopped = status_report(watcher, DisplaySettings(), now, None, 200, now)
    assert stopped["steps_last_hour"] >= 2 and stopped["steps_per_hour"] is None and not stopped["loop_running"]
    assert stopped["energy"] == {"total_j": None, "total_kwh": None, "steps_measured": 0, "steps": 2}
    running = LoopState(str(folder), started=now - 11).as_dict(now)
    assert status_report(watcher, DisplaySettings(), now, running, 200, now)["steps_per_hour"] > 0


def test_a_taken_port_is_one_line_before_anything_is_announced(tmp_path):
    from zoetrope.base.errors import UserError
    from zoetrope.gallery.serve import bind_display

    held = bind_display("127.0.0.1", 0)
    try:
        with pytest.raises(UserError, match=r"^--port \d+: 127.0.0.1:\d+ is already in use"):
            bind_display("127.0.0.1", held.getsockname()[1])
    finally:
        held.close()


@pytest.mark.e2e
def test_a_server_on_a_socket_bound_beforehand_serves_it(chain):
    from zoetrope.gallery.serve import bind_display

    sock = bind_display("127.0.0.1", 0)  # `loop --display`: bound before the models load
    server = ServerThread(create_app(chain), sock=sock).start()
    try:
        assert server.port == sock.getsockname()[1] and get(server, "/status")[0] == 200
    finally:
        server.stop()


@pytest.mark.e2e
def test_status_reads_the_heartbeat_file_of_a_separate_loop(chain):
    state = LoopState(str(chain))
    state.pause("budget", "10 images per hour")
    (chain / "heartbeat.json").write_text(json.dumps(state.as_dict() | {"stopped": False}))
    server = start(chain)
    try:
        report = json.loads(get(server, "/status")[1])
    finally:
        server.stop()
    assert report["paused"] == "budget" and report["pause_detail"] == "10 images per hour"
    assert report["errors_last_hour"] == 0


@pytest.mark.e2e
def test_healthz_is_503_after_the_silence_and_200_when_steps_flow(chain):
    old = time.time() - 120
    os.utime(chain / "chain.jsonl", (old, old))
    cfg = config(display={"healthz_silence_s": 60})
    server = start(chain, config=cfg)
    writer = lock_chain(chain)  # a writer holds the lock: only the silence is wrong
    try:
        status, body, _ = get(server, "/healthz")
        assert status == 503 and json.loads(body)["seconds_since_last_step"] >= 119
        assert re.fullmatch(r"no step for 1[12]\d s", json.loads(body)["unhealthy_reason"])
        append_step(chain, "a new step arrives")
        deadline = time.monotonic() + 5
        while (status := get(server, "/healthz")[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200
    finally:
        writer.release()
        server.stop()


@pytest.mark.e2e
def test_healthz_is_503_without_a_writer_200_with_one_and_503_after_the_silence(chain):
    """`serve` alone is not a healthy installation: fresh steps count only while a writer holds the lock."""
    server = start(chain, config=config(display={"healthz_silence_s": 1.5}))
    try:
        status, body, _ = get(server, "/healthz")  # the steps are fresh, but nobody writes
        assert status == 503 and json.loads(body)["unhealthy_reason"] == "no writer holds the chain's lock"
        report = json.loads(get(server, "/status")[1])
        assert report["writer_running"] is False and report["writer_pid"] is None and not report["healthy"]
        assert report["unhealthy_reason"] == "no writer holds the chain's lock"
        with held_elsewhere(chain, pid=4321):  # another process, asked with F_OFD_GETLK
            status, body, _ = get(server, "/healthz")
            assert status == 200 and json.loads(body) | {"seconds_since_last_step": 0} == {
                "healthy": True, "unhealthy_reason": None, "writer_pid": 4321, "seconds_since_last_step": 0,
                "silence_limit_s": 1.5, "paused": None}
            time.sleep(2.0)
            status, body, _ = get(server, "/healthz")
            assert status == 503 and re.fullmatch(r"no step for [2-9] s", json.loads(body)["unhealthy_reason"])
            assert json.loads(get(server, "/status")[1])["writer_pid"] == 4321
        assert json.loads(get(server, "/healthz")[1])["unhealthy_reason"] == "no writer holds the chain's lock"
    finally:
        server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("path", [
    "/chain/../chain.jsonl", "/chain/%2e%2e/chain.jsonl", "/chain/..%2fchain.jsonl", "/chain/chain.jsonl",
    "/chain//etc/passwd", "/chain/%2Fetc%2Fpasswd", "/../../etc/passwd", "/chain/../../../etc/passwd",
    "/static/../chain.jsonl", "/static/%2e%2e/serve.py", "/static/..%2f..%2fpyproject.toml", "/etc/passwd",
    "/chain/heartbeat.json", "/chain/.step-000001.png.tmp", "/chain/step-000009.png",
])
def test_nothing_outside_the_chain_images_is_served(chain, path):
    (chain / "heartbeat.json").write_text("{}")
    server = start(chain)
    try:
        status, body, _ = get(server, path)
    finally:
        server.stop()
    assert status == 404, (path, body[:100])
    assert b"root:" not in body and b"kind" not in body


@pytest.mark.e2e
def test_chain_images_and_the_page_are_served(chain):
    server = start(chain)
    try:
        status, body, headers = get(server, "/chain/step-000002.png")
        assert status == 200 and body == (chain / "step-000002.png").read_bytes()
        assert headers["content-type"] == "image/png"
        status, page, _ = get(server, "/")
        assert status == 200 and b'dir="auto"' in page and b'"caption_effect": "type"' in page
        assert get(server, "/static/kiosk.js")[0] == 200
    finally:
        server.stop()


def test_safe_chain_file(chain, tmp_path):
    assert safe_chain_file(chain, "step-000001.png") == (chain / "step-000001.png").resolve()
    (tmp_path / "outside.png").write_bytes(b"x")
    os.symlink(tmp_path / "outside.png", chain / "step-000099.png")  # a link out of the folder
    for name in ("../outside.png", str(tmp_path / "outside.png"), "step-000099.png", "chain.jsonl", ""):
        assert safe_chain_file(chain, name) is None


def read_event(stream, deadline: float) -> dict:
    """The next `event: step` from an SSE stream (comments and retry lines skipped)."""
    lines = []
    while time.monotonic() < deadline:
        line = stream.readline().decode().rstrip("\n")
        if line == "" and lines:
            if any(x.startswith("event: step") for x in lines):
                return json.loads(next(x for x in lines if x.startswith("data: "))[6:])
            lines = []
        elif line:
            lines.append(line)
    raise AssertionError("no step event before the deadline")


@pytest.mark.e2e
def test_new_steps_are_pushed_within_a_second(chain):
    server = start(chain)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/events")
        response = conn.getresponse()
        assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
        first = read_event(response, time.monotonic() + 5)
        assert first["step"] == 2 and first["caption"] == "a garden of glass"
        committed = time.monotonic()
        append_step(chain, "نص من اليمين إلى اليسار")
        pushed = read_event(response, time.monotonic() + 5)
        latency = time.monotonic() - committed
        assert pushed["step"] == 3 and pushed["caption"] == "نص من اليمين إلى اليسار"
        assert pushed["image"].startswith("/chain/step-000003.png?v=")
        assert latency < 1.0
    finally:
        conn.close()
        server.stop()


@pytest.mark.e2e
def test_serve_latest_follows_the_newest_chain(tmp_path):
    make_chain(tmp_path / "root" / "a", ["first chain"])
    server = ServerThread(create_app(latest_root=tmp_path / "root"), "127.0.0.1", 0).start()
    try:
        assert json.loads(get(server, "/latest.json")[1])["caption"] == "first chain"
        make_chain(tmp_path / "root" / "b", ["second chain"])
        deadline = time.monotonic() + 6
        while json.loads(get(server, "/latest.json")[1] or b"null") is None or \
                json.loads(get(server, "/latest.json")[1])["caption"] != "second chain":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        server.stop()


def test_a_host_other_than_loopback_warns(capsys):
    from zoetrope.cli.gallery import warn_if_open

    warn_if_open("127.0.0.1")
    assert capsys.readouterr().err == ""
    warn_if_open("0.0.0.0")
    assert "warning: the display listens on 0.0.0.0" in capsys.readouterr().err


def test_install_service_prints_the_units(capsys, tmp_path):
    from zoetrope.cli.main import main

    cfg = tmp_path / "gallery.yaml"
    cfg.write_text("name: gallery\nservice: {watchdog_sec: 120}\n")
    assert main(["install-service", str(cfg), "--chain", str(tmp_path / "chains" / "room"), "--port", "9000"]) == 0
    out = capsys.readouterr().out
    assert "Type=notify" in out and "Restart=always" in out and "WatchdogSec=120" in out
    assert "StartLimitIntervalSec=" in out and "StartLimitBurst=" in out
    assert f"--out {tmp_path / 'chains' / 'room'} --service" in out
    assert f"serve --latest {tmp_path / 'chains'} --port 9000" in out
    assert "chromium --kiosk" in out and "http://127.0.0.1:9000/" in out and "[Desktop Entry]" in out
    assert main(["install-service", str(cfg), "--write", "--dir", str(tmp_path / "units"),
                 "--autostart-dir", str(tmp_path / "autostart")]) == 0
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "zoetrope-display.service", "zoetrope-kiosk.service", "zoetrope-loop.service"]
    assert (tmp_path / "autostart" / "zoetrope-kiosk.desktop").is_file()
