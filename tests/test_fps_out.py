"""`fps_out`: ffmpeg's motion-compensated interpolation (minterpolate) inside the one encoder process: the exact
frame count round(frames x fps_out / fps), the same duration, real in-between frames, and the last painted frame
kept (minterpolate alone drops the film's tail)."""

from __future__ import annotations

import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from zoetrope.film.encode import FrameWriter, ffmpeg_exe, interpolation_frames, probe

W, H, BAR = 96, 32, 8


def bar(x: int) -> np.ndarray:
    """A white bar at column x on black: its centre is easy to find again after H.264."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, x:x + BAR] = 255
    return frame


def bar_positions(path) -> list[float]:
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    out = []
    for raw in reader:
        column = np.frombuffer(raw, np.uint8).reshape(H, W, 3)[:, :, 0].astype(float).mean(0)
        out.append(float((column * np.arange(W)).sum() / column.sum()) - (BAR - 1) / 2)
    return out


def duration(path) -> float:
    stderr = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return float(re.search(r"Duration: 00:00:(\d+\.\d+)", stderr)[1])


@pytest.mark.parametrize("n, fps, fps_out, expected", [(10, 24, 48, 20), (24, 24, 30, 30), (7, 12, 30, 18),
                                                       (5, 8, 24, 15), (10, 7.5, 24, 32), (1, 12, 24, 2)])
def test_interpolated_film_has_the_exact_frame_count_and_duration(tmp_path, n, fps, fps_out, expected):
    assert interpolation_frames(n, fps, fps_out) == expected
    out, step = tmp_path / "f.mp4", min(6, (W - BAR) // max(1, n - 1))
    with FrameWriter(out, fps, (W, H), fps_out=fps_out, frames=n, crf=0) as film:
        for i in range(n):
            film.write(bar(i * step))
    assert film.frames_out == expected
    info = probe(out)
    assert (info["frames"], info["fps"], info["size"]) == (expected, fps_out, (W, H))
    assert duration(out) == pytest.approx(expected / fps_out, abs=0.02)
    positions = bar_positions(out)
    assert positions[0] == pytest.approx(0, abs=0.6)
    assert positions[-1] == pytest.approx((n - 1) * step, abs=0.6)  # the last painted frame is in the film


def test_in_between_frames_are_interpolated_not_repeated(tmp_path):
    out = tmp_path / "f.mp4"
    with FrameWriter(out, 12, (W, H), fps_out=24, frames=8, crf=0) as film:
        for i in range(8):
            film.write(bar(i * 8))
    positions = bar_positions(out)
    assert len(positions) == 16
    # Output frame k shows the film at k/24 s: painted frame k/2 on even k, the bar on its way on odd k. (The
    # first in-between repeats frame 0: minterpolate's scene-change test has no earlier frame there; the last,
    # past the last painted frame, holds it.)
    for k in range(0, 16, 2):
        assert positions[k] == pytest.approx(k * 4, abs=0.6), (k, positions)
    for k in range(3, 15, 2):
        assert k * 4 - 2 <= positions[k] <= k * 4 + 2, (k, positions)  # not a repeat of either neighbour


def test_audio_follows_the_interpolated_picture(tmp_path):
    song = tmp_path / "song.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:d=5", str(song)],
                   check=True)
    out = tmp_path / "f.mp4"
    with FrameWriter(out, 8, (W, H), fps_out=24, frames=10, audio=song) as film:
        for i in range(10):
            film.write(bar(i * 4))
    info = probe(out)
    assert info["audio"] and info["frames"] == 30 and duration(out) == pytest.approx(1.25, abs=0.05)


def test_fps_out_refuses_what_it_cannot_keep_exact(tmp_path):
    with pytest.raises(ValueError, match=r"`fps_out` must be above the painted `fps` \(24\) but is 24"):
        FrameWriter(tmp_path / "f.mp4", 24, (W, H), fps_out=24, frames=3)
    with pytest.raises(ValueError, match="`fps_out` needs `frames`"):
        FrameWriter(tmp_path / "f.mp4", 24, (W, H), fps_out=48)
    with pytest.raises(ValueError, match=r"one more than `frames` \(2\)"), \
            FrameWriter(tmp_path / "f.mp4", 12, (W, H), fps_out=24, frames=2) as film:
        for i in range(3):
            film.write(bar(i))
    with pytest.raises(ValueError, match="1 frames were written but `frames` is 2"), \
            FrameWriter(tmp_path / "f.mp4", 12, (W, H), fps_out=24, frames=2) as film:
        film.write(bar(0))
    assert list(tmp_path.iterdir()) == []  # no film, no temp file
