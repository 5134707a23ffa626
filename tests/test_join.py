"""`join`: moviepy composes rendered films (crossfades, an audio bed), the project's encoder writes them: the exact
frame count where moviepy's own reader and writer lose one, blended crossfade frames, sound, one-line errors."""

from __future__ import annotations

import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from zoetrope.base.errors import UserError
from zoetrope.cli.main import main
from zoetrope.film.encode import FrameWriter, ffmpeg_exe, probe
from zoetrope.film.join import film_info, join_films

SIZE = (48, 32)


def film(path, frames: int, level: int, fps: int = 24, size=SIZE, audio=None):
    """A flat grey film: every frame `level`, so a crossfade's blend can be read back as a mean."""
    with FrameWriter(path, fps, size, audio=audio) as writer:
        for _ in range(frames):
            writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    return path


def levels(path) -> list[int]:
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    return [round(float(np.frombuffer(raw, np.uint8).mean())) for raw in reader]


def sine(path, seconds: float):
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
                    str(path)], check=True)
    return path


def duration(path) -> float:
    stderr = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return float(re.search(r"Duration: 00:00:(\d+\.\d+)", stderr)[1])


@pytest.mark.parametrize("fps, n", [(24, 49), (12, 13), (30, 31)])
def test_moviepy_alone_loses_a_frame_and_the_join_keeps_every_one(tmp_path, fps, n):
    from moviepy import VideoFileClip

    a, b = film(tmp_path / "a.mp4", n, 40, fps), film(tmp_path / "b.mp4", n, 200, fps)
    with VideoFileClip(str(a)) as clip:  # int(duration x fps) from a duration printed to 1/100 s
        assert clip.n_frames == n - 1 and sum(1 for _ in clip.iter_frames()) == n - 1
    assert film_info(a).frames == n
    joined = join_films([a, b], tmp_path / "ab.mp4")
    assert joined.frames == 2 * n and probe(joined.path)["frames"] == 2 * n
    got = levels(joined.path)  # a cut: the last frame of a, the first of b, all kept (H.264: a level or two off)
    assert len(got) == 2 * n and np.allclose(got, [40] * n + [200] * n, atol=2), got


def test_crossfades_blend_over_whole_frames_and_shorten_by_one_per_join(tmp_path):
    paths = [film(tmp_path / "a.mp4", 25, 40), film(tmp_path / "b.mp4", 13, 200), film(tmp_path / "c.mp4", 31, 100)]
    joined = join_films(paths, tmp_path / "abc.mp4", crossfade=0.25)  # 6 frames at 24 fps
    assert (joined.frames, joined.crossfade_frames, joined.audio) == (25 + 13 + 31 - 2 * 6, 6, False)
    got = levels(joined.path)
    assert len(got) == 57 and probe(joined.path)["fps"] == 24
    # Film b fades in over a's last 6 frames with weights (j + 1/2) / 6; then c over b's last 6.
    fade_in = [40 + (200 - 40) * (j + 0.5) / 6 for j in range(6)]
    fade_out = [200 + (100 - 200) * (j + 0.5) / 6 for j in range(6)]
    assert np.allclose(got, [40] * 19 + fade_in + [200] + fade_out + [100] * 25, atol=2.5), got


def test_an_audio_bed_and_the_films_own_sound_reach_the_joined_film(tmp_path):
    a = film(tmp_path / "a.mp4", 24, 40, audio=sine(tmp_path / "a.wav", 3))
    b = film(tmp_path / "b.mp4", 24, 200)
    bed = sine(tmp_path / "bed.wav", 10)
    out = tmp_path / "ab.mp4"
    assert main(["join", str(a), str(b), "--crossfade", "0.5", "--audio", str(bed), "--out", str(out)]) == 0
    info = probe(out)
    assert info["audio"] and info["frames"] == 36 and duration(out) == pytest.approx(1.5, abs=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.wav", "ab.mp4", "b.mp4", "bed.wav"]  # no temp


@pytest.mark.parametrize("case, message", [
    ("size", r"b\.mp4: 32x32 at 24 fps, but .*a\.mp4 is 48x32 at 24 fps"),
    ("rate", r"b\.mp4: 48x32 at 12 fps, but .*a\.mp4 is 48x32 at 24 fps"),
    ("long", r"--crossfade: 1 s is 24 frames, but .*b\.mp4 has only 12"),
    ("missing", r"nope\.mp4: film not found"),
    ("not a film", r"b\.mp4: not a film ffmpeg can read"),
    ("same", r"a\.mp4: the output is one of the films joined"),
])
def test_bad_joins_are_one_line_and_write_nothing(tmp_path, capsys, case, message):
    a = film(tmp_path / "a.mp4", 30, 40)
    b = tmp_path / "b.mp4"
    if case == "size":
        film(b, 30, 40, size=(32, 32))
    elif case == "rate":
        film(b, 30, 40, fps=12)
    elif case == "not a film":
        b.write_text("hello")
    else:
        film(b, 12, 40)
    films = {"missing": [a, tmp_path / "nope.mp4"]}.get(case, [a, b])
    out = a if case == "same" else tmp_path / "out.mp4"
    args = ["join", *map(str, films), "--out", str(out)] + (["--crossfade", "1"] if case == "long" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out.mp4").exists() and probe(a)["frames"] == 30
    with pytest.raises(UserError, match="--crossfade: must be 0 or more"):
        join_films([a], tmp_path / "out.mp4", crossfade=-1)
