"""Fault test for films: SIGKILL `run_loop.py render` at random moments, rerun each time, then check the frame
cache and the film: every cached frame byte-identical to the one an uninterrupted render makes (no half
frame, no other frame), no frame that was once in the cache lost, no temp file left after the rerun, and the
finished film equal to the uninterrupted one. One kill in five lands at any moment (start-up and model loading
included), half land while frames are painted and saved (after a random number of new frames), the rest
once every frame is cached (encoding, renaming the film, the .srt). A render that finishes before its kill
ends a round: its film is checked, and the next round starts from an empty cache. Frames are compared by
name: since 0.8 the call shape is a rule (walk.call_shape), so every round's cache names the same frames.

    .venv/bin/python bench/kill_render.py              # 20 kills
    .venv/bin/python bench/kill_render.py --kills 200

Only the render process is killed (`kill -9 PID`), not its ffmpeg, which then sees its input end and exits
by itself, as it does when a machine kills one process. Last line: `kill_resume_lost_frames: <n>` (the
acceptance bar is 0, with 0 half or wrong frames, 0 temp files left and 0 films that differ).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# 4 keyframes, 3 transitions (2.5 s at 24 fps by default), 64 px, 1 step: 4 + 3 x 60 = 184 unique frames
SCENE = """schema_version: 1
name: kill
fps: 24
width: 64
height: 64
steps: 1
seed: 11
model: tiny
transition: {transition}
keyframes:
  - {{prompt: "a red moon over the sea", hold: 0.5, intertitle: "The moon"}}
  - {{prompt: "two old men in a garden", hold: 0.5, subtitle: "In the garden"}}
  - {{prompt: "a ship in a storm", hold: 0.5}}
  - {{prompt: "a lighthouse at night", hold: 0.5}}
"""
LOADED = "painter calls of"  # the line render prints once the painter is loaded and the frames are laid out


def render_cmd(scene: Path, cache: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run_loop.py"), "render", str(scene), "--models", "tiny",
            "--cache-root", str(cache), "--out", str(out)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frames_of(cache: Path) -> dict[str, str]:
    """Every whole-named frame in the cache (not temps) and its hash."""
    folder = cache / "kill" / "frames"
    return {p.name: sha(p) for p in folder.glob("*.png")} if folder.is_dir() else {}


def count_frames(cache: Path) -> int:
    try:
        return sum(1 for e in os.scandir(cache / "kill" / "frames") if e.name.endswith(".png"))
    except FileNotFoundError:
        return 0


def temps_in(*folders: Path) -> list[str]:
    from zoetrope.base.files import is_temp_name

    found = []
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in folder.rglob("*") if is_temp_name(p.name)]
    return found


def wait_for_orphans(marker: str, limit: float = 30.0) -> None:
    """Wait until no process's command line mentions `marker` (the killed render's ffmpeg finishing)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                        busy = True
                        break
                except OSError:
                    continue
        if not busy:
            return
        time.sleep(0.05)


class Run:
    """One render subprocess, with the moment it printed that the painter was loaded."""

    def __init__(self, cmd: list[str], env: dict):
        self.started = time.monotonic()
        self.loaded: float | None = None
        self.all_frames: float | None = None  # the walk's summary line: every frame is in the cache
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self._err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._err.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if LOADED in line and self.loaded is None:
                self.loaded = time.monotonic()
            if line.startswith("scene ") and " cached, " in line:
                self.all_frames = time.monotonic()

    @property
    def stderr(self) -> str:
        return "".join(self._err)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transition", type=float, default=2.5, help="seconds between keyframes (the frame count)")
    parser.add_argument("--max-wait", type=float, default=10.0,
                        help="latest kill moment after a start, for the 1 in 5 kills at any moment (s)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    with tempfile.TemporaryDirectory(prefix="zoetrope-kill-render-") as tmp:
        tmp = Path(tmp)
        scene = tmp / "kill.yaml"
        scene.write_text(SCENE.format(transition=args.transition))
        problems: list[str] = []

        # The uninterrupted render: its frames and film are what every interrupted one must end with
        ref_out = tmp / "reference" / "kill.mp4"
        ref = Run(render_cmd(scene, tmp / "reference" / "cache", ref_out), env)
        if ref.proc.wait() != 0:
            print(ref.stderr, file=sys.stderr)
            raise SystemExit("the reference render failed")
        work = time.monotonic() - (ref.loaded or ref.started)  # painting and encoding, after the load
        paint = (ref.all_frames or time.monotonic()) - (ref.loaded or ref.started)  # painting alone
        reference = frames_of(tmp / "reference" / "cache")
        ref_film, ref_srt = sha(ref_out), sha(ref_out.with_suffix(".srt"))

        cache, out = tmp / "cache", tmp / "films" / "kill.mp4"
        def seed_cache() -> None:
            """An empty cache folder, as a fresh render finds it."""
            (cache / "kill" / "frames").mkdir(parents=True)

        seed_cache()
        seen: dict[str, str] = {}
        wrong = lost = films_differ = rounds = after_load = temps_left = left_a_temp = painting = 0
        t0 = time.monotonic()

        def end_round(run: Run) -> None:
            """A render finished: its film must be the reference, the cache whole, nothing left behind."""
            nonlocal films_differ, lost, temps_left, rounds
            rounds += 1
            if run.proc.returncode != 0 or "Traceback" in run.stderr:
                problems.append(f"round {rounds}: exit {run.proc.returncode}: {run.stderr.strip()[-300:]}")
            if not out.is_file() or sha(out) != ref_film or sha(out.with_suffix(".srt")) != ref_srt:
                films_differ += 1
                problems.append(f"round {rounds}: the film differs from the uninterrupted render")
            final = frames_of(cache)
            lost += sum(1 for name, digest in seen.items() if final.get(name) != digest)
            temps = temps_in(cache, out.parent)
            temps_left += len(temps)
            problems.extend(f"round {rounds}: temp file left: {t}" for t in temps)

        def until(run: Run, condition) -> None:
            while not condition(run) and run.proc.poll() is None:
                time.sleep(0.005)

        for k in range(1, args.kills + 1):
            before = count_frames(cache)
            run = Run(render_cmd(scene, cache, out), env)
            moment = rng.random()
            if moment < 0.2:  # any moment, start-up and model loading included
                time.sleep(rng.uniform(0.2, args.max_wait))
            elif moment < 0.7 and before < len(reference):  # while painting: after a random number of new frames
                target = rng.randint(before, len(reference))
                until(run, lambda _, n=target: count_frames(cache) >= n)
                time.sleep(rng.uniform(0.0, 0.2))
            else:  # once every frame is cached: encoding, renaming the film, the .srt (some runs finish first)
                until(run, lambda r: r.loaded is not None and count_frames(cache) == len(reference))
                time.sleep(rng.uniform(0.0, max(0.5, work - paint)))
            finished = run.proc.poll() is not None
            if not finished:
                after_load += run.loaded is not None
                painting += before < count_frames(cache) < len(reference)
                run.proc.send_signal(signal.SIGKILL)
            run.proc.wait()
            wait_for_orphans(str(out.parent))
            left_a_temp += bool(temps_in(cache, out.parent))  # killed mid-write: the rerun must sweep it
            frames = frames_of(cache)
            for name, digest in frames.items():
                if reference.get(name) != digest:
                    wrong += 1
                    problems.append(f"kill {k}: {name} is not the uninterrupted render's frame (half or other)")
                seen.setdefault(name, digest)
            state = "finished" if finished else f"killed {'after' if run.loaded else 'before'} the load"
            print(f"  kill {k:>3}: {state}, {len(frames)}/{len(reference)} frames cached", flush=True)
            if finished:
                end_round(run)
                seen.clear()
                for path in (cache, out.parent):  # the next round paints from nothing again
                    subprocess.run(["rm", "-rf", str(path)], check=True)
                seed_cache()

        # One clean run completes what the last kill left, and must give the uninterrupted film
        final = Run(render_cmd(scene, cache, out), env)
        final.proc.wait()
        end_round(final)
        elapsed = time.monotonic() - t0

    for p in problems[:20]:
        print(f"  problem: {p}")
    print(f"kill_render_kills: {args.kills}")
    print(f"kill_render_kills_after_the_load: {after_load}")
    print(f"kill_render_kills_while_painting: {painting}")
    print(f"kill_render_kills_that_left_a_temp_file: {left_a_temp}")
    print(f"kill_render_rounds_finished: {rounds}")
    print(f"kill_render_seconds: {elapsed:.0f}")
    print(f"kill_render_frames_not_the_uninterrupted_ones: {wrong}")
    print(f"kill_render_temp_files_left: {temps_left}")
    print(f"kill_render_films_differing: {films_differ}")
    print(f"kill_resume_lost_frames: {lost}")
    return 0 if not (problems or wrong or lost or temps_left or films_differ) else 1


if __name__ == "__main__":
    raise SystemExit(main())
