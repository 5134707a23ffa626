"""The encoder: exact frame counts, H.264 yuv420p +faststart, audio cut to the picture, no partial films."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from zoetrope.film.encode import (
    FrameWriter,
    burn_subtitle,
    ffmpeg_exe,
    intertitle_card,
    probe,
    write_srt,
)


def frames(n: int, size=(48, 32)):
    w, h = size
    for i in range(n):
        yield np.full((h, w, 3), (i * 37) % 256, np.uint8)


@pytest.mark.parametrize("fps, n", [(24, 49), (12, 13), (30, 31), (4, 1)])
def test_exact_frame_count_at_rates_where_moviepy_drops_one(tmp_path, fps, n):
    out = tmp_path / "f.mp4"
    with FrameWriter(out, fps, (48, 32)) as film:
        for frame in frames(n):
            film.write(frame)
    assert film.frames_written == n
    info = probe(out)
    assert (info["codec"], info["pix_fmt"], info["fps"], info["size"], info["frames"]) == ("h264", "yuv420p", fps,
                                                                                          (48, 32), n)
    assert info["faststart"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.mp4"]  # no temp file left behind


def test_pil_frames_and_audio_cut_to_the_picture(tmp_path):
    song = tmp_path / "song.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:d=5", str(song)],
                   check=True)
    out = tmp_path / "with-audio.mp4"
    with FrameWriter(out, 8, (48, 32), audio=song) as film:
        for i in range(10):
            film.write(Image.new("RGB", (48, 32), (i * 20, 0, 0)))
    info = probe(out)
    assert info["audio"] and info["frames"] == 10
    stderr = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    duration = re.search(r"Duration: 00:00:(\d+\.\d+)", stderr)
    assert duration and float(duration[1]) == pytest.approx(1.25, abs=0.05)  # 10 frames at 8 fps, not 5 s


def test_an_error_leaves_no_partial_film(tmp_path):
    out = tmp_path / "f.mp4"
    with pytest.raises(KeyError), FrameWriter(out, 8, (48, 32)) as film:
        film.write(next(frames(1)))
        raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(ValueError, match="48x32"), FrameWriter(out, 8, (48, 32)) as film:
        film.write(np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames"), FrameWriter(out, 8, (48, 32)):
        pass
    assert list(tmp_path.iterdir()) == []


def test_bad_writer_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        FrameWriter(tmp_path / "f.mp4", 8, (47, 32))
    with pytest.raises(ValueError, match="fps"):
        FrameWriter(tmp_path / "f.mp4", 0, (48, 32))
    with pytest.raises(FileNotFoundError):
        FrameWriter(tmp_path / "f.mp4", 8, (48, 32), audio=tmp_path / "none.wav")


def test_srt_sidecar(tmp_path):
    path = tmp_path / "f.srt"
    write_srt([(0.0, 1.5, "a red moon"), (1.5, 3723.004, "two lines\nof text")], path)
    assert path.read_text() == (
        "1\n00:00:00,000 --> 00:00:01,500\na red moon\n\n"
        "2\n00:00:01,500 --> 01:02:03,004\ntwo lines\nof text\n"
    )
    with pytest.raises(ValueError, match="before it starts"):
        write_srt([(2.0, 1.0, "x")], path)


def test_titles_are_drawn_with_pillow():
    grey = Image.new("RGB", (128, 96), (128, 128, 128))
    subtitled = burn_subtitle(grey, "The flight through space. Approaching the moon.")
    assert subtitled.size == grey.size
    diff = np.abs(np.asarray(subtitled, int) - np.asarray(grey, int)).sum(axis=2)
    rows = np.nonzero(diff.any(axis=1))[0]
    assert rows.size and rows.min() > 96 // 3  # drawn in the lower part of the frame
    assert np.asarray(grey).max() == 128  # the input is not modified
    card = intertitle_card((128, 96), "Landed right in the eye!!!")
    pixels = np.asarray(card)
    assert card.size == (128, 96) and pixels.max() > 200 and np.median(pixels) < 20
