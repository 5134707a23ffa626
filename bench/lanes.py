"""CPU lanes against intra-op threads: the same painter calls, one at a time on all of torch's threads or
side by side at one intra-op thread each (zoetrope/stages/lanes.py), tiny painter, ratios in one run.

    .venv/bin/python bench/lanes.py [--quick] [--sizes 128 256] [--rows 8 4] [--calls 8] [--rounds 5]

Arms, each timed once a round, the order rotating, after a warm-up: `threads` (each call on the process's N
torch threads, as 0.4 painted), `one` (each call at one thread, one at a time) and `lanes` (N calls at once,
one thread each). Every call paints the same rows, so the arms' images are compared too: `lanes` must equal
`one` byte for byte (the thread count is what changes a CPU frame's bits), whatever the lanes did side by
side. Last line: `lanes_speedup: X`, the median over rounds of threads / lanes seconds at the smallest size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def one_size(painter, size: int, rows: int, calls: int, rounds: int) -> float:
    """Time the three arms at one size; print a line; return the median of threads / lanes."""
    import torch

    from zoetrope.settings.params import PaintParams
    from zoetrope.stages.lanes import cpu_lanes, in_order, intra_op_threads

    params = PaintParams(steps=4, guidance=0.0, width=size, height=size, scheduler="euler")
    lanes = cpu_lanes(painter, params)
    embeds = painter.encode(["a red moon over a calm sea"], [""], 0.0)
    embeds = {k: v.repeat(rows, 1, 1) for k, v in embeds.items()}
    latents = [painter.noise(list(range(c * rows, (c + 1) * rows)), size, size) for c in range(calls)]

    def run(arm: str) -> tuple[float, list]:
        def paint(c: int) -> list[bytes]:
            with intra_op_threads(1 if arm == "one" else None):  # lanes: their threads are at 1 already
                return [im.tobytes() for im in painter.paint(params=params, prompt_embeds=embeds, latents=latents[c])]

        start = time.perf_counter()
        out = [images for _, images in in_order(paint, iter(range(calls)), lanes if arm == "lanes" else 1)]
        return time.perf_counter() - start, out

    names = ["threads", "one", "lanes"]
    outputs = {name: run(name)[1] for name in names}  # warm-up, and the images to compare
    assert outputs["lanes"] == outputs["one"], "lanes painted other bytes than one call at a time at 1 thread"
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:
            seconds[name].append(run(name)[0])
    per = {name: statistics.median(s) / (calls * rows) * 1000 for name, s in seconds.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b], strict=True))

    same = "same bytes" if outputs["threads"] == outputs["one"] else "other bytes"
    print(f"{size} px, {rows} rows a call, {calls} calls, {torch.get_num_threads()} torch threads, {lanes} lanes: "
          f"ms a frame threads {per['threads']:.1f} ({same} as one thread), one {per['one']:.1f}, lanes "
          f"{per['lanes']:.1f}; threads / lanes {ratio('threads', 'lanes'):.2f}, one / lanes {ratio('one', 'lanes'):.2f}",
          flush=True)
    return ratio("threads", "lanes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 calls, 2 rounds")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--rows", type=int, nargs="+", default=[8, 4], help="rows a call, per size")
    parser.add_argument("--calls", type=int, help="calls per arm (default 8, quick 4)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 2)")
    args = parser.parse_args()
    calls, rounds = args.calls or (4 if args.quick else 8), args.rounds or (2 if args.quick else 5)

    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    painter = load_painter("tiny", pick_device("cpu"))
    headline = {size: one_size(painter, size, rows, calls, rounds)
                for size, rows in zip(args.sizes, args.rows, strict=False)}
    print(f"lanes_speedup: {headline[min(headline)]:.2f}")


if __name__ == "__main__":
    main()
