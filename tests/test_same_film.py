"""Issue 25, "same scene, same film": a film's bytes depend only on what the user chose, never on how busy the
machine was when its cache was made. Each render goes into a fresh cache; the second while two busy-loop
processes hold both cores (before 0.8 that chose another measured call width, so other keys and pixels)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_render_cli import SCRIPT

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {"HF_HUB_OFFLINE": "1"}
pytestmark = pytest.mark.e2e


@contextmanager
def busy_cores(n: int = 2):
    """`n` processes spinning on the CPU for the length of the block."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def render(script: Path, cache: Path, out: Path) -> str:
    run = subprocess.run([sys.executable, str(ROOT / "run_loop.py"), "render", str(script), "--models", "tiny",
                          "--cache-root", str(cache), "--out", str(out)], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return run.stdout


def test_a_scene_rendered_on_a_busy_machine_is_the_film_rendered_on_an_idle_one(tmp_path):
    scene = tmp_path / "moon.yaml"
    scene.write_text(SCRIPT)
    quiet = render(scene, tmp_path / "quiet", tmp_path / "quiet.mp4")
    with busy_cores():
        busy = render(scene, tmp_path / "busy", tmp_path / "busy.mp4")
    assert (tmp_path / "quiet.mp4").read_bytes() == (tmp_path / "busy.mp4").read_bytes()
    assert (tmp_path / "quiet.json").read_text() == (tmp_path / "busy.json").read_text().replace("busy.mp4",
                                                                                                  "quiet.mp4")
    assert "0 cached" in quiet and "0 cached" in busy  # both painted every frame, each in its own cache


def test_a_screenplay_and_the_yaml_written_from_it_make_one_film_busy_or_not(tmp_path):
    fountain = ROOT / "scenes" / "the-keeper.fountain"
    yaml_path = tmp_path / "the-keeper.yaml"
    wrote = subprocess.run([sys.executable, str(ROOT / "run_loop.py"), "scene", "from-screenplay", str(fountain),
                            "--out", str(yaml_path)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert wrote.returncode == 0, wrote.stderr
    render(fountain, tmp_path / "a", tmp_path / "fountain.mp4")
    with busy_cores():
        render(yaml_path, tmp_path / "b", tmp_path / "yaml.mp4")
    assert (tmp_path / "fountain.mp4").read_bytes() == (tmp_path / "yaml.mp4").read_bytes()
