"""Ray benchmark: walk frames/s with 1 and 2 Ray workers against a local render, tiny models, CPU, one run.

    .venv/bin/python bench/distributed.py [--quick] [--size 64] [--steps 4] [--frames 48] [--repeats 2]

Every arm renders the same scene into a fresh cache through the same walk (zoetrope.film.walk.render_missing
locally, zoetrope.film.distributed.render_missing_ray on a local Ray instance), arms alternating, best of N.
The plan is a render's: its calls run at one intra-op thread (film/rows.py), locally on one lane per torch
thread (stages/lanes.py) and on each worker one call at a time, so every arm's frames are byte-identical to
the local render's (checked here). The per-frame scheduling cost is (1 worker - local lanes) / frames; it
includes the lanes the local render has and one worker has not. Ends with `ray_2_workers_speedup: X`
(2 workers over 1).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, one repeat")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, help="transition frames (default 48, quick 24)")
    parser.add_argument("--repeats", type=int, help="best of N per arm (default 2, quick 1)")
    args = parser.parse_args()
    frames = args.frames or (24 if args.quick else 48)
    repeats = args.repeats or (1 if args.quick else 2)

    import ray
    import torch

    from zoetrope.film.distributed import render_missing_ray
    from zoetrope.film.engines.walk import render_missing
    from zoetrope.film.walk import painter_identity, plan_scene
    from zoetrope.settings.scene import SceneScript
    from zoetrope.stages.cluster import ModelSpec, open_pool
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    threads = torch.get_num_threads()
    painter = load_painter("tiny", pick_device("cpu"))
    fps = 8
    script = SceneScript(fps=fps, width=args.size, height=args.size, steps=args.steps, seed=7, model="tiny",
                         transition=frames / fps,
                         keyframes=[{"prompt": "a red moon over the sea", "hold": 0.125},
                                    {"prompt": "a ship in a storm", "hold": 0.125}])
    plan = plan_scene("bench", script, painter_identity(painter), threads=1)
    n = len(plan.jobs)
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    start = time.perf_counter()
    pools = {f"ray {w} worker{'s' * (w > 1)}": open_pool(f"local:{w}", ModelSpec(painter="tiny")) for w in (1, 2)}
    print(f"{len(pools)} pools started in {time.perf_counter() - start:.1f} s (Ray instance and worker model loads)")

    lanes: list[int] = []

    def local(cache: Path):
        stats = render_missing(painter, plan, cache)
        lanes.append(stats.lanes)
        return stats

    arms = {"local": local} | {name: (lambda cache, p=pool: render_missing_ray(p, plan, cache))
                               for name, pool in pools.items()}
    best: dict[str, float] = {}
    outputs: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(arms.values()):  # warm-up: first calls, the plan on each worker
            run(Path(tmp) / f"warm-{i}")
        for r in range(repeats):
            for name, run in arms.items():
                cache = Path(tmp) / f"{name}-{r}".replace(" ", "_").replace(",", "").replace("=", "")
                t0 = time.perf_counter()
                stats = run(cache)
                seconds = time.perf_counter() - t0
                assert stats.rendered == n, (name, stats.summary())
                best[name] = min(best.get(name, seconds), seconds)
                outputs[name] = files(cache)
    for pool in pools.values():
        pool.close()
    ray.shutdown()
    print(f"{n} frames, {args.size} px, {args.steps} steps, painter calls of {plan.rows} rows at 1 intra-op thread, "
          f"{os.cpu_count()} cores, torch threads {threads} (local: {lanes[-1]} lanes), best of {repeats}")
    for name, seconds in best.items():
        same = "identical to local" if outputs[name] == outputs["local"] else "DIFFERS from local"
        print(f"{name:<28} {n / seconds:6.2f} frames/s  {seconds:6.2f} s  {same}")
    one, two = best["ray 1 worker"], best["ray 2 workers"]
    print(f"scheduling cost per frame (1 worker - local): {(one - best['local']) / n * 1000:+.1f} ms")
    print(f"ray_2_workers_speedup: {one / two:.2f}")


if __name__ == "__main__":
    main()
