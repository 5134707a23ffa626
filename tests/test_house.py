"""The house rules, as tests: rooms import only rooms below them, no import circles, short modules, the
light modules stay light (no torch), and the kiosk server starts fast and small on the gallery machine.

Each rule guards something a curator feels: a circle or a layer breach makes a light command pull in torch
(seconds and gigabytes); a slow or fat display server is what the room's small computer restarts at dawn.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zoetrope"
MAX_LINES = 400
HEAVY = ("torch", "diffusers", "transformers")
LIGHT_MODULES = ("zoetrope.settings.loop", "zoetrope.settings.scene", "zoetrope.settings.check",
                 "zoetrope.loop.chainlog", "zoetrope.gallery.serve")
CHAIN_V1 = ROOT / "tests" / "data" / "chain-v1"  # committed by 0.2.0: read, never written


# ------------------------------------------------------------------------------------------------ rooms


def test_lint_imports_keeps_the_layers_contract():
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.is_file(), f"{exe} missing: .venv/bin/pip install -e '.[test]' (import-linter)"
    # --no-cache: the test leaves no .import_linter_cache behind in the work tree
    run = subprocess.run([str(exe), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def _import_graph():
    import grimp

    if str(ROOT) not in sys.path:  # grimp finds the package on sys.path
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph("zoetrope", cache_dir=None)


def _circles(modules: set[str], imports_of) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself): Tarjan's
    algorithm, iterative so a deep package cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(imports_of(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports_of(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in imports_of(node):
                    circles.append(sorted(component))
    return circles


def test_the_circle_finder_finds_circles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert sorted(_circles(set(edges), edges.__getitem__)) == [["a", "b", "c"], ["e"]]


def test_no_import_circles_between_modules():
    """Module-level and lazy `from x import y` imports alike (grimp reads both)."""
    graph = _import_graph()
    assert len(graph.modules) > 20  # the graph really is the package
    circles = _circles(graph.modules, graph.find_modules_directly_imported_by)
    assert circles == [], f"import circles: {circles}"


def test_no_import_circles_counting_the_subcommand_registry():
    """cli/main.py imports COMMAND_MODULES with importlib, which grimp cannot see: add those edges, so a
    subcommand module that imports cli.main back (for shared options) shows as the circle it is."""
    from zoetrope.cli.main import COMMAND_MODULES

    graph = _import_graph()
    for name in COMMAND_MODULES:
        assert name in graph.modules, f"COMMAND_MODULES names {name}, which is not a module"
        graph.add_import(importer="zoetrope.cli.main", imported=name)
    circles = _circles(graph.modules, graph.find_modules_directly_imported_by)
    assert circles == [], f"import circles through the subcommand registry: {circles}"


# ------------------------------------------------------------------------------------------------ size


def test_no_module_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 20
    too_long = {path: n for path, n in sorted(sizes.items()) if n > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"


# ------------------------------------------------------------------------------------------- light rooms


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_no_model_library(module):
    """A fresh interpreter per module, so one module's imports cannot hide another's."""
    assert importlib.util.find_spec(module) is not None  # a renamed module fails here, plainly
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == [], f"importing {module} loads {run.stdout.strip()}"


# ------------------------------------------------------------------------------------------ the display


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.e2e
def test_serve_answers_status_within_a_second_in_under_100_mb():
    assert (CHAIN_V1 / "chain.jsonl").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in CHAIN_V1.iterdir()}
    port = _free_port()
    url = f"http://127.0.0.1:{port}/status"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "run_loop.py", "serve", "--chain", str(CHAIN_V1.relative_to(ROOT)),
                             "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        body = None
        while time.monotonic() - started < 30:  # wait past the limit, to report how long it really took
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    body = json.loads(response.read())
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.01)
        elapsed = time.monotonic() - started
        assert body is not None, "serve never answered /status"
        rss = _rss_mb(proc.pid)
        assert body["last_step"] == 3 and body["run_id"] == "v1chain"
        assert elapsed < 1.0, f"first /status answer {elapsed:.2f} s after start"
        assert rss < 100, f"serve uses {rss:.0f} MB resident"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert {p.name: p.stat().st_mtime_ns for p in CHAIN_V1.iterdir()} == before
