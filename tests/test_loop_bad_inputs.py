"""What a new user trips on when starting a loop (issue 30): each mistake is one line on stderr, exit 2, no
traceback, found before any model loads, and nothing is left behind (no folder, header or writer lock).

The table runs `run_loop.py loop` in a subprocess, as a user would; the in-process tests below pin what a
subprocess cannot show cheaply: that the painter is never loaded for a bad captioner, and that a stop asked
while a step is being written keeps only that step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fakes import FakePainter
from tests.gallery_helpers import config, make_runner
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import LOCK_NAME, read_chain

ROOT = Path(__file__).resolve().parent.parent
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
SMALL = "name: small\nseed: 5\npaint:\n  width: 64\n  height: 64\nstart:\n  prompt: a lighthouse in fog\n"
TWO_MISTAKES = "name: small\ncolour: red\npaint:\n  width: 12.5\n"


def run(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_loop.py"), *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> list[tuple[str, int]] | None:
    """Every path under `folder` with its size, or None when it does not exist."""
    if not folder.exists():
        return None
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


@pytest.fixture
def held_port():
    """A port another program holds (bound and listening), as a second display or `serve` would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def _port_taken(tmp, port):
    return ["--out", tmp / "out", "--display", "--port", port], tmp / "out", "is already in use"


def _not_a_chain_folder(tmp, port):
    films = tmp / "films"
    films.mkdir()
    (films / "harbour.mp4").write_bytes(b"\0" * 64)
    (films / "harbour").mkdir()
    return ["--out", films], films, "not a chain folder and not empty"


def _resume_a_file(tmp, port):
    (tmp / "chain.jsonl").write_text("{}\n")
    return ["--resume", tmp / "chain.jsonl"], tmp / "chain.jsonl", "a file, not a chain folder"


def _resume_not_a_chain_with_models(tmp, port):
    (tmp / "photos").mkdir()
    (tmp / "photos" / "a.png").write_bytes(b"\0")
    return ["--resume", tmp / "photos"], tmp / "photos", "not a chain (no chain.jsonl"


def _bad_captioner(tmp, port):
    return ["--out", tmp / "out", "--models", "painter=tiny,captioner=nobody/no-such-captioner"], tmp / "out", \
        "cannot load captioner 'nobody/no-such-captioner'"


def _misspelt_role(tmp, port):
    return ["--out", tmp / "out", "--models", "paintr=tiny"], tmp / "out", "'paintr' is not a role"


def _start_image_as_typed(tmp, port):
    return ["--out", "out", "--start-image", "missing.png"], tmp / "out", "missing.png: start image not found"


# (case, builder -> (args, path that must stay as it was, message)); --models tiny unless the case gives --models
CASES = [
    ("display port taken", _port_taken),
    ("--out a non-empty folder that is not a chain", _not_a_chain_folder),
    ("--resume a file", _resume_a_file),
    ("--resume a folder that is not a chain, with --models", _resume_not_a_chain_with_models),
    ("a captioner that cannot be had", _bad_captioner),
    ("--models with a misspelt role", _misspelt_role),
    ("--start-image as typed", _start_image_as_typed),
]


@pytest.mark.e2e
@pytest.mark.parametrize("case, build", CASES, ids=[c for c, _ in CASES])
def test_a_bad_start_is_one_line_exit_2_and_leaves_nothing(tmp_path, held_port, case, build):
    config_path = tmp_path / "small.yaml"
    config_path.write_text(SMALL)
    args, kept, message = build(tmp_path, held_port)
    models = [] if "--models" in map(str, args) else ["--models", "tiny"]
    resume = "--resume" in map(str, args)
    before = snapshot(kept)
    result = run("loop", *([] if resume else [config_path]), *models, "--steps", "1", *args, cwd=tmp_path)
    err = result.stderr
    assert result.returncode == 2, (result.stdout, err)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert message in err, err
    assert snapshot(kept) == before
    assert not list(tmp_path.rglob(LOCK_NAME)) and not list(tmp_path.rglob("*.tmp"))
    if case == "--start-image as typed":
        assert str(tmp_path) not in err  # the path the user typed, not one they never wrote
    if case == "--models with a misspelt role":
        assert "painter, captioner" in err
    if case == "--resume a folder that is not a chain, with --models":  # the folder is named before the option
        result = run("loop", "--resume", tmp_path / "photos", "--models", "tiny", cwd=tmp_path)
        assert result.returncode == 2 and "not a chain (no chain.jsonl" in result.stderr, result.stderr


@pytest.mark.e2e
def test_every_mistake_of_the_config_is_shown_as_check_shows_them(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_MISTAKES)
    result = run("loop", bad, "--models", "tiny", "--out", tmp_path / "out")
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines == [f"error: {line}" for line in
                     run("check", bad).stderr.replace("error: ", "").splitlines()], result.stderr
    assert len(lines) == 2 and "colour: unknown key" in lines[0] and "paint.width" in lines[1]
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_after_a_taken_port_the_corrected_command_runs(tmp_path, held_port):
    config_path = tmp_path / "small.yaml"
    config_path.write_text(SMALL)
    out = tmp_path / "out"
    assert run("loop", config_path, "--models", "tiny", "--steps", "1", "--out", out, "--display", "--port",
               held_port).returncode == 2
    result = run("loop", config_path, "--models", "tiny", "--steps", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert read_chain(out).last_step == 1


# ------------------------------------------------------------------------------------------ in process


def test_a_bad_captioner_is_reported_before_the_painter_loads(tmp_path, capsys, monkeypatch):
    from zoetrope.stages import models

    def no_load(*args, **kwargs):
        raise AssertionError("the painter was loaded before the captioner's name was checked")

    monkeypatch.setattr(models, "load_painter", no_load)
    config_path = tmp_path / "small.yaml"
    config_path.write_text(SMALL)
    code = main(["loop", str(config_path), "--models", "painter=tiny,captioner=sd-turbo", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "is a painter preset, but a captioner was asked for" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_stop_while_a_step_is_being_written_keeps_only_that_step(tmp_path):
    """The first Ctrl-C says it finishes the current step: the one being written when it came, not also the
    next one, which the pipelined runner is already painting."""
    painting_next = threading.Event()

    class SlowSecond(FakePainter):
        def paint(self, prompts, **kwargs):
            if len(self.calls) == 1:  # step 2 begins to paint while step 1 is written
                painting_next.set()
            return super().paint(prompts, **kwargs)

    runner, painter, _, _ = make_runner(tmp_path / "c", config(), painter=SlowSecond())
    commit = runner.writer.commit

    def commit_during_a_stop(record, image):
        if record["step"] == 1:
            assert painting_next.wait(30)
            runner.stop.requested = True  # SIGINT while step 1 is being written and step 2 painted
        return commit(record, image)

    runner.writer.commit = commit_during_a_stop
    assert runner.run(None, None, None, until=None) == 1
    assert [s["step"] for s in read_chain(tmp_path / "c").steps] == [1]


@pytest.mark.e2e
def test_display_serves_on_the_port_taken_before_the_models_loaded(tmp_path):
    config_path = tmp_path / "small.yaml"
    config_path.write_text(SMALL)
    out = tmp_path / "out"
    result = run("loop", config_path, "--models", "tiny", "--steps", "1", "--out", out, "--display", "--port", 0)
    assert result.returncode == 0, result.stderr
    assert "display on http://127.0.0.1:" in result.stdout and read_chain(out).last_step == 1
    assert not (out / LOCK_NAME).exists()
