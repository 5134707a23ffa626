"""The price of exact chains: `loop --chains 4` with per-item kernels (on, the default) against plain batched
kernels (`--chains-exact off`), tiny models, CPU, arms alternating in one run.

    .venv/bin/python bench/chains_exact.py [--quick] [--chains 4] [--steps 4] [--rounds 5] [--sizes 64 256]

Each arm runs the whole wall through `multichain.run_many` (K chains, their logs, durable commits) for
`--steps` steps from a start prompt; a round times both, the order rotating. The ratio is exact / batched
seconds in the same round (above 1: exactness costs that much). How far the batched wall's images are from
the exact ones (which equal each chain painted alone) is printed too: the smallest PSNR over all images, what
`replay verify` judges an `--chains-exact off` chain by. Last line: `chains_exact_price: X` (the largest size).
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


def wall(config, chains: int, root: Path, painter, captioner, plan, exact: bool) -> float:
    from zoetrope.loop.multichain import run_many
    from zoetrope.loop.run import StopFlag

    start = time.perf_counter()
    done = run_many(config, chains, root, painter, captioner, plan, StopFlag(), exact=exact)
    seconds = time.perf_counter() - start
    assert done == chains * config.steps, f"{done} steps committed"
    return seconds


def min_psnr(a: Path, b: Path, chains: int) -> float:
    import numpy as np
    from PIL import Image

    from zoetrope.loop.chainlog import read_chain

    worst = float("inf")
    for k in range(1, chains + 1):
        for x, y in zip(read_chain(a / f"chain-{k}").steps, read_chain(b / f"chain-{k}").steps, strict=True):
            with Image.open(a / f"chain-{k}" / x["image"]) as p, Image.open(b / f"chain-{k}" / y["image"]) as q:
                diff = np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)
            mse = float((diff ** 2).mean())
            worst = min(worst, float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (2 steps, 2 rounds)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps", type=int, help="steps per chain (default 4, quick 2)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    steps = args.steps or (2 if args.quick else 4)
    rounds = args.rounds or (2 if args.quick else 5)

    import torch

    from zoetrope.settings.loop import LoopConfig
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_captioner, load_painter, quiet_libraries

    quiet_libraries()
    plan = pick_device("cpu")
    painter, captioner = load_painter("tiny", plan), load_captioner("tiny", plan)
    print(f"tiny models, CPU ({torch.get_num_threads()} threads), {args.chains} chains x {steps} steps, "
          f"{rounds} rounds", flush=True)
    price = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(10**6))
        for size in args.sizes:
            config = LoopConfig.model_validate({
                "seed": 3, "steps": steps, "paint": {"width": size, "height": size},
                "start": {"prompt": "a lighthouse on a rock"}, "guard": {"enabled": False},
            })

            def arm(exact: bool, config=config) -> tuple[float, Path]:
                root = Path(tmp) / f"run-{next(runs)}"
                return wall(config, args.chains, root, painter, captioner, plan, exact), root

            arm(True), arm(False)  # warm-up: first calls at a size build their kernels
            seconds: dict[bool, list[float]] = {True: [], False: []}
            roots: dict[bool, Path] = {}
            for r in range(rounds):
                for exact in ((True, False) if r % 2 == 0 else (False, True)):
                    s, roots[exact] = arm(exact)
                    seconds[exact].append(s)
            ratios = [e / b for e, b in zip(seconds[True], seconds[False], strict=True)]
            price[size] = statistics.median(ratios)
            print(f"{size:>4} px: exact {statistics.median(seconds[True]):.2f} s, batched "
                  f"{statistics.median(seconds[False]):.2f} s a wall; exact / batched {price[size]:.3f} "
                  f"[{min(ratios):.3f}-{max(ratios):.3f}]; batched vs exact images: min PSNR "
                  f"{min_psnr(roots[True], roots[False], args.chains):.1f} dB", flush=True)
    print(f"chains_exact_price: {price[max(price)]:.3f}")


if __name__ == "__main__":
    main()
