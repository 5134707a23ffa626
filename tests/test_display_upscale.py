"""`display.upscale`: upscaled copies of the steps for a 4K kiosk (loop/display.py) that leave the chain's PNGs
and log byte for byte as they are, never fail it, and that `serve` shows. The tiny painter, captioner and x2
upscaler are real pipelines with tiny weights."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from PIL import Image

from tests.gallery_helpers import append_step, config, make_chain
from zoetrope.base.errors import UserError
from zoetrope.cli.main import main
from zoetrope.gallery.serve import ChainWatcher, display_copy, safe_chain_file
from zoetrope.loop.chainlog import LOG_NAME, read_chain
from zoetrope.loop.display import DISPLAY_DIR, DisplayCache
from zoetrope.settings.loop import load_loop_config

SMALL = "name: small\nseed: 5\npaint:\n  width: 64\n  height: 64\nstart:\n  prompt: a lighthouse in fog\n"
UPSCALE = "display:\n  upscale:\n    scale: 2\n    model: sd-x2-latent-upscaler\n"


# ------------------------------------------------------------------------------------------- settings


def test_bad_scale_is_one_line_naming_the_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL + "display:\n  upscale:\n    scale: 3\n")
    with pytest.raises(UserError) as info:
        load_loop_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}:10: display.upscale.scale"), message


def test_upscale_defaults_off_and_hold_is_bounded(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(SMALL + "display:\n  upscale:\n    scale: 4\n")
    spec = load_loop_config(path).display.upscale
    assert (spec.scale, spec.model_or_default(), spec.hold_s) == (4, "sd-x4-upscaler", 30.0)
    assert load_loop_config(None).display.upscale is None
    path.write_text(SMALL + "display:\n  upscale:\n    scale: 2\n    hold_s: -1\n")
    with pytest.raises(UserError, match=r"ok.yaml:11: display.upscale.hold_s"):
        load_loop_config(path)


# ------------------------------------------------------------------------------------ the cache, on fakes


class Doubler:
    """Upscales by pixel repetition; `fail` raises on the named steps' seeds; `gate` blocks each call."""

    def __init__(self, fail=(), gate: threading.Event | None = None):
        self.fail, self.gate, self.calls = set(fail), gate, []

    def upscale(self, images, prompt="", seed=0, steps=None):
        self.calls.append((prompt, seed, steps))
        if self.gate is not None:
            self.gate.wait(10)
        if seed in self.fail:
            raise RuntimeError("CUDA out of memory")
        return [im.resize((im.width * 2, im.height * 2), Image.NEAREST) for im in images]


def test_cache_writes_copies_keeps_the_last_and_logs_each_failure_kind_once(tmp_path, caplog):
    folder = make_chain(tmp_path / "chain", [f"caption {i}" for i in range(6)])
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    fake = Doubler(fail={2, 3})
    cache = DisplayCache(folder, lambda: fake, steps=7, keep=2)
    with caplog.at_level(logging.WARNING, logger="zoetrope.loop.display"):
        for record in read_chain(folder).steps:
            cache.submit(record)
            assert cache.wait_idle(10)
        cache.submit({"image": "step-000099.png", "prompt": "", "seed": 0, "step": 99})  # no such image
        cache.close()
    assert cache.written == ["step-000001.png", "step-000004.png", "step-000005.png", "step-000006.png"]
    assert sorted(p.name for p in (folder / DISPLAY_DIR).iterdir()) == ["step-000005.png", "step-000006.png"]
    with Image.open(folder / "step-000006.png") as small, Image.open(folder / DISPLAY_DIR / "step-000006.png") as big:
        assert big.size == (small.width * 2, small.height * 2)
    assert fake.calls[0] == ("caption 0", 1, 7)  # the step's prompt and seed, the configured steps
    assert cache.failures == {"upscale:RuntimeError": 2, "read": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and any("out of memory" in w for w in warnings), warnings
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # the chain untouched


def test_a_failing_load_disables_the_cache_once_and_never_raises(tmp_path, caplog):
    folder = make_chain(tmp_path / "chain", ["a", "b"])
    loads = []

    def load():
        loads.append(1)
        raise OSError("sd-x2-latent-upscaler is not cached and HF_HUB_OFFLINE=1")

    cache = DisplayCache(folder, load)
    with caplog.at_level(logging.WARNING, logger="zoetrope.loop.display"):
        for record in read_chain(folder).steps:
            cache.submit(record)
            cache.wait_idle(10)
        cache.close()
    assert loads == [1] and cache.broken and cache.written == []
    assert len(caplog.records) == 1 and "not cached" in caplog.records[0].getMessage()


def test_submit_never_waits_for_the_upscaler_and_the_newest_step_wins(tmp_path):
    folder = make_chain(tmp_path / "chain", ["a", "b", "c", "d"])
    gate = threading.Event()
    fake = Doubler(gate=gate)
    cache = DisplayCache(folder, lambda: fake)
    steps = read_chain(folder).steps
    cache.submit(steps[0])
    deadline = time.monotonic() + 10
    while not fake.calls and time.monotonic() < deadline:  # the worker has taken step 1 and is blocked in it
        time.sleep(0.01)
    for record in steps[1:]:  # the worker is blocked on step 1: these return at once, 4 replaces 2 and 3
        cache.submit(record)
    gate.set()
    cache.close()
    assert cache.written == ["step-000001.png", "step-000004.png"]


# ------------------------------------------------------------------------------------------- serving


def test_serve_prefers_the_copy_and_holds_a_new_step_for_it(tmp_path):
    folder = make_chain(tmp_path / "chain", ["a"])
    watcher = ChainWatcher(folder, hold_s=30.0)
    assert watcher.poll() and watcher.current["step"] == 1  # the first read shows the newest step at once
    path = safe_chain_file(folder, "step-000001.png")
    assert display_copy(path) == path  # no copy: the original
    (folder / DISPLAY_DIR).mkdir()
    (folder / DISPLAY_DIR / "step-000001.png").write_bytes(b"upscaled")
    assert display_copy(path) == (folder / DISPLAY_DIR / "step-000001.png").resolve()

    append_step(folder, "b")
    assert not watcher.poll() and watcher.current["step"] == 1  # held: its copy is not there yet
    (folder / DISPLAY_DIR / "step-000002.png").write_bytes(b"upscaled 2")
    assert watcher.poll() and watcher.current["step"] == 2 and watcher.current["image"].endswith("&display=1")

    append_step(folder, "c")
    assert not watcher.poll()
    watcher._held = (watcher._held[0], watcher._held[1] - 31.0)  # hold_s has passed: the original is shown
    assert watcher.poll() and watcher.current["step"] == 3 and "display=1" not in watcher.current["image"]

    plain = ChainWatcher(folder)  # without display.upscale nothing is held
    assert plain.poll() and plain.current["step"] == 3


def test_a_copy_outside_the_display_folder_is_not_served(tmp_path):
    folder = make_chain(tmp_path / "chain", ["a"])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "step-000001.png").write_bytes(b"secret")
    (folder / DISPLAY_DIR).symlink_to(outside)
    path = safe_chain_file(folder, "step-000001.png")
    assert display_copy(path) == path


# ------------------------------------------------------------------------------ the loop, tiny models


def loop(tmp_path, name: str, extra: str = "") -> tuple:
    config_path = tmp_path / f"{name}.yaml"
    config_path.write_text(SMALL + extra)
    out = tmp_path / name
    assert main(["loop", str(config_path), "--models", "tiny", "--steps", "3", "--out", str(out)]) == 0
    return out, read_chain(out)


def test_tiny_loop_writes_2x_copies_and_leaves_the_chain_byte_identical(tmp_path, cpu):
    from zoetrope.cli.gallery import display_settings_for
    from zoetrope.stages.upscale import load_upscaler

    plain, plain_log = loop(tmp_path, "plain")
    shown, shown_log = loop(tmp_path, "shown", UPSCALE)
    spec = shown_log.header["config"]["display"]["upscale"]
    assert spec["model"] == "tiny" and spec["scale"] == 2  # --models tiny picked the tiny upscaler
    # The step lines and every PNG byte for byte as without it; the header differs only by the setting.
    lines = [(plain / LOG_NAME).read_text().splitlines()[1:], (shown / LOG_NAME).read_text().splitlines()[1:]]
    for a, b in zip(*lines, strict=True):
        a, b = json.loads(a), json.loads(b)
        a["seconds"] = b["seconds"] = None  # timings
        assert a == b
    for step in plain_log.steps:
        assert (plain / step["image"]).read_bytes() == (shown / step["image"]).read_bytes()
    headers = [plain_log.header["config"], shown_log.header["config"]]
    headers[1]["display"]["upscale"] = None
    assert headers[0] == headers[1]
    assert not (plain / DISPLAY_DIR).exists()
    # The newest step always has its copy (close() finishes it); every copy is exactly twice the size.
    copies = sorted(p.name for p in (shown / DISPLAY_DIR).iterdir())
    assert "step-000003.png" in copies and set(copies) <= {s["image"] for s in shown_log.steps}
    for name in copies:
        with Image.open(shown / name) as small, Image.open(shown / DISPLAY_DIR / name) as big:
            assert big.size == (128, 128) == (small.width * 2, small.height * 2) and big.mode == "RGB"
    assert not [p for p in (shown / DISPLAY_DIR).iterdir() if p.name.startswith(".")]  # no temp files left
    # The newest copy is the upscaler's output for the step's image, prompt and seed; serve reads the setting.
    last = shown_log.steps[-1]
    with Image.open(shown / last["image"]) as im:
        expected = load_upscaler("tiny", 2, cpu).upscale([im.convert("RGB")], prompt=last["prompt"], seed=last["seed"])
    with Image.open(shown / DISPLAY_DIR / last["image"]) as got:
        assert got.tobytes() == expected[0].tobytes()
    assert display_settings_for(shown, None).display.upscale.hold_s == 30.0
    assert config().display.upscale is None
