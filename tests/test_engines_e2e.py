"""The engines' acceptance, end to end (CLI subprocesses, tiny models): each example film (ltx, animatediff,
and a film file mixing walk, ltx and animatediff scenes) renders to an H.264 film with exactly its planned
frames; a rerun renders nothing new; a render killed with kill -9 mid-way, then rerun, gives the same bytes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoetrope.film.encode import probe
from zoetrope.settings.scene import load_film

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["scenes/the-raven.yaml", "scenes/ode-to-the-west-wind.yaml", "scenes/frankenstein.yaml"]


def command(scene: str, out: Path, cache: Path) -> list[str]:
    return [sys.executable, "run_loop.py", "render", scene, "--models", "tiny", "--out", str(out),
            "--cache-root", str(cache)]


def run(scene: str, out: Path, cache: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command(scene, out, cache), cwd=ROOT, env=os.environ | {"HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def units(cache: Path) -> int:
    """Finished units in the caches: walk frames and whole video chunks (temp names excluded)."""
    return (len([p for p in cache.glob("*/frames/*.png") if not p.name.startswith(".")])
            + len([p for p in cache.glob("*/frames/c*") if p.is_dir()]))


@pytest.mark.parametrize("scene", EXAMPLES)
def test_an_example_renders_exactly_resumes_and_survives_kill_9(scene, tmp_path):
    film = run(scene, tmp_path / "film.mp4", tmp_path / "cache")
    first_line = film.stdout.splitlines()[0]
    assert re.match(r"scene \S+: (walk|ltx|animatediff) with ", first_line), first_line
    info = probe(tmp_path / "film.mp4")
    planned = load_film(ROOT / scene).frame_count()
    assert info["codec"] == "h264" and info["frames"] == planned
    assert (tmp_path / "film.json").is_file() and (tmp_path / "film.srt").is_file()

    again = run(scene, tmp_path / "again.mp4", tmp_path / "cache")
    assert re.search(r"^frames: \d+ cached, 0 rendered$", again.stdout, re.M), again.stdout
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "film.mp4").read_bytes()

    # kill -9 once the first unit (a walk frame or a whole chunk) is in the cache, then finish the render
    cache = tmp_path / "killed-cache"
    proc = subprocess.Popen(command(scene, tmp_path / "killed.mp4", cache), cwd=ROOT,
                            env=os.environ | {"HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and units(cache) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the render finished before it could be killed"
    assert not (tmp_path / "killed.mp4").exists()
    resumed = run(scene, tmp_path / "killed.mp4", cache)
    assert not re.search(r"^frames: 0 cached", resumed.stdout, re.M), resumed.stdout  # it resumed
    assert (tmp_path / "killed.mp4").read_bytes() == (tmp_path / "film.mp4").read_bytes()
