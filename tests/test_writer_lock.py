"""One writer per chain folder: the writer lock (chainlog/lock.py), who takes it and when, and that readers
never need it. The fast tests hold the lock "elsewhere" with an OFD lock of their own (the kernel treats
another open file description like another process); the e2e tests race real `run_loop.py loop` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gallery_helpers import append_step, held_elsewhere, make_chain
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import (
    LOCK_NAME,
    LOG_NAME,
    ChainBusy,
    ChainLogError,
    ChainWriter,
    LogTail,
    holds_lock,
    lock_chain,
    read_chain,
    upgrade,
    writer_pid,
)

ROOT = Path(__file__).resolve().parent.parent
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
SMALL = "name: small\nseed: 5\npaint:\n  width: 64\n  height: 64\nstart:\n  prompt: a lighthouse in fog\n"
BUSY = r"another process \(pid {}\) is writing this chain"


@pytest.fixture
def chain(tmp_path):
    return make_chain(tmp_path / "chain", ["a lighthouse at night", "a garden of glass"])


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------------ the lock


def test_a_second_writer_is_refused_naming_the_holder(chain):
    with held_elsewhere(chain, pid=31337):
        assert writer_pid(chain) == 31337  # asked with F_OFD_GETLK, never taken
        with pytest.raises(ChainBusy, match=f"^{chain}: " + BUSY.format(31337) + "$") as caught:
            lock_chain(chain)
        assert caught.value.pid == 31337
        with pytest.raises(ChainBusy):
            ChainWriter(chain, {"id": "m"})
    assert writer_pid(chain) is None  # the lock went with its holder
    with lock_chain(chain):
        assert writer_pid(chain) == os.getpid()


def test_the_lock_is_reentrant_in_one_process_and_goes_with_the_last_reference(chain):
    first = lock_chain(chain)
    second = lock_chain(chain)
    assert holds_lock(chain) and (chain / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    first.release()
    first.release()  # idempotent: one reference, released once
    assert holds_lock(chain) and writer_pid(chain) == os.getpid()
    second.release()
    assert not holds_lock(chain) and writer_pid(chain) is None
    assert not (chain / LOCK_NAME).exists()  # a clean stop leaves the folder as it was


def test_a_stale_lock_file_blocks_nothing(chain):
    (chain / LOCK_NAME).write_text("999999\n")  # left by a process killed with -9
    assert writer_pid(chain) is None
    with lock_chain(chain):
        assert (chain / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    append_step(chain, "resumed")  # ChainWriter.reopen takes it too
    assert read_chain(chain).last_step == 3


def test_a_new_chain_folder_goes_again_when_no_header_was_written(tmp_path):
    folder = tmp_path / "a" / "b" / "c"
    with lock_chain(folder, create=True):
        assert folder.is_dir() and writer_pid(folder) == os.getpid()
    assert not (tmp_path / "a").exists()
    with lock_chain(tmp_path / "kept", create=True):
        ChainWriter.create(tmp_path / "kept", {"kind": "header", "models": {}}, None).close()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [LOG_NAME]


def test_missing_and_busy_folders_are_user_errors(tmp_path):
    with pytest.raises(ChainLogError, match=f"^{tmp_path / 'nope'}: no such chain folder$"):
        lock_chain(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_reopen_and_upgrade_respect_the_lock_and_readers_do_not_need_it(chain):
    logged = read_chain(chain)
    before = (chain / LOG_NAME).read_bytes()
    with held_elsewhere(chain):
        with pytest.raises(ChainBusy):
            ChainWriter.reopen(logged)
        with pytest.raises(ChainBusy):
            upgrade(logged)
        with pytest.raises(ChainBusy):
            append_step(chain, "a second writer")
        assert read_chain(chain).last_step == 2  # readers never take it and never block
        assert LogTail(chain).read().steps == 2
    assert (chain / LOG_NAME).read_bytes() == before


def test_a_writer_refuses_a_reading_that_another_writer_made_stale(chain):
    stale = read_chain(chain)
    append_step(chain, "appended by another writer meanwhile")
    with pytest.raises(ChainLogError, match="changed since it was read"):
        ChainWriter.reopen(stale)
    assert read_chain(chain).last_step == 3  # the step appended meanwhile is still there


# ------------------------------------------------------------------------------------- the command line


def test_resume_is_refused_at_once_while_another_process_writes(chain, capsys):
    with held_elsewhere(chain, pid=777):
        began = time.monotonic()
        code = main(["loop", "--resume", str(chain), "--steps", "9"])
        took = time.monotonic() - began
    assert code == 2 and took < 2.0  # before the log is read or a model loads
    assert one_error_line(capsys.readouterr().err) == f"error: {chain}: another process (pid 777) is writing this chain"
    assert read_chain(chain).last_step == 2


def test_a_new_loop_and_a_fork_into_a_folder_being_written_are_refused(chain, tmp_path, capsys):
    target = tmp_path / "target"
    target.mkdir()
    with held_elsewhere(target, pid=778):
        cfg = tmp_path / "small.yaml"
        cfg.write_text(SMALL)
        assert main(["loop", str(cfg), "--models", "tiny", "--steps", "1", "--out", str(target)]) == 2
        assert "another process (pid 778) is writing this chain" in one_error_line(capsys.readouterr().err)
        assert main(["replay", "fork", str(chain), "--from-step", "1", "--out", str(target)]) == 2
        assert "another process (pid 778) is writing this chain" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in target.iterdir()) == [LOCK_NAME]  # the other "process" left its stale file


def test_a_loop_that_fails_before_its_header_leaves_no_folder(tmp_path, capsys):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    out = tmp_path / "out" / "run"
    assert main(["loop", str(cfg), "--models", "painter=/no/such/folder", "--steps", "1", "--out", str(out)]) == 2
    assert not (tmp_path / "out").exists()
    assert main(["loop", str(cfg), "--models", "painter=/no/such/folder", "--chains", "2", "--steps", "1",
                 "--out", str(out)]) == 2
    assert not (tmp_path / "out").exists()
    capsys.readouterr()


# ------------------------------------------------------------------------------------- real processes


def run_loop(*args) -> list[str]:
    return [sys.executable, str(ROOT / "run_loop.py"), *map(str, args)]


@pytest.fixture
def small(tmp_path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def wait_for_steps(folder: Path, steps: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    log = folder / LOG_NAME
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.read_bytes().count(b'"kind": "step"') >= steps):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.e2e
def test_two_resumes_started_together_one_writes_and_the_other_exits_2(tmp_path, small):
    folder = tmp_path / "c"
    first = subprocess.run(run_loop("loop", small, "--models", "tiny", "--steps", "2", "--out", folder),
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    began = time.monotonic()
    procs = [subprocess.Popen(run_loop("loop", "--resume", folder, "--steps", "8"), env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ended: dict[int, float] = {}
    while len(ended) < 2:
        for i, p in enumerate(procs):
            if i not in ended and p.poll() is not None:
                ended[i] = time.monotonic() - began
        assert time.monotonic() - began < 300
        time.sleep(0.05)
    outputs = [p.communicate() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outputs
    loser = next(i for i, p in enumerate(procs) if p.returncode == 2)
    winner = 1 - loser
    assert ended[loser] < 5.0
    assert one_error_line(outputs[loser][1]) == (
        f"error: {folder}: another process (pid {procs[winner].pid}) is writing this chain")
    chain = read_chain(folder)
    assert chain.warnings == [] and [s["step"] for s in chain.steps] == list(range(1, 9))
    assert sorted(p.name for p in folder.iterdir()) == [LOG_NAME] + [f"step-{n:06d}.png" for n in range(1, 9)]


@pytest.mark.e2e
def test_after_kill_9_the_lock_is_gone_and_resume_works_at_once(tmp_path, small):
    folder = tmp_path / "c"
    proc = subprocess.Popen(run_loop("loop", small, "--models", "tiny", "--steps", "200", "--out", folder), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_steps(folder, 3, proc)
        assert writer_pid(folder) == proc.pid  # another process: asked with F_OFD_GETLK
        with pytest.raises(ChainBusy, match=BUSY.format(proc.pid)):
            lock_chain(folder)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert (folder / LOCK_NAME).exists() and writer_pid(folder) is None  # a stale file, no lock
    killed_at = read_chain(folder).last_step
    result = subprocess.run(run_loop("loop", "--resume", folder, "--steps", killed_at + 2), env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"resuming {folder} at step {killed_at + 1}" in result.stdout
    assert [s["step"] for s in read_chain(folder).steps] == list(range(1, killed_at + 3))
    assert not (folder / LOCK_NAME).exists()


@pytest.mark.e2e
def test_k_chains_each_lock_their_own_folder(tmp_path, small):
    out = tmp_path / "wall"
    proc = subprocess.Popen(run_loop("loop", small, "--models", "tiny", "--chains", "2", "--steps", "200", "--out",
                                     out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_steps(out / "chain-2", 1, proc)
        assert writer_pid(out / "chain-1") == proc.pid and writer_pid(out / "chain-2") == proc.pid
        other = subprocess.run(run_loop("loop", "--resume", out / "chain-1", "--steps", "300"), env=ENV,
                               capture_output=True, text=True, timeout=60)
        assert other.returncode == 2 and f"(pid {proc.pid}) is writing this chain" in other.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    for k in (1, 2):
        assert writer_pid(out / f"chain-{k}") is None and not (out / f"chain-{k}" / LOCK_NAME).exists()
        read_chain(out / f"chain-{k}")


def test_an_unwritable_chain_folder_is_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from zoetrope.cli.main import main
    from zoetrope.stages import models

    monkeypatch.setattr(models, "load_painter", lambda *a, **k: pytest.fail("a model was loaded"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out, reason in ((blocker / "chain", "is a file, not a folder"),
                        (Path("/proc/zoetrope-chain"), "special file system")):
        assert main(["loop", "loops/counterfeits.yaml", "--models", "tiny", "--steps", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {out}: cannot write here (") and reason in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
