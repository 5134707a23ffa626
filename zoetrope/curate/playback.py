"""`replay play`: a chain as a slideshow film, with no model, for rooms without a GPU.

Frame-count rule: n slides give exactly n x round(hold x fps) frames. The crossfade into the next slide takes
the last round(crossfade x fps) frames of each hold but the last, so it never changes the length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.loop.chainlog import ChainLog
from zoetrope.settings.timing import frame_count


@dataclass
class Playback:
    frames: int
    srt: Path
    out: Path | None = None
    fps: int = 24

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def slideshow_plan(n_images: int, hold: float, crossfade: float, fps: int) -> tuple[int, int]:
    """Frames per image and crossfade frames, checked."""
    if fps <= 0:
        raise UserError(f"--fps must be positive but is {fps}")
    hold_frames = frame_count(hold, fps)
    fade_frames = frame_count(crossfade, fps)
    if hold_frames < 1:
        raise UserError(f"--hold {hold} at {fps} fps is less than one frame")
    if fade_frames < 0 or fade_frames >= hold_frames:
        raise UserError(f"--crossfade must be at least 0 and shorter than --hold ({hold} s) but is {crossfade}")
    if n_images < 1:
        raise UserError("the chain has no images to play")
    return hold_frames, fade_frames


def slides(chain: ChainLog) -> list[tuple[Path, str]]:
    """(image, subtitle) in showing order: the start image when the chain began from one, then every step,
    subtitled with its caption (a prompt-started step 1 has none: its prompt)."""
    out = []
    first = chain.steps[0] if chain.steps else None
    if first is not None and first.get("input_image"):
        out.append((chain.folder / first["input_image"], "start image"))
    for step in chain.steps:
        out.append((chain.folder / step["image"], step["caption"] if step.get("caption") is not None else step["prompt"]))
    return out


def _even_size(image: Image.Image) -> tuple[int, int]:
    """yuv420p needs even sides: the film takes the first slide's size, rounded down to even."""
    w, h = image.size
    return max(2, w - w % 2), max(2, h - h % 2)


def play_chain(chain: ChainLog, out: Path, hold: float = 3.0, crossfade: float = 0.5, fps: int = 24,
               on_frame: Callable[[int, int], None] | None = None) -> Playback:
    """Write the slideshow to `out` (temp name, then rename) and its `.srt` beside it. Every input and the
    output paths are checked before the first frame (a bad --out is one line, and nothing is written);
    `on_frame(done, total)` after each frame."""
    from zoetrope.film.encode import FrameWriter, burn_subtitle, check_film_output, write_srt

    shown = slides(chain)
    hold_frames, fade_frames = slideshow_plan(len(shown), hold, crossfade, fps)
    missing = [path.name for path, _ in shown if not path.is_file()]
    if missing:
        raise UserError(f"{chain.folder}: cannot play, missing image(s): {', '.join(missing)}")
    out = Path(out)
    srt = out.with_suffix(".srt")
    check_film_output(out, srt)
    total = hold_frames * len(shown)
    with Image.open(shown[0][0]) as first:
        size = _even_size(first)

    def frame_of(index: int) -> np.ndarray:
        path, text = shown[index]
        with Image.open(path) as image:
            slide = image.convert("RGB").resize(size, Image.LANCZOS) if image.size != size else image.convert("RGB")
        return np.asarray(burn_subtitle(slide, text), dtype=np.float32)

    written = 0
    with FrameWriter(out, fps, size) as film:
        current = frame_of(0)
        for k in range(len(shown)):
            following = frame_of(k + 1) if k + 1 < len(shown) else None
            for j in range(hold_frames):
                fade_at = j - (hold_frames - fade_frames)
                if following is not None and fade_at >= 0:
                    alpha = (fade_at + 1) / (fade_frames + 1)
                    film.write(np.clip(current * (1 - alpha) + following * alpha + 0.5, 0, 255).astype(np.uint8))
                else:
                    film.write(current.astype(np.uint8))
                written += 1
                if on_frame is not None:
                    on_frame(written, total)
            current = following
    write_srt([(k * hold_frames / fps, (k + 1) * hold_frames / fps, text) for k, (_, text) in enumerate(shown)], srt)
    return Playback(written, srt, out, fps)


def play_folder(folder: Path, out: Path | None = None, hold: float = 3.0, crossfade: float = 0.5,
                fps: int = 24, on_frame: Callable[[int, int], None] | None = None) -> Playback:
    """`replay play`: the slideshow of the chain in `folder`, by default renders/films/<run>-slideshow.mp4."""
    from zoetrope.loop.chainlog import read_chain

    chain = read_chain(folder)
    out = out or Path("renders/films") / f"{chain.header.get('run_id', chain.folder.name)}-slideshow.mp4"
    return play_chain(chain, out, hold=hold, crossfade=crossfade, fps=fps, on_frame=on_frame)
