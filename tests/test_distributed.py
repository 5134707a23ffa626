"""Ray (`--ray`): the walk, verify and a wall on a local Ray instance, equal to the same work done locally.

One Ray instance and one pool of two workers (tiny painter and captioner) for the module: start-ups cost
seconds each on this machine. A worker is killed with kill -9 in the middle of a render and the frames are
still the local ones. Bad addresses are one line and exit 2, an unreachable one in under 10 s.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import test_replay as shared
from tests.test_walk import script
from zoetrope.base.errors import UserError
from zoetrope.cli.main import main
from zoetrope.film.engines.walk import render_missing
from zoetrope.film.walk import needed_jobs, painter_identity, plan_scene
from zoetrope.loop.chainlog import read_chain

chain6, copy6 = shared.chain6, shared.copy6  # the session's 6-step tiny chain, and a fresh copy per test
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pool():
    from zoetrope.stages.cluster import ModelSpec, open_pool

    if not ray.is_initialized():  # room for the module's pool and the CLI's own two workers
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    workers = open_pool("local:2", ModelSpec(painter="tiny", captioner="tiny"))
    yield workers
    workers.close()
    ray.shutdown()


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


class Counting:
    """A progress bar that runs `then` once, after the first painted batch is saved."""

    def __init__(self, then=lambda: None):
        self.n, self.then, self.fired = 0, then, False

    def update(self, n: int = 1) -> None:
        self.n += n
        if n and not self.fired:
            self.fired = True
            self.then()


def test_a_walk_on_two_workers_is_byte_identical_to_a_local_one(pool, tiny_painter, tmp_path):
    from zoetrope.film.distributed import pool_identity, render_missing_ray, render_scenes_ray

    assert pool.size == 2 and pool_identity(pool) == painter_identity(tiny_painter)
    plan = plan_scene("t", script(), painter_identity(tiny_painter))
    n = len(needed_jobs(plan))
    render_missing(tiny_painter, plan, tmp_path / "local")
    local = files(tmp_path / "local")
    stats = render_missing_ray(pool, plan, tmp_path / "ray", batch_size=3)  # 4 calls over 2 workers
    assert (stats.cached, stats.rendered, stats.calls) == (0, n, -(-n // 3))
    assert files(tmp_path / "ray") == local and len(set(local.values())) == n
    # a resumed render paints only what is missing; two scenes go to the workers together
    for name in sorted(local)[:4]:
        (tmp_path / "ray" / name).unlink()
    other = plan_scene("u", script(seed=9), painter_identity(tiny_painter))
    first, second = render_scenes_ray(pool, [(plan, tmp_path / "ray"), (other, tmp_path / "other")])
    assert (first.cached, first.rendered, second.rendered) == (n - 4, 4, n)
    assert files(tmp_path / "ray") == local
    render_missing(tiny_painter, other, tmp_path / "other-local")
    assert files(tmp_path / "other") == files(tmp_path / "other-local")


def test_a_worker_killed_mid_render_costs_only_its_batches(pool, tiny_painter, tmp_path):
    from zoetrope.film.distributed import render_missing_ray

    plan = plan_scene("k", script(fps=8, seed=11), painter_identity(tiny_painter))
    victim = pool.pids()[0]
    bar = Counting(then=lambda: os.kill(victim, signal.SIGKILL))  # while the other batches are being painted
    stats = render_missing_ray(pool, plan, tmp_path / "ray", batch_size=2, progress=bar)
    assert bar.fired and stats.rendered == bar.n == len(needed_jobs(plan))
    assert victim not in pool.pids()  # Ray restarted the worker, which loaded its models again
    render_missing(tiny_painter, plan, tmp_path / "local")
    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_verify_on_workers_agrees_with_verify(pool, copy6):
    from zoetrope.curate.verify import format_check, verify_folder
    from zoetrope.curate.verify_ray import verify_with_pool

    # step 3's image overwritten: step 3 fails, and step 4 is regenerated from the regenerated step 3
    with Image.open(copy6 / "step-000002.png") as other:
        other.save(copy6 / "step-000003.png")
    local = verify_folder(copy6)
    remote = verify_with_pool(read_chain(copy6), pool, local.min_psnr)
    assert [format_check(c) for c in remote.steps] == [format_check(c) for c in local.steps]
    assert (remote.ok, remote.environment, remote.revisions) == (local.ok, local.environment, local.revisions)
    assert not remote.ok and [c.step for c in remote.steps if not c.reproduces] == [3]
    assert any("used the regenerated image" in note for note in remote.steps[3].notes)


def same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as x, Image.open(b) as y:
        return np.array_equal(np.asarray(x), np.asarray(y))


def test_a_wall_of_two_chains_on_two_workers_equals_the_chains_run_alone(pool, tiny_painter, tiny_captioner, cpu,
                                                                          tmp_path):
    """Chain k of the wall (worker k, a gate of its own) paints what `loop --seed 5+k-1` paints alone."""
    from zoetrope.loop.run import StopFlag
    from zoetrope.loop.wall_ray import run_wall_ray
    from zoetrope.settings.loop import LoopConfig

    config = LoopConfig.model_validate(shared.SMALL | {"steps": 3, "guard": {"threshold": 0.1, "window": 3}})
    steps = []
    assert run_wall_ray(config, 2, tmp_path / "wall", pool, StopFlag(),
                        on_step=lambda k, record: steps.append((k, record["step"]))) == 6
    assert sorted(steps) == [(k, n) for k in (1, 2) for n in (1, 2, 3)]
    for k in (1, 2):
        alone = shared.make_chain(tmp_path / f"alone-{k}", tiny_painter, tiny_captioner, cpu, steps=3,
                                  seed=5 + k - 1, guard={"threshold": 0.1, "window": 3})
        solo, remote = read_chain(alone), read_chain(tmp_path / "wall" / f"chain-{k}")
        fields = ("step", "caption", "prompt", "seed", "events")
        assert [[s[f] for f in fields] for s in remote.steps] == [[s[f] for f in fields] for s in solo.steps]
        assert remote.header["config"]["seed"] == 5 + k - 1 and remote.header["device"] == "cpu"
        for a, b in zip(solo.steps, remote.steps, strict=True):
            assert same_pixels(alone / a["image"], remote.folder / b["image"]), (k, a["step"])


@pytest.mark.parametrize(("argv", "message"), [
    (["loop", "--chains", "2", "--ray", "local:0"], "--ray: local:N needs 1..64 workers (got local:0)"),
    (["loop", "--chains", "2", "--ray", "remote:5"], "--ray: expected local:N"),
    (["loop", "--ray", "local:2"], "--ray: runs a wall's chains on Ray workers; give --chains K"),
    (["replay", "fork", "x", "--from-step", "1", "--ray", "local:2"], "--ray: `replay fork` does not run on Ray"),
    (["serve", "x", "--ray=auto"], "--ray: `serve` does not run on Ray"),
])
def test_bad_ray_options_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv[:1], *(["--out", str(tmp_path / "w")] if argv[0] == "loop" else []), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "w").exists()


def test_an_unreachable_address_fails_in_under_10_s(copy6, capsys):
    start = time.monotonic()
    assert main(["replay", "verify", str(copy6), "--ray", "ray://127.0.0.1:9"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --ray: cannot reach ray://127.0.0.1:9"), err


def test_a_worker_that_cannot_load_its_model_stops_with_its_error(pool, tmp_path):
    from zoetrope.stages.cluster import ModelSpec, open_pool

    missing = tmp_path / "no-such-model"
    missing.mkdir()
    start = time.monotonic()
    with pytest.raises(UserError) as caught:
        open_pool("local:1", ModelSpec(painter=str(missing)))
    assert time.monotonic() - start < 60
    line = str(caught.value)
    assert "\n" not in line and line.startswith("ray worker ") and "cannot load painter" in line, line


def test_without_ray_the_option_says_how_to_install_it(monkeypatch):
    import sys

    from zoetrope.stages import cluster

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError, match=r"^--ray: Ray is not installed; install it with \.venv/bin/pip install -e '\.\[ray\]'$"):
        cluster.open_pool("local:2", cluster.ModelSpec(painter="tiny"))

