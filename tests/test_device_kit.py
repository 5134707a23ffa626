"""bench/device.sh, the kit that runs the GPU benchmarks in one call of a lent machine: its wheels must stay the
versions the project requires (a kit that drifted would spend the lent minutes on an ImportError), and a run
without its wheels must say so in one line before anything starts."""

import re
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "bench" / "device.sh"


def kit_wheels() -> dict[str, str]:
    block = re.search(r"^WHEELS=\((.*?)^\)", KIT.read_text(), re.S | re.M).group(1)
    pins = dict(pin.split("==") for pin in block.split())
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_kit_wheels_satisfy_the_project_requirements():
    wheels = kit_wheels()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    project = re.findall(r'^\s*"([^"]+)"', dependencies, re.M)
    required = {canonicalize_name(r.name): r for r in map(Requirement, project)}
    for name in ("diffusers", "transformers", "pydantic", "moviepy", "imageio-ffmpeg"):
        assert name in wheels, f"the kit does not carry {name}"
    for name, version in wheels.items():
        if name in required:
            assert required[name].specifier.contains(version), f"{name}=={version} is outside {required[name]}"


def test_kit_run_without_wheels_is_one_line(tmp_path):
    copy = tmp_path / "repo"
    (copy / "bench").mkdir(parents=True)
    (copy / "bench" / "device.sh").write_bytes(KIT.read_bytes())
    result = subprocess.run(["bash", str(copy / "bench" / "device.sh"), "run"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "device.sh: no wheels in .whl/ (run 'bash bench/device.sh fetch' here and carry .whl)"]


def test_kit_needs_a_verb():
    result = subprocess.run(["bash", str(KIT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: bash bench/device.sh fetch|run" in result.stderr
