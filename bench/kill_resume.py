"""Fault test: SIGKILL `run_loop.py loop --service` at random moments (model loading, painting, the commit
itself; four kills in five come after that run has committed a step, so most land mid-step or
mid-commit), resume each time, then check the log: contiguous steps, every hash matching its image, no temp
files or orphan images, and no step that was once committed lost or changed. Optionally compares the
result with an uninterrupted run of the same length (the chain is deterministic, so every image must match).

    .venv/bin/python bench/kill_resume.py            # 50 kills
    .venv/bin/python bench/kill_resume.py --quick    # 10 kills
    .venv/bin/python bench/kill_resume.py --render --kills 200   # films instead: bench/kill_render.py

Last line: `kill_resume_lost_steps: <n>` (the acceptance bar is 0, with 0 corrupt records).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """name: kill
seed: 3
paint: {width: 64, height: 64, steps: 1}
models: {painter: tiny, captioner: tiny}
"""


def loop_cmd(config: Path, folder: Path, steps: int) -> list[str]:
    return [sys.executable, str(ROOT / "run_loop.py"), "loop", str(config), "--out", str(folder), "--service",
            "--steps", str(steps)]


def observe(folder: Path, seen: dict[int, str]) -> int:
    """Record every committed step's hash; a step seen before must keep its hash. Returns the last step."""
    from zoetrope.loop.chainlog import read_chain

    if not (folder / "chain.jsonl").is_file():
        return 0
    chain = read_chain(folder)  # tolerates a torn last line (an interrupted write), rejects anything worse
    for step in chain.steps:
        seen.setdefault(step["step"], step["image_sha256"])
    return chain.last_step


def log_size(folder: Path) -> int:
    try:
        return (folder / "chain.jsonl").stat().st_size
    except FileNotFoundError:
        return 0


def main() -> int:
    if "--render" in sys.argv[1:]:  # the same fault test for `render` and its frame cache
        sys.argv.remove("--render")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import kill_render

        return kill_render.main()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10 kills")
    parser.add_argument("--max-wait", type=float, default=12.0,
                        help="latest kill moment after a start, for the 1 in 5 kills at any moment (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip the uninterrupted comparison run")
    args = parser.parse_args()
    kills = 10 if args.quick else args.kills
    rng = random.Random(args.seed)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    from zoetrope.base.files import is_temp_name, sha256_file
    from zoetrope.loop.chainlog import read_chain

    with tempfile.TemporaryDirectory(prefix="zoetrope-kill-") as tmp:
        tmp = Path(tmp)
        config = tmp / "kill.yaml"
        config.write_text(CONFIG)
        folder = tmp / "chain"
        seen: dict[int, str] = {}
        problems: list[str] = []
        mid_run = 0
        t0 = time.monotonic()
        for k in range(1, kills + 1):
            size_at_start = log_size(folder)
            proc = subprocess.Popen(loop_cmd(config, folder, 100_000), cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if rng.random() < 0.2:  # any moment, model loading included
                time.sleep(rng.uniform(0.3, args.max_wait))
            else:  # once this run has committed a step: mid-step, mid-commit
                size = log_size(folder)
                deadline = time.monotonic() + 120
                while log_size(folder) <= size and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 1.0))
            mid_run += log_size(folder) > size_at_start
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            try:
                last = observe(folder, seen)
            except Exception as exc:  # a garbled log
                problems.append(f"kill {k}: {exc}")
                last = -1
            print(f"  kill {k:>3}: chain at step {last}", flush=True)
        # one clean run completes the chain (and cleans what the last kill left)
        final_target = max(seen, default=0) + 3
        subprocess.run(loop_cmd(config, folder, final_target), cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        chain = read_chain(folder)
        steps = [s["step"] for s in chain.steps]
        if steps != list(range(1, len(steps) + 1)) or len(steps) != final_target:
            problems.append(f"steps not contiguous 1..{final_target}: {steps[:3]}...{steps[-3:]}")
        corrupt = len(chain.warnings)
        for s in chain.steps:
            path = folder / s["image"]
            if not path.is_file() or sha256_file(path) != s["image_sha256"]:
                corrupt += 1
                problems.append(f"step {s['step']}: image missing or hash mismatch")
        lost = sum(1 for n, sha in seen.items() if n > len(chain.steps) or chain.steps[n - 1]["image_sha256"] != sha)
        temps = [p.name for p in folder.iterdir() if is_temp_name(p.name)]
        known = {s["image"] for s in chain.steps}
        orphans = [p.name for p in folder.glob("step-*.png") if p.name not in known]
        mismatched = None
        if not args.no_reference:
            ref = tmp / "reference"
            subprocess.run(loop_cmd(config, ref, final_target), cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ref_steps = read_chain(ref).steps
            mismatched = sum(1 for a, b in zip(chain.steps, ref_steps, strict=True)
                             if a["image_sha256"] != b["image_sha256"])
        elapsed = time.monotonic() - t0
    for p in problems[:20]:
        print(f"  problem: {p}")
    print(f"kill_resume_kills: {kills}")
    print(f"kill_resume_kills_after_a_step_of_that_run: {mid_run}")
    print(f"kill_resume_seconds: {elapsed:.0f}")
    print(f"kill_resume_steps_committed_before_final_run: {max(seen, default=0)}")
    print(f"kill_resume_final_steps: {len(chain.steps)}")
    print(f"kill_resume_temp_files_left: {len(temps)}")
    print(f"kill_resume_orphan_images: {len(orphans)}")
    if mismatched is not None:
        print(f"kill_resume_differs_from_uninterrupted_run: {mismatched}")
    print(f"kill_resume_corrupt_records: {corrupt}")
    print(f"kill_resume_lost_steps: {lost}")
    return 0 if not (lost or corrupt or temps or orphans or problems or mismatched) else 1


if __name__ == "__main__":
    raise SystemExit(main())
