"""Loop overhead: seconds per step through run_loop.py's own code path (Chain + durable ChainWriter +
progress callback) versus the bare model calls (caption + paint, same models, sizes and seeds), timed in
the same process at 64 and 256 px on the tiny models. Goal (issue 16): at most 3% at 256 px, full and `--quick`.

    .venv/bin/python bench/loop_overhead.py [--quick] [--steps N] [--rounds R]

Each round times the arms back to back (their order rotating), and the headline is the median over rounds
of loop / bare within a round: on a shared machine the speed drifts by 10-20% over a minute, and a ratio of
neighbours in time cancels that drift where a ratio of two medians does not.
The repetition guard is off in every arm: it is a feature (extra captions when it fires), not overhead.
Last line: `loop_overhead: <median loop / bare at 256 px>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from zoetrope.cli.main import progress_line  # noqa: E402
from zoetrope.loop.chain import Chain, step_seed  # noqa: E402
from zoetrope.loop.run import Resumable, StopFlag, run_chain, start_run  # noqa: E402
from zoetrope.settings.loop import LoopConfig  # noqa: E402
from zoetrope.stages.device import pick_device  # noqa: E402
from zoetrope.stages.models import load_captioner, load_painter, quiet_libraries


def bench_config(size: int, steps: int) -> LoopConfig:
    return LoopConfig.model_validate({
        "seed": 3, "steps": steps, "paint": {"width": size, "height": size},
        "start": {"prompt": "a lighthouse on a rock"}, "guard": {"enabled": False},
    })


def bare(config: LoopConfig, captioner, painter, steps: int) -> float:
    """The models alone: caption the last image, paint its caption with the same seeds as the loop."""
    params, caption_params = config.paint.params(), config.caption.params()
    negative = [config.prompt.negative]
    start = time.perf_counter()
    image = painter.paint([config.start.prompt], params=params, seeds=[step_seed(config.seed, 1)], negative_prompts=negative)[0]
    for n in range(2, steps + 1):
        caption = captioner.caption([image], caption_params, seeds=[step_seed(config.seed, n)])[0]
        prompt = config.prompt.build(caption)
        image = painter.paint([prompt], params=params, seeds=[step_seed(config.seed, n)], negative_prompts=negative)[0]
    return (time.perf_counter() - start) / steps


def through_loop(config: LoopConfig, captioner, painter, plan, steps: int, root: Path, quiet) -> float:
    """The same steps through the CLI's code path: header, durable commits, a progress line per step."""
    folder = root / f"run-{time.perf_counter_ns()}"
    start = time.perf_counter()
    writer, point = start_run(folder, config, None, painter, captioner, plan)
    chain = Chain(config, captioner, painter, next_step=point.next_step)
    done = run_chain(chain, writer, Resumable(1, None, None, None, []), config.steps, StopFlag(),
                     on_step=lambda record: quiet(progress_line(record)))
    seconds = (time.perf_counter() - start) / steps
    assert done == steps, f"the loop committed {done} of {steps} steps"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (fewer steps and rounds)")
    parser.add_argument("--steps", type=int, help="steps per measurement (default 12, quick 6)")
    parser.add_argument("--rounds", type=int, help="rounds (default 9, quick 3)")
    args = parser.parse_args()
    steps = args.steps or (6 if args.quick else 12)
    rounds = args.rounds or (3 if args.quick else 9)

    quiet_libraries()
    plan = pick_device("cpu")
    painter, captioner = load_painter("tiny", plan), load_captioner("tiny", plan)
    lines: list[str] = []
    headline = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 256):
            config = bench_config(size, steps)
            arms = {
                "bare": lambda c=config: bare(c, captioner, painter, steps),
                "loop": lambda c=config: through_loop(c, captioner, painter, plan, steps, Path(tmp), lines.append),
            }
            warm = config.model_copy(update={"steps": 2})
            bare(warm, captioner, painter, 2)  # warm-up: first calls at a new size are slow
            through_loop(warm, captioner, painter, plan, 2, Path(tmp), lines.append)
            seconds: dict[str, list[float]] = {name: [] for name in arms}
            for r in range(rounds):
                names = list(arms)[r % len(arms):] + list(arms)[:r % len(arms)]  # rotate the order
                for name in names:
                    seconds[name].append(arms[name]())
            rounds_of = {name: [s / b for s, b in zip(seconds[name], seconds["bare"], strict=True)]
                         for name in arms if name != "bare"}
            ratios = {name: statistics.median(r) for name, r in rounds_of.items()}
            headline[size] = ratios["loop"]
            print(f"{size:>4} px: bare {statistics.median(seconds['bare']) * 1e3:7.2f} ms/step; "
                  + "; ".join(f"{name} {100 * (ratio - 1):+.1f}% (rounds {100 * (min(rounds_of[name]) - 1):+.1f}% to "
                              f"{100 * (max(rounds_of[name]) - 1):+.1f}%)" for name, ratio in ratios.items()), flush=True)
    print(f"loop_overhead: {headline[256]:.3f}")


if __name__ == "__main__":
    main()
