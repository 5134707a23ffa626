"""Walk benchmark: frames/s of the batched walk vs one frame per painter call, tiny models, CPU, one run.

    .venv/bin/python bench/walk.py [--quick] [--padded] [--size 64] [--steps 4] [--frames 64]

Both sides run the same code (zoetrope.film.walk.render_missing into a fresh cache: embeddings and noise once per
keyframe, slerp/lerp per frame, PNG write per frame) after a warm-up; only the painter call width differs:
8 rows per call (batched) vs 1 row per call (one at a time, no padding). Padded one-at-a-time (`--batch-size
1` in `render`, which keeps frames byte-identical to batched) is measured with `--padded`, for honesty: it
costs as much per call as a full batch, so it is not the baseline. Ends with `walk_batched_speedup: X` (batched / one-at-a-time frames/s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed_walk(painter, script, identity, rows: int, batch_size: int) -> tuple[float, int]:
    from zoetrope.film.engines.walk import render_missing
    from zoetrope.film.walk import plan_scene

    plan = plan_scene("bench", script, identity, rows=rows)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        stats = render_missing(painter, plan, Path(tmp), batch_size)
        seconds = time.perf_counter() - start
    return seconds, stats.rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (fewer frames, one repeat)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--padded", action="store_true", help="also time render --batch-size 1 (padded calls)")
    parser.add_argument("--frames", type=int, help="transition frames per measurement (default 64, quick 32)")
    parser.add_argument("--repeats", type=int, help="best of N runs per side (default 2, quick 1)")
    args = parser.parse_args()
    frames = args.frames or (32 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 2)

    import torch

    from zoetrope.film.walk import ROWS, painter_identity
    from zoetrope.settings.scene import SceneScript
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    painter = load_painter("tiny", pick_device("cpu"))
    identity = painter_identity(painter)
    fps = 8
    script = SceneScript(
        fps=fps, width=args.size, height=args.size, steps=args.steps, seed=7, model="tiny",
        keyframes=[{"prompt": "a red moon over a calm sea", "hold": 1 / fps, "transition": frames / fps},
                   {"prompt": "two old men in a walled garden", "hold": 1 / fps}],
    )
    print(f"tiny painter, CPU ({torch.get_num_threads()} threads), {args.size}x{args.size}, {args.steps} steps, "
          f"{script.frame_count()} frames per walk, best of {repeats}", flush=True)
    timed_walk(painter, script.model_copy(update={"seed": 1}), identity, ROWS, ROWS)  # warm-up: first calls are slow
    timed_walk(painter, script.model_copy(update={"seed": 2}), identity, 1, 1)
    from zoetrope.film.walk import call_rows

    chosen = call_rows("cpu", args.size, args.size)
    print(f"call width `render` uses here (walk.call_rows): {chosen} rows", flush=True)

    sides = [("batched", ROWS, ROWS), ("one_at_a_time", 1, 1)] + ([("padded_one_at_a_time", ROWS, 1)] if args.padded
                                                                  else [])
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):  # interleaved, best of N: a busy machine slows both sides alike
        for label, rows, batch in sides:
            run = timed_walk(painter, script, identity, rows, batch)
            best[label] = min(best.get(label, run), run)
    results = {}
    for label, rows, batch in sides:
        seconds, n = best[label]
        results[label] = n / seconds
        print(f"{label:<22} rows/call={rows} frames/call={batch}: {n} frames in {seconds:.3f} s = "
              f"{results[label]:.1f} frames/s", flush=True)
    print(f"walk_batched_speedup: {results['batched'] / results['one_at_a_time']:.2f}")


if __name__ == "__main__":
    main()
