"""`replay play`: a slideshow film of a chain without any model; its frame count follows the documented rule."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from tests.test_replay import run_cli
from zoetrope.base.errors import UserError
from zoetrope.curate.playback import play_chain, slideshow_plan
from zoetrope.loop.chainlog import ChainWriter, read_chain, step_image_name

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def fake_chain(folder: Path, with_start: bool) -> Path:
    """A chain written by the real writer from flat-colour images: playback needs no model to read it."""
    header = {"kind": "header", "schema_version": 1, "run_id": folder.name, "config": {}, "parent": None,
              "models": {"painter": {"id": "none", "revision": None}, "captioner": {"id": "none", "revision": None}}}
    start = Image.new("RGB", (64, 48), (128, 128, 128)) if with_start else None
    writer = ChainWriter.create(folder, header, start)
    for n, colour in enumerate(COLOURS, start=1):
        record = {"kind": "step", "step": n, "input_image": None, "caption": None if n == 1 and not with_start
                  else f"caption {n}", "prompt": f"prompt {n}", "negative_prompt": "", "seed": n,
                  "paint_params": {"steps": 1, "guidance": 0.0, "width": 64, "height": 48, "scheduler": "euler",
                                   "strength": None}, "image": step_image_name(n), "seconds": {"total": 0.1},
                  "energy_j": None, "events": []}
        if n == 1 and with_start:
            record["input_image"] = "start.png"
        writer.commit(record, Image.new("RGB", (64, 48), colour))
    writer.close()
    return folder


def count_frames(path: Path) -> tuple[int, list[np.ndarray]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    return len(frames), frames


@pytest.mark.parametrize("hold,crossfade,fps", [(0.5, 0.2, 10), (1.0, 0.0, 12), (0.25, 0.1, 24)])
def test_frame_count_is_images_times_round_hold_fps(tmp_path, hold, crossfade, fps):
    chain = read_chain(fake_chain(tmp_path / "c", with_start=False))
    out = tmp_path / "film.mp4"
    result = play_chain(chain, out, hold=hold, crossfade=crossfade, fps=fps)
    expected = len(COLOURS) * round(hold * fps)
    n, frames = count_frames(out)
    assert result.frames == n == expected
    # mid-hold frames show their own image (H.264 is lossy: compare the centre pixel loosely)
    per = round(hold * fps)
    for k, colour in enumerate(COLOURS):
        centre = frames[k * per][24, 32].astype(int)
        assert np.abs(centre - colour).max() < 40, (k, centre, colour)
    # a crossfade frame lies between the two images
    fade = round(crossfade * fps)
    if fade:
        mid = frames[per - 1][24, 32].astype(int)
        assert np.abs(mid - COLOURS[0]).max() > 20 and np.abs(mid - COLOURS[1]).max() > 20


def test_start_image_is_the_first_slide_and_captions_go_to_the_srt(tmp_path, capsys):
    folder = fake_chain(tmp_path / "c", with_start=True)
    out = tmp_path / "films" / "c.mp4"
    code, printed, err = run_cli(capsys, "replay", "play", folder, "--hold", 0.5, "--crossfade", 0.1, "--fps", 10,
                                 "--out", out)
    assert code == 0, printed + err
    assert count_frames(out)[0] == (len(COLOURS) + 1) * 5
    srt = out.with_suffix(".srt").read_text()
    assert srt.count(" --> ") == len(COLOURS) + 1
    assert "00:00:00,000 --> 00:00:00,500\nstart image" in srt and "00:00:02,000 --> 00:00:02,500\ncaption 4" in srt


def test_prompt_started_step_one_is_subtitled_with_its_prompt(tmp_path):
    from zoetrope.curate.playback import slides

    shown = slides(read_chain(fake_chain(tmp_path / "c", with_start=False)))
    assert [text for _, text in shown] == ["prompt 1", "caption 2", "caption 3", "caption 4"]


def test_bad_playback_settings_and_a_missing_image(tmp_path, capsys):
    with pytest.raises(UserError, match=r"--crossfade must be at least 0 and shorter than --hold \(1.0 s\) but is 1.0"):
        slideshow_plan(3, 1.0, 1.0, 24)
    with pytest.raises(UserError, match="--hold 0.01 at 24 fps is less than one frame"):
        slideshow_plan(3, 0.01, 0.0, 24)
    folder = fake_chain(tmp_path / "c", with_start=False)
    (folder / step_image_name(3)).unlink()
    code, _, err = run_cli(capsys, "replay", "play", folder, "--out", tmp_path / "x.mp4")
    assert code == 2 and err.strip() == f"error: {folder}: cannot play, missing image(s): step-000003.png"
    assert not (tmp_path / "x.mp4").exists()
    assert json.loads((folder / "chain.jsonl").read_text().splitlines()[0])["run_id"] == "c"


def test_slide_lengths_follow_the_film_frame_count_rule():
    from zoetrope.settings.timing import frame_count

    # 0.25 s at 10 fps is 2.5 frames: halves round up (3), as in films, not to the even 2
    assert slideshow_plan(3, 0.25, 0.05, 10) == (frame_count(0.25, 10), frame_count(0.05, 10)) == (3, 1)
