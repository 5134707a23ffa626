"""Engines side by side: frames/s of the walk, ltx, animatediff and drift on the tiny models, at one size, fps,
step count and length, through `render_film` (the whole film path: layout, engine, cache writes, encoder).

Each arm renders the same 3-keyframe scene with its engine into a fresh cache; arms alternate over rounds after
one warm-up render each (model builds, first calls and the walk's call-width measurement are not timed). Then,
per engine, a child process renders a short film (warm-up), resets its peak RSS, renders a `--clip`-second film
and reports the peak and its growth: what one chunk in memory at a time costs, no engine hiding another's.

    .venv/bin/python bench/engines.py [--size 64] [--fps 8] [--steps 4] [--seconds 2] [--rounds 3] [--clip 10]

The tiny models' frames/s say what each engine's machinery costs (calls, chunking, conditioning, I/O), not
what real weights cost: on a GPU, real architectures dominate (bench/gpu.py builds them for the walk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGINES = ("walk", "ltx", "animatediff", "drift")


def scene(engine: str, size: int, fps: int, steps: int, seconds: float) -> str:
    """Three keyframes, holds and transitions sharing `seconds` evenly (hold, transition, hold, transition, hold)."""
    part = seconds / 5
    return f"""schema_version: 1
engine: {engine}
model: tiny
fps: {fps}
width: {size}
height: {size}
steps: {steps}
seed: 3
transition: {part}
keyframes:
  - prompt: "a lantern in fog"
    hold: {part}
  - prompt: "a ship on a dark sea"
    hold: {part}
  - prompt: "a lighthouse at dawn"
    hold: {part}
"""


def render(engine: str, folder: Path, args, seconds: float, tag: str, rows: int | None = None) -> tuple[float, int]:
    """One film into a fresh cache; the walk at `rows` (its width, measured once by the warm-up render: the
    measurement is a first render's cost, not the walk's)."""
    from zoetrope.film.render import RenderRequest, render_film

    path = folder / f"{engine}-{tag}.yaml"
    path.write_text(scene(engine, args.size, args.fps, args.steps, seconds))
    start = time.perf_counter()
    result = render_film(RenderRequest(script=path, out=folder / f"{engine}-{tag}.mp4", models={"ltx": "tiny",
                         "animatediff": "tiny"}, painter="tiny", cache_root=folder / f"cache-{tag}", rows=rows))
    return time.perf_counter() - start, result.frames


def measured_rows(cache: Path) -> int | None:
    """The walk's width the warm-up render used, from its films' records (FILM.json `walk_calls`, walk.call_shape)."""
    records = [json.loads(p.read_text()) for p in cache.parent.glob("*.json")]
    return next((s["walk_calls"]["rows"] for r in records if r.get("kind") == "zoetrope-film"
                 for s in r["scenes"] if "walk_calls" in s), None)


def _rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args) -> None:
    """A short warm-up film (imports, model builds), then the peak RSS reset (/proc/self/clear_refs) and the
    clip: its peak RSS and its growth over the warmed-up process, as JSON on the last line."""
    with tempfile.TemporaryDirectory() as tmp:
        render(args.child, Path(tmp), args, 1.0, "warm")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        base = _rss_mib("VmRSS")
        seconds, frames = render(args.child, Path(tmp), args, args.clip, "clip")
    peak = _rss_mib("VmHWM")
    print(json.dumps({"engine": args.child, "frames": frames, "seconds": seconds, "peak_rss_mib": peak,
                      "growth_mib": peak - base}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clip", type=float, default=10.0, help="seconds of the clip whose peak RSS is measured")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from zoetrope.stages.models import quiet_libraries

    quiet_libraries()
    engines = [e for e in args.engines.split(",") if e]
    rates: dict[str, list[float]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for engine in engines:  # warm-up: builds the tiny models, first calls, the walk's call width
            render(engine, folder, args, args.seconds, "warm")
        rows = measured_rows(folder / "cache-warm")
        for r in range(args.rounds):
            for engine in (engines if r % 2 == 0 else engines[::-1]):  # arms alternate
                seconds, frames = render(engine, folder, args, args.seconds, f"r{r}", rows)
                rates[engine].append(frames / seconds)
    print(f"engines at {args.size}x{args.size}, {args.fps} fps, {args.steps} steps, {args.seconds:g} s films "
          f"(tiny models, {os.cpu_count()} cores, {args.rounds} rounds, walk calls of {rows} rows; frames/s "
          "median [min-max]):")
    for engine in engines:
        values = rates[engine]
        print(f"  {engine:12s} {statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]")
    for engine in engines:
        run = subprocess.run([sys.executable, __file__, "--child", engine, "--size", str(args.size), "--fps",
                              str(args.fps), "--steps", str(args.steps), "--clip", str(args.clip)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"  {engine}: the {args.clip:g} s clip failed: {run.stderr.strip().splitlines()[-1:]}")
            continue
        figures = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"  {engine:12s} {args.clip:g} s clip: {figures['frames']} frames, peak RSS {figures['peak_rss_mib']:.0f} "
              f"MiB, {figures['growth_mib']:+.0f} MiB over the warmed-up process (models loaded)")
    walk = statistics.median(rates["walk"]) if "walk" in rates else None
    if walk:
        for engine in engines:
            if engine != "walk":
                print(f"engines_{engine}_vs_walk: {statistics.median(rates[engine]) / walk:.3f}")


if __name__ == "__main__":
    main()
