"""Nothing lost, nothing half-written: output paths checked before the painter loads, ffmpeg's failures as one
line naming the film, shared frame caches, and kill -9 at random moments of a render."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_render_cli import SCRIPT, UNIQUE
from zoetrope.base.errors import UserError
from zoetrope.base.files import is_temp_name, sweep_temps, temp_name, temp_owner
from zoetrope.cli.main import main
from zoetrope.film.encode import probe

ROOT = Path(__file__).resolve().parent.parent


def mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a tmpfs on `folder` (root only; False where this machine does not allow it)."""
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write in, as root too (permission bits do not stop root): a read-only tmpfs, else
    the immutable attribute, else (not root) mode 0555. Yields (folder, the reason the error must give)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, "permission denied"
        folder.chmod(0o755)
    elif mount_tmpfs(folder, "ro,size=64k"):
        try:
            yield folder, "read-only file system"
        finally:
            subprocess.run(["umount", str(folder)], check=False)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            yield folder, "not permitted"
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
    else:
        pytest.skip("neither a read-only mount nor chattr +i works here (the /proc and file cases still run)")


@pytest.fixture
def scene(tmp_path) -> Path:
    path = tmp_path / "moon.yaml"
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def no_painting(monkeypatch):
    """Fail the test if the render gets as far as loading its painter."""
    import zoetrope.stages.models

    def refuse(*args, **kwargs):
        raise AssertionError("the painter was loaded although an output path cannot be written")

    monkeypatch.setattr(zoetrope.stages.models, "load_painter", refuse)


def render(capsys, scene: Path, *args: str) -> tuple[int, str, str, float]:
    start = time.monotonic()
    code = main(["render", str(scene), "--models", "tiny", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, time.monotonic() - start


# ------------------------------------------------------------------------------------------ output paths


@pytest.mark.parametrize("where", ["out", "cache-root"])
def test_a_read_only_folder_is_refused_before_the_painter_loads(read_only_folder, scene, tmp_path, capsys,
                                                                 no_painting, where):
    folder, reason = read_only_folder
    if where == "out":
        args, named = ["--out", str(folder / "f.mp4"), "--cache-root", str(tmp_path / "cache")], folder / "f.mp4"
    else:
        args, named = ["--out", str(tmp_path / "f.mp4"), "--cache-root", str(folder)], folder / "moon" / "frames"
    code, out, err, seconds = render(capsys, scene, *args)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {named}: cannot write here ({reason})"] or (
        reason == "not permitted" and err.startswith(f"error: {named}: cannot write here (not permitted")), err
    assert seconds < 10
    assert not (tmp_path / "cache").exists() and not (tmp_path / "f.mp4").exists()


@pytest.mark.parametrize("case", ["out under a file", "out in /proc", "cache under a file", "srt is a folder",
                                  "out is a folder"])
def test_unwritable_outputs_are_one_line_and_nothing_is_written(scene, tmp_path, capsys, no_painting, case):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    film, cache = tmp_path / "films" / "f.mp4", tmp_path / "cache"
    if case == "out under a file":
        film, expected = blocker / "f.mp4", f"{blocker / 'f.mp4'}: cannot write here ({blocker} is a file, not a folder)"
    elif case == "out in /proc":
        film = Path("/proc/zoetrope-film.mp4")
        expected = f"{film}: cannot write here (/proc is a special file system that takes no new files)"
    elif case == "cache under a file":
        cache = blocker / "cache"
        expected = f"{cache / 'moon' / 'frames'}: cannot write here ({blocker} is a file, not a folder)"
    elif case == "srt is a folder":
        (tmp_path / "films" / "f.srt").mkdir(parents=True)
        expected = f"{tmp_path / 'films' / 'f.srt'}: cannot write here (it is a folder; the film's .srt sidecar goes there)"
    else:
        film = tmp_path / "films" / "dir.mp4"
        film.mkdir(parents=True)
        expected = f"{film}: cannot write here (it is a folder; give a file name)"
    code, out, err, seconds = render(capsys, scene, "--out", str(film), "--cache-root", str(cache))
    assert (code, out) == (2, "") and err.strip().splitlines() == [f"error: {expected}"], err
    assert seconds < 10
    assert not any(tmp_path.rglob("*.png")) and not any(tmp_path.rglob("*.mp4*")) or case == "out is a folder"
    assert not [p for p in tmp_path.rglob("*") if is_temp_name(p.name) or "write-probe" in p.name]


# --------------------------------------------------------------------------------------------- ffmpeg


def test_a_failing_ffmpeg_is_one_line_naming_the_film_and_its_reason(scene, tmp_path, capsys, monkeypatch):
    import zoetrope.film.encode

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho \"[vost#0:0/libx264 @ 0x55d] Unknown encoder 'libx264'\" >&2\n"
                    "echo '    Last message repeated 1 times' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(zoetrope.film.encode, "ffmpeg_exe", lambda: str(fake))
    film = tmp_path / "films" / "f.mp4"
    code, _, err, _ = render(capsys, scene, "--out", str(film), "--cache-root", str(tmp_path / "cache"))
    assert code == 2
    assert err.strip().splitlines()[-1] == f"error: {film}: ffmpeg could not write the film (Unknown encoder 'libx264')"
    assert "Traceback" not in err and "Broken pipe" not in err
    assert list(film.parent.iterdir()) == []  # no film, no temp, no .srt


def test_a_full_disk_is_ffmpegs_reason_and_no_film_is_left(scene, tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    if not mount_tmpfs(films, "size=4k"):
        pytest.skip("a small tmpfs cannot be mounted here (root only); the failing-ffmpeg test covers the path")
    try:
        film = films / "f.mp4"
        code, _, err, _ = render(capsys, scene, "--out", str(film), "--cache-root", str(tmp_path / "cache"))
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith(f"error: {film}: ")
        assert "No space left on device" in err
        assert list(films.iterdir()) == []
    finally:
        subprocess.run(["umount", str(films)], check=False)


def test_a_failing_srt_write_names_the_file(tmp_path, monkeypatch):
    import zoetrope.film.encode

    def full(path, data, sync=True):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(zoetrope.film.encode, "write_durable", full)
    with pytest.raises(UserError, match=r"f\.srt: cannot write the subtitles \(No space left on device\)"):
        zoetrope.film.encode.write_srt([(0.0, 1.0, "x")], tmp_path / "f.srt")


# --------------------------------------------------------------------------------------- shared caches


def test_temp_names_carry_their_writer_and_only_dead_writers_temps_are_swept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = temp_name(tmp_path / "a.png")
    assert temp_owner(mine.name) == (os.getpid(), "a.png")
    assert temp_owner(temp_name(tmp_path / "f.mp4", keep_suffix=True).name) == (os.getpid(), "f.mp4")
    assert temp_owner("a.png") is None
    left = tmp_path / f".b.png.{dead.pid}-0123456789abcdef.tmp"
    film = tmp_path / f".f.partial-{dead.pid}-0123456789abcdef.mp4"
    live = tmp_path / f".c.png.{os.getppid()}-0123456789abcdef.tmp"  # a running process's write
    for path in (mine, left, film, live):
        path.write_bytes(b"x")
    assert sorted(p.name for p in sweep_temps(tmp_path, ["f.mp4"])) == [film.name]
    assert sorted(p.name for p in sweep_temps(tmp_path)) == [left.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, live.name])
    assert sweep_temps(tmp_path / "missing") == []


def test_the_call_width_is_a_rule_of_device_type_and_size_never_a_measurement():
    """Issue 25: the walk's call shape is a function of what the user chose; nothing is timed or measured."""
    from types import SimpleNamespace

    from zoetrope.film.walk import call_rows, call_shape

    assert [call_rows("cpu", s, s) for s in (64, 128, 256, 384, 512, 1024)] == [8, 8, 8, 3, 2, 1]
    assert [call_rows("cuda:0", s, s) for s in (256, 512, 768, 1024)] == [8, 8, 3, 2]
    cpu = SimpleNamespace(plan=SimpleNamespace(device="cpu"), decodes_per_row=True)
    gpu = SimpleNamespace(plan=SimpleNamespace(device="cuda"), decodes_per_row=False)
    assert call_shape(cpu, 256, 256) == (8, 1, 1) and call_shape(cpu, 256, 256, rows=3) == (3, 1, 1)
    assert call_shape(gpu, 512, 512) == (8, None, None)


def test_frames_another_render_saves_meanwhile_are_not_painted_again(tiny_painter, tmp_path, monkeypatch):
    import zoetrope.film.walk as walk
    from zoetrope.settings.scene import load_film

    path = tmp_path / "moon.yaml"
    path.write_text(SCRIPT)
    (_, script), = load_film(path).scenes
    plan = walk.plan_scene("moon", script, walk.painter_identity(tiny_painter), rows=4)
    cache = tmp_path / "frames"
    jobs = walk.needed_jobs(plan)
    real, painted = walk.Walker.paint, []

    def paint_and_meanwhile(self, batch):
        painted.extend(j.key for j in batch)
        if len(painted) == len(batch):  # another render saves three later frames while we paint the first batch
            for job in jobs[6:9]:
                (cache / f"{job.key}.png").write_bytes(b"another render's frame")
        return real(self, batch)

    monkeypatch.setattr(walk.Walker, "paint", paint_and_meanwhile)
    from zoetrope.film.engines.walk import render_missing

    stats = render_missing(tiny_painter, plan, cache)
    assert (stats.cached, stats.rendered) == (3, UNIQUE - 3)
    assert not {j.key for j in jobs[6:9]} & set(painted) and len(painted) == UNIQUE - 3


@pytest.mark.e2e
def test_two_renders_into_one_cache_at_once_make_the_same_film(tmp_path):
    scene = tmp_path / "moon.yaml"
    scene.write_text(SCRIPT)
    cache = tmp_path / "cache"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}

    def together(*outs: Path) -> list[subprocess.CompletedProcess]:
        procs = [subprocess.Popen([sys.executable, str(ROOT / "run_loop.py"), "render", str(scene), "--models", "tiny",
                                   "--cache-root", str(cache), "--out", str(out)], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for out in outs]
        runs = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            runs.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return runs

    a, b = tmp_path / "a" / "f.mp4", tmp_path / "b" / "f.mp4"
    for run in together(a, b):  # a cold cache: both paint, each frame is renamed into place whole
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert a.read_bytes() == b.read_bytes() and probe(a)["frames"] == 14
    assert a.with_suffix(".srt").read_text() == b.with_suffix(".srt").read_text()
    same = tmp_path / "same" / "f.mp4"
    for run in together(same, same):  # one film path: each writes its own temp and renames it whole
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert same.read_bytes() == a.read_bytes()
    frames = cache / "moon" / "frames"
    assert len(list(frames.glob("*.png"))) == UNIQUE
    assert [p.name for p in tmp_path.rglob("*") if is_temp_name(p.name)] == []
    assert not (frames / "rows.json").exists()  # planning writes nothing beside the frames (issue 25)


@pytest.mark.e2e
def test_a_bad_output_path_fails_in_seconds_from_the_command_line(tmp_path):
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "run_loop.py"), "render", "scenes/trip-to-the-moon.yaml",
                          "--models", "tiny", "--out", "/proc/film.mp4", "--cache-root", str(tmp_path / "c")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    seconds = time.monotonic() - start
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == "error: /proc/film.mp4: cannot write here (/proc is a special file system that " \
                                 "takes no new files)"
    assert seconds < 10 and not (tmp_path / "c").exists()


@pytest.mark.e2e
def test_kill_9_at_random_moments_loses_no_frame_and_leaves_the_same_film():
    """bench/kill_render.py with a few kills: every cached frame is the uninterrupted render's, none is lost,
    no temp file is left after the rerun, and the finished film is the uninterrupted one."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "kill_render.py"), "--kills", "4", "--seed", "3",
                          "--transition", "1.0"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert lines[-1] == "kill_resume_lost_frames: 0"
    for name in ("frames_not_the_uninterrupted_ones", "temp_files_left", "films_differing"):
        assert f"kill_render_{name}: 0" in lines
    assert int(next(line for line in lines if "kills_after_the_load" in line).split(": ")[1]) >= 1
