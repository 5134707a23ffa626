"""`render --ray local:2` end to end (CLI subprocesses): the film equals a local render's frame for frame, also
when a worker process is killed with kill -9 while frames are being painted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
SCENE = """\
schema_version: 1
fps: 8
width: 64
height: 64
steps: 2
seed: 7
model: tiny
transition: 2.0
keyframes:
  - prompt: "a lantern in fog"
    subtitle: "a lantern"
  - prompt: "a ship on a dark sea"
  - prompt: "a lighthouse at dawn"
"""


def command(scene: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "run_loop.py", "render", str(scene), "--models", "tiny", "--rows", "2", "--out", str(out),
            "--cache-root", str(cache), *extra]


def env() -> dict:
    return os.environ | {"HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"}


def workers() -> list[int]:
    """Pids of Ray's model workers on this machine (the actors' processes are titled ray::ModelWorker)."""
    run = subprocess.run(["pgrep", "-f", "ray::ModelWorker"], capture_output=True, text=True)
    return [int(p) for p in run.stdout.split()]


@pytest.fixture(scope="module")
def local_film(tmp_path_factory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("local")
    (folder / "scene.yaml").write_text(SCENE)
    out = folder / "film.mp4"
    run = subprocess.run(command(folder / "scene.yaml", out, folder / "cache"), cwd=ROOT, env=env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return folder / "scene.yaml", out.read_bytes()


def test_a_film_rendered_on_two_ray_workers_equals_the_local_film(local_film, tmp_path):
    scene, film = local_film
    run = subprocess.run(command(scene, tmp_path / "film.mp4", tmp_path / "cache", "--ray", "local:2"), cwd=ROOT,
                         env=env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "on 2 Ray workers" in run.stdout
    assert (tmp_path / "film.mp4").read_bytes() == film


def test_a_worker_killed_while_painting_leaves_the_film_unchanged(local_film, tmp_path):
    scene, film = local_film
    before = set(workers())
    proc = subprocess.Popen(command(scene, tmp_path / "film.mp4", tmp_path / "cache", "--ray", "local:2"), cwd=ROOT,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        painted = list((tmp_path / "cache").glob("*/frames/*.png"))
        mine = [p for p in workers() if p not in before]
        if painted and mine:  # frames are being painted: kill one worker mid-render
            killed = mine[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "the render finished before a worker could be killed"
    assert proc.returncode == 0, err
    assert (tmp_path / "film.mp4").read_bytes() == film


def test_a_film_file_with_video_engines_on_two_ray_workers_equals_the_local_film(tmp_path):
    """Walk, ltx and animatediff scenes (scenes/frankenstein.yaml, smaller): the workers render the video chunks too (the
    driver holds only a PoolClip per engine, which cannot paint), and the film's bytes are the local render's."""
    import yaml

    film = yaml.safe_load((ROOT / "scenes" / "frankenstein.yaml").read_text())
    for part in film["scenes"]:  # the same film at 64x64 with 2 steps: the same chunks, a quarter of the time
        part.update(width=64, height=64, steps=2)
    scene = tmp_path / "frankenstein.yaml"
    scene.write_text(yaml.safe_dump(film, sort_keys=False))

    def render(name: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = command(scene, tmp_path / name / "film.mp4", tmp_path / name / "cache", *extra)
        cmd[cmd.index("--rows") + 1] = "4"
        return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)

    local = render("local")
    assert local.returncode == 0, local.stderr
    ray = render("ray", "--ray", "local:2")
    assert ray.returncode == 0, ray.stderr
    assert "on 2 Ray workers" in ray.stdout
    for engine in ("ltx", "animatediff"):  # every chunk rendered now, as in the local render
        line = next(line for line in ray.stdout.splitlines() if f"{engine} " in line and "rendered" in line)
        assert " 0 rendered" not in line, line
    assert (tmp_path / "ray" / "film.mp4").read_bytes() == (tmp_path / "local" / "film.mp4").read_bytes()
    chunks = sorted(p.relative_to(tmp_path / "ray" / "cache") for p in (tmp_path / "ray" / "cache").glob("*/frames/c*"))
    assert chunks and chunks == sorted(p.relative_to(tmp_path / "local" / "cache")
                                       for p in (tmp_path / "local" / "cache").glob("*/frames/c*"))
