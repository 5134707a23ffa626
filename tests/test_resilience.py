"""The resilient runner on fakes: identical output when nothing goes wrong, retries with backoff, the
OOM path, black images, the disk-full pause, the budget wait, the watchdog and energy."""

from __future__ import annotations

import errno
import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fakes import FakeCaptioner, FakePainter
from tests.gallery_helpers import FakeTime, config, header, make_runner
from zoetrope.base.errors import UserError
from zoetrope.base.files import is_temp_name, sha256_file, temp_name
from zoetrope.loop import chainlog
from zoetrope.loop.care.budget import Budget
from zoetrope.loop.care.watchdog import LoopState, Watchdog, sd_notify
from zoetrope.loop.chain import Chain, step_seed
from zoetrope.loop.chainlog import ChainWriter, read_chain, step_record
from zoetrope.loop.runner import Extras, StepFailed, is_black, is_oom
from zoetrope.settings.loop import BudgetSettings


def folder_state(folder):
    """Everything on disk: names, and the log's bytes."""
    return sorted(p.name for p in folder.iterdir()), (folder / "chain.jsonl").read_bytes()


def assert_intact(folder, steps: int):
    chain = read_chain(folder)
    assert [s["step"] for s in chain.steps] == list(range(1, steps + 1))
    assert not chain.warnings
    for s in chain.steps:
        assert sha256_file(folder / s["image"]) == s["image_sha256"]
    assert not [p.name for p in folder.iterdir() if is_temp_name(p.name)]
    images = sorted(p.name for p in folder.glob("step-*.png"))
    assert images == [chainlog.step_image_name(n) for n in range(1, steps + 1)]
    return chain


def test_runner_writes_what_the_plain_loop_writes(tmp_path):
    cfg = config()
    # the plain loop, as before the gallery work
    writer = ChainWriter.create(tmp_path / "plain", header(cfg), None)
    name = sha = None
    for step in Chain(cfg, FakeCaptioner(), FakePainter()).run(None, until=4):
        rec = writer.commit(step_record(step, name, sha), step.image)
        name, sha = rec["image"], rec["image_sha256"]
    writer.close()
    runner, *_ = make_runner(tmp_path / "run", cfg, heartbeat=False)
    assert runner.run(None, None, None, until=4) == 4
    for n in range(1, 5):
        image = chainlog.step_image_name(n)
        assert (tmp_path / "plain" / image).read_bytes() == (tmp_path / "run" / image).read_bytes()
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in read_chain(tmp_path / "plain").steps]
    assert strip == [{k: v for k, v in s.items() if k != "seconds"} for s in read_chain(tmp_path / "run").steps]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in (tmp_path / "plain").iterdir())


class FlakyPainter(FakePainter):
    """Raises `errors[i]` on call i (None = paint normally)."""

    def __init__(self, errors):
        super().__init__()
        self.errors = list(errors)

    def paint(self, prompts, **kw):
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                self.calls.append({"failed": True, "params": kw["params"], "seeds": list(kw["seeds"])})
                raise error
        return super().paint(prompts, **kw)


def test_a_failing_step_is_retried_with_backoff(tmp_path):
    painter = FlakyPainter([None, RuntimeError("driver hiccup"), RuntimeError("driver hiccup")])
    runner, _, _, time = make_runner(tmp_path / "c", config(), painter=painter)
    assert runner.run(None, None, None, until=3) == 3
    assert time.sleeps == [2.0, 2.0, 2.0]  # backoff 2 s then 4 s, slept in slices of at most 2 s
    assert len(runner.state.errors) == 2 and runner.state.paused is None
    assert_intact(tmp_path / "c", 3)


def test_a_step_that_keeps_failing_exits_non_zero(tmp_path):
    painter = FlakyPainter([RuntimeError("broken")] * 10)
    runner, _, _, time = make_runner(tmp_path / "c", config(resilience={"retries": 2, "backoff_s": 1}),
                                     painter=painter)
    with pytest.raises(StepFailed, match="failed 3 times"):
        runner.run(None, None, None, until=3)
    assert len(painter.calls) == 3 and sum(time.sleeps) == pytest.approx(1 + 2)
    assert read_chain(tmp_path / "c").steps == []


def test_a_step_that_keeps_failing_exits_the_cli_with_status_3(tmp_path, monkeypatch):
    from zoetrope.cli import main as cli
    from zoetrope.loop import run as loop

    cfg = config(resilience={"retries": 0})
    writer = ChainWriter.create(tmp_path / "c", header(cfg), None)
    point = loop.Resumable(1, None, None, None, [])
    monkeypatch.setattr(cli, "stop_on_signals", loop.StopFlag)  # no signal handlers in the test process
    with pytest.raises(SystemExit) as exit_info:
        cli.drive_in_foreground(cfg, FlakyPainter([RuntimeError("x")]), FakeCaptioner(), writer, point,
                                echo=lambda line: None)
    assert exit_info.value.code == 3


def test_drive_raises_step_failed_rather_than_exiting(tmp_path):
    from zoetrope.loop import run as loop

    cfg = config(resilience={"retries": 0})
    writer = ChainWriter.create(tmp_path / "c", header(cfg), None)
    with pytest.raises(StepFailed, match="failed 1 times"):
        loop.drive(cfg, FlakyPainter([RuntimeError("x")]), FakeCaptioner(), writer,
                   loop.Resumable(1, None, None, None, []), loop.StopFlag())


def test_out_of_memory_frees_and_retries_once_smaller(tmp_path):
    cfg = config(paint={"width": 128, "height": 96})
    painter = FlakyPainter([None, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")])
    runner, *_ = make_runner(tmp_path / "c", cfg, painter=painter)
    assert runner.run(None, None, None, until=3) == 3
    assert [c["params"].width for c in painter.calls] == [128, 128, 96, 128]
    chain = assert_intact(tmp_path / "c", 3)
    step2 = chain.steps[1]
    assert step2["paint_params"]["width"] == 96 and step2["paint_params"]["height"] == 72
    assert step2["events"] == [{"kind": "oom_retry", "width": 96, "height": 72}]
    assert Image.open(tmp_path / "c" / step2["image"]).size == (96, 72)
    assert chain.steps[2]["paint_params"]["width"] == 128  # only the failed step is smaller


def test_out_of_memory_twice_exits(tmp_path):
    painter = FlakyPainter([RuntimeError("CUDA error: out of memory")] * 5)
    runner, *_ = make_runner(tmp_path / "c", config(paint={"width": 128, "height": 128}), painter=painter)
    with pytest.raises(StepFailed, match="out of memory again"):
        runner.run(None, None, None, until=2)
    assert len(painter.calls) == 2


def test_oom_is_recognised():
    assert is_oom(torch.OutOfMemoryError("x")) and is_oom(RuntimeError("CUDA out of memory."))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))


class BlackOncePainter(FakePainter):
    def __init__(self, black_calls):
        super().__init__()
        self.black_calls = set(black_calls)

    def paint(self, prompts, **kw):
        images = super().paint(prompts, **kw)
        if len(self.calls) - 1 in self.black_calls:
            return [Image.new("RGB", images[0].size)]
        return images


def test_a_black_image_is_reseeded(tmp_path):
    painter = BlackOncePainter({1})
    runner, *_ = make_runner(tmp_path / "c", config(), painter=painter)
    assert runner.run(None, None, None, until=2) == 2
    chain = assert_intact(tmp_path / "c", 2)
    step2 = chain.steps[1]
    retry_base = step_seed(7, 2, 1001)
    assert step2["events"] == [{"kind": "black_image", "attempt": 1, "retry_seed_base": retry_base}]
    assert step2["seed"] == step_seed(retry_base, 2) != step_seed(7, 2)
    assert painter.calls[1]["seeds"] == [step_seed(7, 2)] and painter.calls[2]["seeds"] == [step2["seed"]]
    assert not is_black(Image.open(tmp_path / "c" / step2["image"]))


def test_black_images_every_time_exit(tmp_path):
    runner, *_ = make_runner(tmp_path / "c", config(), painter=BlackOncePainter(range(100)))
    with pytest.raises(StepFailed, match="black images"):
        runner.run(None, None, None, until=2)


def test_is_black():
    assert is_black(Image.new("RGB", (8, 8))) and not is_black(Image.new("RGB", (8, 8), (0, 0, 90)))
    assert is_black(Image.fromarray(np.full((4, 4), np.nan, np.float32), mode="F"))


# ------------------------------------------------------------------------------------------- disk full


def test_disk_full_on_the_image_pauses_and_resumes_with_the_log_intact(tmp_path, monkeypatch):
    real = chainlog.writer.write_durable
    full = {"on": False}

    def write_durable(path, data):
        if full["on"]:  # a temp file half written, then the disk is full
            temp_name(path).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(chainlog.writer, "write_durable", write_durable)
    painter = FakePainter()
    seen = []

    def world(time):  # the disk fills at step 2 and empties after three checks
        seen.append((runner.state.paused, folder_state(tmp_path / "c")))
        if len(seen) == 3:
            full["on"] = False

    runner, _, _, time = make_runner(tmp_path / "c", config(resilience={"disk_retry_s": 2}), painter=painter)
    runner.on_step = lambda rec: full.update(on=rec["step"] == 1)
    time.on_sleep.append(world)
    assert runner.run(None, None, None, until=3) == 3
    assert [p for p, _ in seen] == ["disk_full"] * 3
    names, log = seen[0][1]  # while paused: no temp file, no step-000002.png, log ends at step 1
    assert "step-000002.png" not in names and not any(n.endswith(".tmp") for n in names if "heartbeat" not in n)
    assert log.endswith(b"\n") and log.count(b'"kind": "step"') == 1
    assert time.sleeps == [2.0] * 3 and runner.state.paused is None
    assert_intact(tmp_path / "c", 3)
    assert len(painter.calls) == 3  # the step was not painted again
    assert any("disk full" in message for _, message in runner.state.errors)


class HalfLineFile:
    """Wraps the log file: while `full`, writes half of what it is given, then fails with ENOSPC."""

    def __init__(self, inner, flags):
        self.inner, self.flags = inner, flags

    def write(self, data):
        if self.flags["full"]:
            self.inner.write(data[: len(data) // 2])
            self.inner.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_disk_full_on_the_log_line_leaves_no_half_line_nor_orphan_image(tmp_path, monkeypatch):
    flags = {"full": False}
    real_init = ChainWriter.__init__

    def init(self, folder, model_id):
        real_init(self, folder, model_id)
        self._log = HalfLineFile(self._log, flags)

    monkeypatch.setattr(ChainWriter, "__init__", init)
    seen = []

    def world(time):
        seen.append(((tmp_path / "c" / "chain.jsonl").read_bytes(), (tmp_path / "c" / "step-000003.png").exists(),
                     json.loads((tmp_path / "c" / "heartbeat.json").read_text())["paused"]))
        flags["full"] = len(seen) < 2

    runner, _, _, time = make_runner(tmp_path / "c", config(resilience={"disk_retry_s": 1}))
    runner.on_step = lambda rec: flags.update(full=rec["step"] == 2)
    time.on_sleep.append(world)
    assert runner.run(None, None, None, until=4) == 4
    assert len(seen) == 2
    for log, orphan, paused in seen:
        assert log.endswith(b"\n") and log.count(b'"kind": "step"') == 2 and not orphan and paused == "disk_full"
    assert_intact(tmp_path / "c", 4)


def test_low_free_space_pauses_before_writing(tmp_path):
    free = {"bytes": 10**12}
    details = []
    runner, painter, _, time = make_runner(tmp_path / "c", config(resilience={"min_free_mb": 100, "disk_retry_s": 2}),
                                           disk_free=lambda p: free["bytes"])
    runner.on_step = lambda rec: free.update(bytes=50 * 2**20) if rec["step"] == 1 else None

    def world(t):
        details.append((runner.state.paused, runner.state.pause_detail, len(list((tmp_path / "c").glob("step-*")))))
        if len(t.sleeps) == 2:
            free["bytes"] = 10**12

    time.on_sleep.append(world)
    assert runner.run(None, None, None, until=2) == 2
    assert details == [("disk_full", "50 MB free, below 100 MB", 1)] * 2 and time.sleeps == [2.0, 2.0]
    assert runner.state.paused is None
    assert_intact(tmp_path / "c", 2)


# ---------------------------------------------------------------------------------------------- budget


def test_budget_paces_images_per_hour(tmp_path):
    cfg = config(budget={"images_per_hour": 720})  # one every 5 s
    time = FakeTime()
    starts = []
    painter = FakePainter()
    extras = Extras(budget=Budget(cfg.budget, energy_measurable=False))
    runner, *_ = make_runner(tmp_path / "c", cfg, painter=painter, extras=extras, time=time)
    real_paint = painter.paint
    painter.paint = lambda prompts, **kw: (starts.append(time.now), real_paint(prompts, **kw))[1]
    assert runner.run(None, None, None, until=4) == 4
    assert np.diff(starts).tolist() == [5.0, 5.0, 5.0]
    steps = assert_intact(tmp_path / "c", 4).steps  # pacing never breaks the chain of inputs
    for previous, step in zip(steps, steps[1:], strict=False):
        assert (step["input_image"], step["input_sha256"]) == (previous["image"], previous["image_sha256"])


def test_budget_kwh_per_day_waits_for_spending_to_age_out():
    budget = Budget(BudgetSettings(kwh_per_day=0.001), energy_measurable=True)  # 3600 J a day
    assert budget.wait_s(0.0) == (0.0, None)
    budget.spend(100.0, 2000.0)
    budget.spend(200.0, 2000.0)
    seconds, why = budget.wait_s(300.0)
    assert seconds == pytest.approx(100.0 + 86400 - 300.0) and "kWh" in why
    assert budget.wait_s(100.0 + 86400)[0] == 0.0


def test_energy_budget_without_a_meter_is_an_error():
    with pytest.raises(UserError, match="kwh_per_day.*cannot be measured"):
        Budget(BudgetSettings(kwh_per_day=1.0), energy_measurable=False)


# ------------------------------------------------------------------------------------- watchdog, energy


def test_watchdog_notifies_systemd_and_writes_the_heartbeat(tmp_path):
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    try:
        state = LoopState(str(tmp_path / "c"))
        watchdog = Watchdog(state, tmp_path / "hb.json", environ={"NOTIFY_SOCKET": address})
        runner, *_ = make_runner(tmp_path / "c", config(), extras=Extras(watchdog=watchdog))
        assert runner.run(None, None, None, until=2) == 2
        messages = []
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
            if messages[-1] == "STOPPING=1":
                break
    finally:
        sock.close()
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert sum(m.startswith("WATCHDOG=1\n") for m in messages) >= 2 and "STATUS=step 2" in messages[-2]
    beat = json.loads((tmp_path / "hb.json").read_text())
    assert beat["last_step"] == 2 and beat["steps_this_run"] == 2 and beat["pid"] == os.getpid()
    assert beat["stopped"] is True and beat["errors_last_hour"] == 0
    assert sd_notify("WATCHDOG=1", environ={}) is False


class FakeMeter:
    def __init__(self):
        self.mj = 5_000_000

    def read_mj(self):
        self.mj += 1234  # each read sees 1.234 J more
        return self.mj


def test_energy_is_logged_when_measured_and_null_otherwise(tmp_path):
    from zoetrope.loop.care.energy import EnergyMeter

    assert EnergyMeter.open("cpu") is None
    runner, *_ = make_runner(tmp_path / "a", config(), extras=Extras(energy=FakeMeter()))
    runner.run(None, None, None, until=2)
    assert [s["energy_j"] for s in read_chain(tmp_path / "a").steps] == [1.234, 1.234]
    assert runner.state.energy_j_this_run == pytest.approx(2.468)
    runner, *_ = make_runner(tmp_path / "b", config())
    runner.run(None, None, None, until=2)
    assert [s["energy_j"] for s in read_chain(tmp_path / "b").steps] == [None, None]
