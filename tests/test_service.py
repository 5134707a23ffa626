"""`loop --service` restarts and `install-service` units: the core decisions in gallery/service.py, and the
loop command that acts on them (tiny models, 64 px)."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import pytest

from zoetrope.base.errors import UserError
from zoetrope.cli.main import main
from zoetrope.gallery.service import REPO, ServiceStart, room_units, service_start, write_units
from zoetrope.loop.chainlog import LOG_NAME, read_chain


def holding_a_chain(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / LOG_NAME).write_text("")  # the decision looks only at whether a log is there
    return folder


def test_the_first_start_begins_the_folder_itself(tmp_path):
    for on_restart in ("resume", "new"):
        assert service_start(tmp_path / "room", on_restart) == ServiceStart(tmp_path / "room", resume=False)


def test_a_restart_resumes_the_chain_or_starts_a_new_one_beside_it(tmp_path):
    room = holding_a_chain(tmp_path / "room")
    assert service_start(room, "resume") == ServiceStart(room, resume=True)
    new = service_start(room, "new", now=dt.datetime(2025, 3, 4, 5, 6, 7))
    assert new == ServiceStart(tmp_path / "room-20250304-050607", resume=False)


def test_a_service_needs_its_folder(tmp_path):
    with pytest.raises(UserError, match="--service needs --out DIR"):
        service_start(None, "resume")
    with pytest.raises(ValueError, match="on_restart"):
        service_start(holding_a_chain(tmp_path / "room"), "sometimes")


def test_the_units_start_this_checkout_and_a_broken_config_fails_at_install(tmp_path):
    config = tmp_path / "gallery.yaml"
    config.write_text("name: gallery\nservice: {watchdog_sec: 60}\n")
    units = room_units(config, Path("chains/room"), 9000, "tiny", "/usr/bin/python3")
    exec_start = next(line for line in units["zoetrope-loop.service"].splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert Path(argv[1]) == REPO / "run_loop.py" and Path(argv[1]).is_file()
    assert argv[2:] == ["loop", str(config.resolve()), "--out", str(Path.cwd() / "chains/room"), "--service",
                        "--models", "tiny"]
    assert "WatchdogSec=60" in units["zoetrope-loop.service"]
    config.write_text("name: gallery\nservice: {watchdog_sec: 1}\n")
    with pytest.raises(UserError, match="watchdog_sec"):
        room_units(config, tmp_path / "room", 9000, None, "/usr/bin/python3")
    with pytest.raises(UserError, match="--port: must be 1..65535"):
        room_units(config, tmp_path / "room", 0, None, "/usr/bin/python3")


def test_units_are_written_where_asked(tmp_path):
    files = {"zoetrope-loop.service": "[Unit]\n", "zoetrope-kiosk.desktop": "[Desktop Entry]\n"}
    written = write_units(files, tmp_path / "units", tmp_path / "autostart")
    assert written == [tmp_path / "units" / "zoetrope-loop.service", tmp_path / "autostart" / "zoetrope-kiosk.desktop"]
    assert (tmp_path / "units" / "zoetrope-loop.service").read_text() == "[Unit]\n"


def test_install_service_refuses_a_malformed_models_option(tmp_path, capsys):
    config = tmp_path / "gallery.yaml"
    config.write_text("name: gallery\n")
    assert main(["install-service", str(config), "--models", "painter=x,brush=y"]) == 2
    assert "--models: expected tiny" in capsys.readouterr().err


def test_loop_service_resumes_its_folder_after_a_restart(tmp_path, capsys):
    config = tmp_path / "loop.yaml"
    config.write_text("name: svc\nseed: 2\nstart:\n  prompt: a kettle\npaint: {width: 64, height: 64}\n"
                      "models: {painter: tiny, captioner: tiny}\n")
    room = tmp_path / "room"
    argv = ["loop", str(config), "--out", str(room), "--service"]
    assert main([*argv, "--steps", "1"]) == 0
    assert f"chain {room} (" in capsys.readouterr().out
    assert main([*argv, "--steps", "2", "--seed", "99"]) == 0  # a restart: the logged settings win
    out = capsys.readouterr().out
    assert f"resuming {room} at step 2" in out and f"1 steps written to {room}" in out
    chain = read_chain(room)
    assert chain.last_step == 2 and chain.header["config"]["seed"] == 2
    assert main([*argv, "--resume", str(room)]) == 2
    assert "--service resumes its --out DIR by itself" in capsys.readouterr().err
