"""`run_loop.py loop` end to end on the tiny models: the log, resume after kill -9, clean stops, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from zoetrope.base.files import sha256_file
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import read_chain

ROOT = Path(__file__).resolve().parent.parent
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
SMALL = "name: small\nseed: 5\npaint:\n  width: 64\n  height: 64\nstart:\n  prompt: a lighthouse in fog\n"


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_loop.py"), *map(str, args)], cwd=kwargs.pop("cwd", ROOT),
                          env=ENV, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture
def small_config(tmp_path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def fingerprint(folder: Path) -> list[tuple]:
    return [(s["step"], s["caption"], s["seed"], s["image_sha256"]) for s in read_chain(folder).steps]


def assert_intact(folder: Path, steps: int) -> None:
    chain = read_chain(folder)
    assert chain.warnings == [] and [s["step"] for s in chain.steps] == list(range(1, steps + 1))
    for s in chain.steps:
        assert sha256_file(folder / s["image"]) == s["image_sha256"]
    assert sorted(p.name for p in folder.iterdir()) == ["chain.jsonl"] + [f"step-{n:06d}.png" for n in range(1, steps + 1)]


@pytest.mark.e2e
def test_counterfeits_smoke_writes_header_and_five_steps(tmp_path):
    out = tmp_path / "smoke"
    result = run("loop", "loops/counterfeits.yaml", "--models", "tiny", "--steps", "5", "--out", out)
    assert result.returncode == 0, result.stderr
    lines = (out / "chain.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "header" and header["schema_version"] == 2 and header["parent"] is None
    painter = header["models"]["painter"]
    assert (painter["id"], painter["revision"]) == ("tiny", "tiny-v1") and header["device"] == "cpu"
    assert re.fullmatch(r"[0-9a-f]{10}", painter["hash"])  # A1111's short hash of the tiny UNet's weights
    assert set(header["versions"]) == {"python", "torch", "diffusers", "transformers", "zoetrope"}
    steps = [json.loads(line) for line in lines[1:]]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    for s in steps:
        assert sha256_file(out / s["image"]) == s["image_sha256"]
        with Image.open(out / s["image"]) as png:
            assert "Steps: 1, Sampler: Euler, CFG scale: 0.0" in png.text["parameters"]
            assert f"Model hash: {painter['hash']}, Model: tiny" in png.text["parameters"]
    assert steps[1]["input_image"] == "step-000001.png" and steps[1]["input_sha256"] == steps[0]["image_sha256"]
    assert "step      5" in result.stdout


@pytest.mark.e2e
def test_two_runs_are_byte_identical_and_start_image_is_kept(tmp_path, small_config):
    start = tmp_path / "start.jpg"
    Image.new("RGB", (80, 60), (10, 120, 200)).save(start)
    for name in ("a", "b"):
        result = run("loop", small_config, "--models", "tiny", "--steps", "3", "--start-image", start, "--out", tmp_path / name)
        assert result.returncode == 0, result.stderr
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b")
    chain = read_chain(tmp_path / "a")
    assert chain.steps[0]["input_image"] == "start.png"
    assert chain.steps[0]["input_sha256"] == sha256_file(tmp_path / "a" / "start.png")
    assert chain.steps[0]["caption"]


@pytest.mark.e2e
def test_resume_after_kill_9_loses_nothing_and_matches_an_unbroken_run(tmp_path, small_config):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    assert run("loop", small_config, "--models", "tiny", "--steps", "12", "--out", unbroken).returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_loop.py"), "loop", str(small_config), "--models", "tiny",
                             "--steps", "12", "--out", str(broken)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = broken / "chain.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_chain(broken).last_step
    assert 4 <= killed_at < 12
    result = run("loop", "--resume", broken, "--steps", "12")
    assert result.returncode == 0, result.stderr
    assert f"resuming {broken} at step {killed_at + 1}" in result.stdout
    assert_intact(broken, 12)
    assert fingerprint(broken) == fingerprint(unbroken)


@pytest.mark.e2e
def test_sigterm_finishes_the_step_and_exits_0(tmp_path, small_config):
    out = tmp_path / "endless"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_loop.py"), "loop", str(small_config), "--models", "tiny",
                             "--out", str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "chain.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM" in stderr and "Traceback" not in stderr
    assert_intact(out, read_chain(out).last_step)


@pytest.mark.e2e
def test_corrupt_or_empty_start_image_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (bad, empty):
        out = tmp_path / f"out-{path.stem}"
        result = run("loop", "--models", "tiny", "--steps", "2", "--start-image", path, "--out", out)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and str(path) in result.stderr, result.stderr
        assert not out.exists()


@pytest.mark.parametrize("yaml_text, args, message", [
    ("paint: [1, 2\n", [], "invalid YAML"),
    ("colour: red\n", [], "colour: unknown key"),
    ("paint:\n  width: 12.5\n", [], "paint.width"),
    (SMALL, ["--models", "nobody/../x"], "not a preset"),
    (SMALL, ["--models", "sd-turbo"], "models pull sd-turbo"),
    (SMALL, ["--models", "painter=tiny,captioner=sd-turbo"], "is a painter preset"),
    (SMALL, ["--steps", "0"], "command line: steps"),
    (SMALL, ["--start-image", "/no/such/file.png"], "start image not found"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, yaml_text, args, message):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    out = tmp_path / "out"
    code = main(["loop", str(config), "--models", "tiny", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_resume_refuses_other_settings_and_missing_folders(tmp_path, capsys):
    assert main(["loop", "--resume", str(tmp_path / "nope")]) == 2
    assert "no such chain folder" in capsys.readouterr().err
    assert main(["loop", "--resume", str(tmp_path), "--seed", "3"]) == 2  # not a chain: that is said first
    assert "not a chain (no chain.jsonl" in capsys.readouterr().err
    (tmp_path / "chain.jsonl").write_text("{}\n")  # the options are refused before the log is read
    assert main(["loop", "--resume", str(tmp_path), "--seed", "3"]) == 2
    assert "only --steps, --device" in capsys.readouterr().err


def test_existing_chain_is_not_overwritten(tmp_path, small_config, capsys):
    out = tmp_path / "c"
    assert main(["loop", str(small_config), "--models", "tiny", "--steps", "1", "--out", str(out)]) == 0
    before = (out / "chain.jsonl").read_bytes()
    assert main(["loop", str(small_config), "--models", "tiny", "--steps", "1", "--out", str(out)]) == 2
    assert "already holds a chain" in capsys.readouterr().err and (out / "chain.jsonl").read_bytes() == before


def test_long_and_non_latin_prompts_run(tmp_path, small_config):
    out = tmp_path / "c"
    long_prompt = "שלום 猫 " + "a very long winding description of a harbour at dusk " * 12
    assert main(["loop", str(small_config), "--models", "tiny", "--steps", "2", "--out", str(out),
                 "--start-prompt", long_prompt]) == 0
    first = read_chain(out).steps[0]
    assert first["prompt"] == long_prompt and first["events"][0]["kind"] == "prompt_truncated"


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "stabilityai/sd-turbo" in out and "Salesforce/blip-image-captioning-base" in out and "tiny" in out
