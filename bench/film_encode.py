"""Film encoding: frames/s of zoetrope's FrameWriter (film.py) versus imageio-ffmpeg's `write_frames` alone,
on the same frames with the same encoder settings, interleaved, in one run. Goal: at least 0.9x.

    .venv/bin/python bench/film_encode.py [--quick] [--frames N] [--size PX] [--rounds R]

Last line: `film_encode: <FrameWriter frames/s / bare frames/s>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoetrope.film.encode import FrameWriter  # noqa: E402


def make_frames(n: int, size: int) -> list[np.ndarray]:
    """Moving gradients with grain: real encoding work, unlike flat frames."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = []
    for i in range(n):
        phase = i / max(n, 1) * 2 * np.pi
        rgb = np.stack([np.sin(x * 6 + phase), np.cos(y * 5 - phase), np.sin((x + y) * 4 + phase)], axis=-1)
        grain = rng.normal(0, 0.05, rgb.shape).astype(np.float32)
        frames.append(np.clip((rgb * 0.5 + 0.5 + grain) * 255, 0, 255).astype(np.uint8))
    return frames


def bare(frames: list[np.ndarray], path: Path, fps: int) -> float:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    start = time.perf_counter()
    gen = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=None,
        macro_block_size=1, ffmpeg_log_level="error", output_params=["-crf", "18", "-movflags", "+faststart"],
    )
    gen.send(None)
    for frame in frames:
        gen.send(frame)
    gen.close()
    return len(frames) / (time.perf_counter() - start)


def through_film(frames: list[np.ndarray], path: Path, fps: int) -> float:
    h, w = frames[0].shape[:2]
    start = time.perf_counter()
    with FrameWriter(path, fps, (w, h), crf=18) as film:
        for frame in frames:
            film.write(frame)
    return len(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, help="frames per film (default 240, quick 48)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, help="interleaved rounds per arm (default 5, quick 3)")
    args = parser.parse_args()
    n = args.frames or (48 if args.quick else 240)
    rounds = args.rounds or (3 if args.quick else 5)
    frames = make_frames(n, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        bare(frames[:8], Path(tmp) / "warm.mp4", 24)
        bare_fps, film_fps = [], []
        for r in range(rounds):
            bare_fps.append(bare(frames, Path(tmp) / f"bare-{r}.mp4", 24))
            film_fps.append(through_film(frames, Path(tmp) / f"film-{r}.mp4", 24))
    b, f = statistics.median(bare_fps), statistics.median(film_fps)
    print(f"{n} frames {args.size}x{args.size}: bare write_frames {b:.1f} frames/s, FrameWriter {f:.1f} frames/s")
    print(f"film_encode: {f / b:.3f}")


if __name__ == "__main__":
    main()
