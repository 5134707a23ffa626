"""bench/gpu.py in its reduced CPU form, so the GPU benchmark cannot rot between GPU runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# e2e: each test runs bench/gpu.py as a subprocess
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_bench_runs_reduced_on_cpu():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--reduced", "--device", "cpu", "--size", "64",
         "--reps", "1", "--batch", "2", "--channels-last"],
        cwd=ROOT, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"gpu_loop_step_ms: \d+\.\d\d", lines[-1])
    figures = dict(line.split(": ", 1) for line in lines)
    assert figures["size"] == "64x64"
    assert figures["device"] == f"CPU ({os.cpu_count()} cores), float32, channels-last, reduced architectures"
    for key in ("ms per paint (1 step)", "ms per caption (beam 3, 20 tokens)", "film frames/s (batch 2)"):
        assert float(figures[key]) > 0
    assert float(figures["paint GFLOP"]) > 0


def test_gpu_bench_measures_the_film_call_width_when_not_given():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--reduced", "--device", "cpu", "--size", "64", "--reps", "1"],
        cwd=ROOT, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"film frames/s \(batch [1248], the measured call width\)", result.stdout), result.stdout
