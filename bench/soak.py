"""Soak test: thousands of tiny-model steps through the gallery runner (retention, heartbeat, policy on),
reporting steps/s and RSS at intervals, RSS growth from warm-up to the end, and child processes left.

    .venv/bin/python bench/soak.py              # 10,000 steps (about 30-60 min on 2 CPU cores)
    .venv/bin/python bench/soak.py --quick      # 300 steps
    .venv/bin/python bench/soak.py --steps 2000

Last line: `soak_rss_growth: <fraction>` (the acceptance bar is < 0.05).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_bytes() -> int:
    """Current resident set size (not the peak) from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child_processes() -> list[str]:
    """Live (or zombie) children of this process, from /proc."""
    me, found = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[1] == me:
                    with open(f"/proc/{entry}/comm") as f:
                        found.append(f"{entry}:{f.read().strip()}")
            except OSError:
                continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="300 steps")
    parser.add_argument("--size", type=int, default=64, help="image width and height (default 64)")
    parser.add_argument("--reports", type=int, default=10, help="how many interval lines")
    args = parser.parse_args()
    steps = 300 if args.quick else args.steps

    from zoetrope.loop.chain import Chain
    from zoetrope.loop.run import StopFlag, gallery_extras, open_models, run_chain, start_run
    from zoetrope.settings.loop import LoopConfig

    config = LoopConfig.model_validate({
        "name": "soak", "seed": 1, "paint": {"width": args.size, "height": args.size, "steps": 1},
        "models": {"painter": "tiny", "captioner": "tiny"},
        "retention": {"keep_last": 50, "check_every": 25},
        "policy": {"blocklist": ["forbidden"]},
    })
    painter, captioner, plan = open_models("tiny", "tiny", device="cpu")
    children_before = child_processes()
    with tempfile.TemporaryDirectory(prefix="zoetrope-soak-") as tmp:
        folder = Path(tmp) / "chain"
        extras = gallery_extras(config, folder, plan.device, plan.dtype, heartbeat=True)
        writer, point = start_run(folder, config, None, painter, captioner, plan)
        chain = Chain(config, captioner, painter)
        warmup = max(50, steps // 20)
        every = max(1, steps // args.reports)
        marks: dict = {"t0": time.perf_counter(), "last_t": time.perf_counter(), "last_n": 0, "warm_rss": None}
        print(f"soak: {steps} tiny steps at {args.size}x{args.size} on {plan.device}; warm-up {warmup} steps",
              flush=True)

        def on_step(record: dict) -> None:
            n = record["step"]
            if n == warmup:
                marks["warm_rss"] = rss_bytes()
            if n % every == 0 or n == steps:
                now = time.perf_counter()
                rate = (n - marks["last_n"]) / (now - marks["last_t"])
                marks["last_t"], marks["last_n"] = now, n
                print(f"  step {n:>6}  {rate:6.2f} steps/s  rss {rss_bytes() / 2**20:8.1f} MiB  "
                      f"files {len(os.listdir(folder))}", flush=True)

        done = run_chain(chain, writer, point, steps, StopFlag(), on_step, extras)
        elapsed = time.perf_counter() - marks["t0"]
        end_rss = rss_bytes()
        leftover = [c for c in child_processes() if c not in children_before]
    growth = (end_rss - marks["warm_rss"]) / marks["warm_rss"] if marks["warm_rss"] else float("nan")
    print(f"soak_steps: {done}")
    print(f"soak_seconds: {elapsed:.1f}")
    print(f"soak_steps_per_s: {done / elapsed:.3f}")
    print(f"soak_rss_warm_mib: {(marks['warm_rss'] or 0) / 2**20:.1f}")
    print(f"soak_rss_end_mib: {end_rss / 2**20:.1f}")
    print(f"soak_child_processes_left: {len(leftover)}{' ' + ' '.join(leftover) if leftover else ''}")
    print(f"soak_rss_growth: {growth:.4f}")
    return 0 if done == steps else 1


if __name__ == "__main__":
    raise SystemExit(main())
