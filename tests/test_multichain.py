"""`loop --chains K`: K chains batched together, each identical to running it alone."""

import threading

import numpy as np
from PIL import Image

from tests.test_cli_loop import SMALL
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import read_chain
from zoetrope.loop.multichain import BatchGate


def same_pixels(a, b) -> bool:
    with Image.open(a) as x, Image.open(b) as y:
        return np.array_equal(np.asarray(x), np.asarray(y))


def test_three_batched_chains_equal_three_separate_runs(tmp_path, capsys):
    """Same seeds, captions, prompts and pixels as each chain run alone (per-item kernels, see per_item.py)."""
    config = tmp_path / "c.yaml"
    config.write_text(SMALL + "guard:\n  window: 3\n  threshold: 0.1\n")  # low threshold: the guard fires too
    assert main(["loop", str(config), "--models", "tiny", "--steps", "4", "--chains", "3", "--out", str(tmp_path / "wall")]) == 0
    out = capsys.readouterr().out
    assert "[3] step" in out and "12 steps written" in out
    for k in range(1, 4):
        alone = tmp_path / f"alone-{k}"
        assert main(["loop", str(config), "--models", "tiny", "--steps", "4", "--seed", str(5 + k - 1),
                     "--out", str(alone)]) == 0
        together = tmp_path / "wall" / f"chain-{k}"
        solo, batched = read_chain(alone).steps, read_chain(together).steps
        fields = ("step", "caption", "prompt", "seed", "events")
        assert [[s[f] for f in fields] for s in batched] == [[s[f] for f in fields] for s in solo]
        for a, b in zip(solo, batched, strict=True):
            assert same_pixels(alone / a["image"], together / b["image"]), (k, a["step"])
        assert read_chain(together).header["config"]["seed"] == 5 + k - 1
    events = [e["kind"] for k in range(1, 4) for s in read_chain(tmp_path / "wall" / f"chain-{k}").steps for e in s["events"]]
    assert "repetition_guard" in events  # chains diverged in their calls and were still batched correctly


def test_gate_batches_compatible_calls_and_survives_uneven_members():
    gate = BatchGate(3)
    batches: list[list] = []

    def run(payloads):
        batches.append(list(payloads))
        return [p * 10 for p in payloads]

    results = {}

    def member(name, calls):
        try:
            results[name] = [gate.submit("double", x, run) for x in calls]
        finally:
            gate.leave()

    threads = [threading.Thread(target=member, args=(n, c)) for n, c in (("a", [1, 2, 3]), ("b", [4]), ("c", [5, 6]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert results == {"a": [10, 20, 30], "b": [40], "c": [50, 60]}
    assert sorted(map(sorted, batches)) == [[1, 4, 5], [2, 6], [3]]


def test_gate_errors_reach_every_member_of_the_batch():
    gate = BatchGate(2)
    errors = []

    def member():
        try:
            gate.submit("k", 1, lambda payloads: 1 / 0)
        except ZeroDivisionError as exc:
            errors.append(exc)
        finally:
            gate.leave()

    threads = [threading.Thread(target=member) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(errors) == 2


def test_chains_option_is_checked(tmp_path, capsys):
    assert main(["loop", "--models", "tiny", "--chains", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--chains: expected 1 to 64" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_batched_chains_keep_the_content_policy(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL + "policy:\n  blocklist: [lighthouse]\n")  # the start prompt holds a blocked word
    out = tmp_path / "wall"
    assert main(["loop", str(config), "--models", "tiny", "--steps", "2", "--chains", "2", "--out", str(out)]) == 2
    assert "lighthouse" in capsys.readouterr().err and not (out / "chain-1" / "chain.jsonl").exists()


def test_chains_refuse_what_they_cannot_honour(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert main(["loop", str(config), "--models", "tiny", "--chains", "2", "--display", "--out", str(tmp_path / "a")]) == 2
    assert "--display and --service run one chain" in capsys.readouterr().err
    config.write_text(SMALL + "budget:\n  kwh_per_day: 2\n")
    assert main(["loop", str(config), "--models", "tiny", "--chains", "2", "--out", str(tmp_path / "b")]) == 2
    assert "budget.kwh_per_day" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "chain-1" / "chain.jsonl").exists()


def test_a_wall_without_exact_chains_is_logged_and_verified_by_psnr(tmp_path, capsys):
    """--chains-exact off: plain batched kernels; each header says so, and verify then compares by PSNR
    against the chain regenerated alone (as across devices)."""
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    wall = tmp_path / "wall"
    assert main(["loop", str(config), "--models", "tiny", "--steps", "2", "--chains", "2", "--chains-exact", "off",
                 "--out", str(wall)]) == 0
    for k in (1, 2):
        assert read_chain(wall / f"chain-{k}").header["wall"] == {"chains": 2, "chain": k, "exact": False}
    capsys.readouterr()
    assert main(["replay", "verify", str(wall / "chain-2")]) == 0
    out = capsys.readouterr().out
    assert "--chains-exact off" in out and "comparing within PSNR" in out and "all 2 steps reproduce" in out
    exact = tmp_path / "exact"
    assert main(["loop", str(config), "--models", "tiny", "--steps", "1", "--chains", "2", "--out", str(exact)]) == 0
    assert read_chain(exact / "chain-1").header["wall"] == {"chains": 2, "chain": 1, "exact": True}
    capsys.readouterr()
    assert main(["replay", "verify", str(exact / "chain-1")]) == 0
    assert "expecting identical bytes" in capsys.readouterr().out


def test_chains_exact_needs_chains(tmp_path, capsys):
    assert main(["loop", "--models", "tiny", "--chains-exact", "off", "--out", str(tmp_path / "x")]) == 2
    assert "--chains-exact off: applies to --chains K with K > 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
