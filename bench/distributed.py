"""Ray benchmark: walk frames/s with 1 and 2 Ray workers against a local render, tiny models, CPU, one run.

    .venv/bin/python bench/distributed.py [--quick] [--size 64] [--steps 4] [--frames 48] [--repeats 2]

Every arm renders the same scene into a fresh cache through the same walk (zoetrope.film.walk.render_missing
locally, zoetrope.film.distributed.render_missing_ray on a local Ray instance), arms alternating, best of N.
Workers run with the driver's intra-op thread count, so their frames are byte-identical to the local render's
(checked here); on a 2-core machine two such workers share the cores with each other, so the `threads=1` arms
show what the scheduler itself scales to when each worker has a core of its own (their frames then equal a
1-thread local render, not the default one). The per-frame scheduling cost is (1 worker - local) / frames:
Ray's task round trip, the plan sent once, PNG bytes coming back. Ends with `ray_2_workers_speedup: X`.
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
    from zoetrope.film.walk import painter_identity, plan_scene, render_missing
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
    plan = plan_scene("bench", script, painter_identity(painter))
    n = len(plan.jobs)
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    start = time.perf_counter()
    pools = {f"ray {w} worker{'s' * (w > 1)}{'' if t == threads else f', threads={t}'}":
             open_pool(f"local:{w}", ModelSpec(painter="tiny", threads=t)) for w, t in
             ((1, threads), (2, threads), (1, 1), (2, 1))}
    print(f"{len(pools)} pools started in {time.perf_counter() - start:.1f} s (Ray instance and worker model loads)")

    def local(cache: Path):
        return render_missing(painter, plan, cache)

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
    print(f"{n} frames, {args.size} px, {args.steps} steps, painter calls of {plan.rows} rows, "
          f"{os.cpu_count()} cores, torch threads {threads}, best of {repeats}")
    for name, seconds in best.items():
        same = "identical to local" if outputs[name] == outputs["local"] else "differs from local (other threads)"
        print(f"{name:<28} {n / seconds:6.2f} frames/s  {seconds:6.2f} s  {same}")
    one = next(k for k in best if k.startswith("ray 1 worker") and "threads" not in k)
    two = next(k for k in best if k.startswith("ray 2 workers") and "threads" not in k)
    print(f"scheduling cost per frame (1 worker - local): {(best[one] - best['local']) / n * 1000:+.1f} ms")
    print(f"ray_2_workers_threads1_speedup: {best['ray 1 worker, threads=1'] / best['ray 2 workers, threads=1']:.2f}")
    print(f"ray_2_workers_speedup: {best[one] / best[two]:.2f}")


if __name__ == "__main__":
    main()
