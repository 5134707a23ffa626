"""Real-size rehearsal: each preset's published architecture, seeded random weights, laid out as its Hub repository
inside a scratch Hugging Face cache, then the real commands (`run_loop.py loop`, `replay verify`, `render`) run
offline against it by preset name, as subprocesses. Nothing in Zoetrope knows it is a rehearsal: only the weights
are not the publisher's (bench/rehearse_arch.py has the architectures, bench/rehearse_hub.py the writer).

Also checks each component's parameter count against the published one (built on the `meta` device, so a model
too large for this machine is checked too). A preset whose full fp32 weights do not fit in about 12 GB (sdxl-turbo,
ltx-video) is rehearsed at full width with fewer layers (`reduced`: which ones, in rehearse_arch.py), and says so.

    .venv/bin/python bench/rehearse.py --counts              # the parameter table only (seconds, no weights)
    .venv/bin/python bench/rehearse.py --all [--record]      # every scenario; exit 1 on a mismatch or a failure
    .venv/bin/python bench/rehearse.py --scenario loop-base  # one (see --list)

Scratch data goes to a temp folder (`--scratch DIR` to choose; removed afterwards unless `--keep`). Heavy work runs
under `nice -n 19`, one scenario at a time, each preset built in its own process and freed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

from rehearse_arch import NOT_YET, REPOS  # noqa: E402

SIZE = 256
LOOP_YAML = """schema_version: 1
name: rehearsal
seed: 26
start: {{prompt: "a photograph of an empty gallery, white walls, a single framed picture"}}
caption: {{mode: beam, num_beams: 3, min_length: 5, max_length: 20}}
paint: {{mode: text, steps: 1, guidance: 0.0, width: {size}, height: {size}, scheduler: euler}}
guard: {{enabled: false}}
"""
SCENES = {
    "walk": """schema_version: 1
name: rehearse-walk
model: {painter}
fps: 4
width: {size}
height: {size}
steps: 1
guidance: 0.0
seed: 26
transition: 0.5
keyframes:
  - {{prompt: "a lighthouse in a storm", hold: 0.5}}
  - {{prompt: "a harbour at dawn", hold: 0.5}}
""",
    "drift": """schema_version: 1
name: rehearse-drift
model: {painter}
engine: drift
fps: 4
width: {size}
height: {size}
steps: 2
guidance: 0.0
seed: 26
motion: {{zoom: 1.02, strength: 0.5}}
keyframes:
  - {{prompt: "a forest path in autumn", hold: 1.0}}
""",
    "animatediff": """schema_version: 1
name: rehearse-animatediff
model: {painter}
engine: animatediff
motion_adapter: animatediff-v1-5-3
fps: 4
width: {size}
height: {size}
steps: 2
guidance: 1.0
seed: 26
keyframes:
  - {{prompt: "waves on a beach", hold: 1.0}}
""",
    "ltx": """schema_version: 1
name: rehearse-ltx
engine: ltx
ltx_model: ltx-video
fps: 8
width: {size}
height: {size}
steps: 2
guidance: 1.0
seed: 26
keyframes:
  - {{prompt: "a candle flickers in a dark room", hold: 1.0}}
""",
    "upscale": """schema_version: 1
name: rehearse-upscale
model: {painter}
fps: 2
width: {small}
height: {small}
steps: 1
guidance: 0.0
seed: 26
upscale: {{scale: {scale}, model: {upscaler}, steps: 2}}
keyframes:
  - {{prompt: "a lighthouse on a cliff at dusk", hold: 1.0}}
""",
}
SMALL = 128  # the upscale films' painted size: x2 makes 256 px, x4 512 px (the x4 model's training crops)
# What each film must come out as: (frames, [width, height]) from its scene's fps, holds and transitions.
PLANNED = {"walk.mp4": (6, [SIZE, SIZE]), "drift.mp4": (4, [SIZE, SIZE]), "ad.mp4": (4, [SIZE, SIZE]),
           "ltx.mp4": (8, [SIZE, SIZE]), "up2.mp4": (2, [2 * SMALL] * 2), "up4.mp4": (2, [4 * SMALL] * 2)}

# name: (presets to build, reduced?, commands). A command: (label, argv after run_loop.py, kind).
SCENARIOS: dict[str, tuple[tuple[str, ...], bool, list[tuple[str, list[str], str]]]] = {
    "loop-base": (("sd-turbo", "blip-base"), False, [
        ("loop sd-turbo + blip-base", ["loop", "{loop_yaml}", "--models", "painter=sd-turbo,captioner=blip-base",
                                       "--steps", "2", "--out", "{out}/chain-base"], "loop"),
        ("replay verify (blip-base chain)", ["replay", "verify", "{out}/chain-base"], "verify"),
    ]),
    "loop-large": (("blip-large",), False, [
        ("loop sd-turbo + blip-large", ["loop", "{loop_yaml}", "--models", "painter=sd-turbo,captioner=blip-large",
                                        "--steps", "2", "--out", "{out}/chain-large"], "loop"),
        ("replay verify (blip-large chain)", ["replay", "verify", "{out}/chain-large"], "verify"),
    ]),
    "taesd": (("taesd",), False, [
        ("loop sd-turbo --vae taesd", ["loop", "{loop_yaml}", "--models", "painter=sd-turbo,captioner=blip-base",
                                       "--vae", "taesd", "--steps", "2", "--out", "{out}/chain-taesd"], "loop"),
    ]),
    "render-walk": ((), False, [("render walk (sd-turbo)", ["render", "{scene:walk:sd-turbo}", "--out",
                                                           "{out}/walk.mp4", "--cache-root", "{out}/films"], "render")]),
    "render-drift": ((), False, [("render drift (sd-turbo)", ["render", "{scene:drift:sd-turbo}", "--out",
                                                             "{out}/drift.mp4", "--cache-root", "{out}/films"], "render")]),
    "sd15": (("sd15",), False, [
        ("loop sd15 + blip-base", ["loop", "{loop_yaml}", "--models", "painter=sd15,captioner=blip-base", "--steps",
                                   "2", "--out", "{out}/chain-sd15"], "loop"),
    ]),
    "animatediff": (("animatediff-v1-5-3",), False, [
        ("render animatediff (sd15 + v1-5-3)", ["render", "{scene:animatediff:sd15}", "--out", "{out}/ad.mp4",
                                                "--cache-root", "{out}/films"], "render"),
    ]),
    "sdxl-turbo": (("sdxl-turbo", "taesdxl"), True, [
        ("loop sdxl-turbo (reduced depth) + blip-base", ["loop", "{loop_yaml}", "--models",
                                                         "painter=sdxl-turbo,captioner=blip-base", "--steps", "2",
                                                         "--out", "{out}/chain-sdxl"], "loop"),
        ("loop sdxl-turbo --vae taesd (taesdxl)", ["loop", "{loop_yaml}", "--models",
                                                   "painter=sdxl-turbo,captioner=blip-base", "--vae", "taesd",
                                                   "--steps", "1", "--out", "{out}/chain-sdxl-taesd"], "loop"),
    ]),
    "ltx": (("ltx-video",), True, [
        ("render ltx (reduced depth)", ["render", "{scene:ltx:-}", "--out", "{out}/ltx.mp4", "--cache-root",
                                        "{out}/films"], "render"),
    ]),
    "upscale-x2": (("sd-turbo", "sd-x2-latent-upscaler"), False, [
        ("render walk + upscale x2 (sd-x2-latent-upscaler)", ["render", "{scene:upscale:sd-turbo:2}", "--out",
                                                               "{out}/up2.mp4", "--cache-root", "{out}/films"], "render"),
    ]),
    "upscale-x4": (("sd-turbo", "sd-x4-upscaler"), False, [
        ("render walk + upscale x4 (sd-x4-upscaler)", ["render", "{scene:upscale:sd-turbo:4}", "--out",
                                                        "{out}/up4.mp4", "--cache-root", "{out}/films"], "render"),
    ]),
    # Not the product: diffusers and transformers called directly on the same scratch cache, once in fp32 and once
    # in bf16, because Zoetrope paints in fp32 on a CPU whatever it is asked (stages/device.py's pick_device).
    "bf16-probe": (("sd-turbo", "blip-base"), False, [
        (f"probe sd-turbo + blip-base, {dtype} (direct, not the product)",
         ["--dtype-probe", dtype, "--scratch", "{scratch}", "--probe-out", f"{{out}}/probe-{dtype}.json"], "probe")
        for dtype in ("float32", "bfloat16")
    ]),
}


# ------------------------------------------------------------------------------------------ measuring
def run_measured(argv: list[str], env: dict, log: Path, timeout: float) -> dict:
    """Run `argv` (niced); its exit status, wall seconds and peak RSS (the child's own, from wait4)."""
    start, load = time.perf_counter(), os.getloadavg()[0]  # the machine may be shared: say how busy it was
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(["nice", "-n", "19", *argv], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {"rc": proc.returncode, "seconds": time.perf_counter() - start, "peak_rss_gb": usage.ru_maxrss / 2**20,
            "tail": tail, "load": max(load, os.getloadavg()[0])}


def loop_step_seconds(chain: Path) -> list[float]:
    rows = [json.loads(line) for line in (chain / "chain.jsonl").read_text().splitlines() if line.strip()]
    return [r["seconds"]["total"] for r in rows if r.get("kind") != "header" and "seconds" in r]


def film_frames(mp4: Path) -> tuple[int, list]:
    record = json.loads(mp4.with_suffix(".json").read_text())
    return int(record.get("frames") or 0), list(record.get("size") or [])


# ------------------------------------------------------------------------------------------ scenarios
def counts_table() -> tuple[list[dict], bool]:
    """Every component of every preset: built vs published (meta device). (rows, all_match)."""
    from rehearse_hub import count

    rows, ok = [], True
    for preset, repo in REPOS.items():
        for model in repo.models():
            params, stored = count(model, stored=True)
            pub = model.published
            built = stored if pub is not None and pub.what == "stored" else params
            match = None if pub is None else pub.matches(built)
            ok &= match is not False
            rows.append({"preset": preset, "component": model.label, "class": model.cls, "built": built,
                         "published": str(pub) if pub else "-", "source": pub.source if pub else "none published",
                         "match": match, "reduced": count(model, reduced=True) if model.reduced else None})
    return rows, ok


def build(preset: str, cache: Path, reduced: bool, log: Path, timeout: float) -> dict:
    argv = [sys.executable, str(Path(__file__)), "--build-one", preset, "--scratch", str(cache)]
    result = run_measured(argv + (["--reduced"] if reduced else []), hub_env(cache), log, timeout)
    result["label"] = f"build {preset}" + (" (reduced depth)" if reduced and REPOS[preset].fits is False else "")
    return result


def hub_env(scratch: Path) -> dict:
    return os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(scratch / "hub"), "HF_HOME": str(scratch / "hf-home"),
                         "ZOETROPE_CACHE": str(scratch / "zoetrope"), "TOKENIZERS_PARALLELISM": "false",
                         "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def expand(arg: str, scratch: Path) -> str:
    out = scratch / "out"
    if arg == "{loop_yaml}":
        path = scratch / "rehearsal.yaml"
        path.write_text(LOOP_YAML.format(size=SIZE))
        return str(path)
    if arg.startswith("{scene:"):
        _, kind, painter, *scale = arg.strip("{}").split(":")
        upscaler = {"2": "sd-x2-latent-upscaler", "4": "sd-x4-upscaler"}.get(scale[0] if scale else "", "")
        path = scratch / f"scene-{kind}{''.join(scale)}.yaml"
        path.write_text(SCENES[kind].format(size=SIZE, small=SMALL, painter=painter, scale="".join(scale),
                                            upscaler=upscaler))
        return str(path)
    return arg.replace("{out}", str(out)).replace("{scratch}", str(scratch))


def run_scenario(name: str, scratch: Path, built: set[str], log: Path, timeout: float) -> list[dict]:
    presets, reduced, commands = SCENARIOS[name]
    results = []
    for preset in presets:
        if preset not in built:
            r = build(preset, scratch, reduced, log, timeout)
            results.append(r | {"kind": "build"})
            if r["rc"] != 0:
                return results
            built.add(preset)
    (scratch / "out").mkdir(exist_ok=True)
    for label, argv, kind in commands:
        args = [expand(a, scratch) for a in argv]
        program = Path(__file__) if kind == "probe" else ROOT / "run_loop.py"
        r = run_measured([sys.executable, str(program), *args], hub_env(scratch), log, timeout)
        r |= {"label": label, "kind": kind, "argv": f"{program.relative_to(ROOT)} " + " ".join(argv)}
        try:
            if kind == "loop" and r["rc"] == 0:
                r["per_unit"] = loop_step_seconds(Path(args[args.index("--out") + 1]))
            if kind == "render" and r["rc"] == 0:
                mp4 = Path(args[args.index("--out") + 1])
                r["frames"], size = film_frames(mp4)
                planned = PLANNED.get(mp4.name)
                if planned and (r["frames"], size) != planned:
                    r["mismatch"] = f"{r['frames']} frames of {size}, planned {planned[0]} of {planned[1]}"
            if kind == "probe" and r["rc"] == 0:
                got = json.loads(Path(args[args.index("--probe-out") + 1]).read_text())["seconds"]
                r["probe"] = {k: sum(v[1:]) / len(v[1:]) for k, v in got.items()}
        except (OSError, ValueError, KeyError) as exc:
            r["note"] = f"no figures: {exc}"
        results.append(r)
    return results


def figure(r: dict) -> str:
    if r.get("mismatch"):
        return f"**{r['mismatch']}**"
    if r.get("probe"):
        return f"paint {r['probe']['paint']:.1f} s + caption {r['probe']['caption']:.1f} s (model calls only)"
    if r.get("per_unit"):
        steps = r["per_unit"]
        return f"{sum(steps[1:]) / max(1, len(steps) - 1):.1f} s/step (caption + paint; step 1 {steps[0]:.1f} s)" \
            if len(steps) > 1 else f"{steps[0]:.1f} s/step"
    if r.get("frames"):
        return f"{r['seconds'] / r['frames']:.1f} s/frame ({r['frames']} frames, whole command)"
    return ""


def report(rows: list[dict], results: list[dict], skipped: dict) -> list[str]:
    lines = ["| preset | component | built | published | match | rehearsed at |", "|---|---|---|---|---|---|"]
    for row in rows:
        at = f"{row['reduced']:,} (reduced depth)" if row["reduced"] and not REPOS[row["preset"]].fits else "full size"
        mark = {True: "yes", False: "**NO**", None: "-"}[row["match"]]
        lines.append(f"| {row['preset']} | {row['component']} | {row['built']:,} | {row['published']} | {mark} | {at} |")
    lines += ["", "| command | exit | seconds | peak RSS (GB) | figure | load avg |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['rc']} | {r['seconds']:.0f} | {r['peak_rss_gb']:.2f} | {figure(r)} "
                     f"| {r['load']:.1f} |")
    lines += [f"- not rehearsed: {k}: {v}" for k, v in skipped.items()]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every scenario, in order")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="these scenarios (repeatable)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--counts", action="store_true", help="the parameter table only")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--scratch", type=Path, help="scratch folder (default: a new temp folder, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per command")
    parser.add_argument("--build-one", help=argparse.SUPPRESS)
    parser.add_argument("--reduced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dtype-probe", choices=["float32", "bfloat16"], help=argparse.SUPPRESS)
    parser.add_argument("--probe-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.dtype_probe:
        from rehearse_hub import dtype_probe

        return dtype_probe(args.dtype_probe, args.probe_out, SIZE)

    if args.build_one:  # internal: one preset into the scratch cache, in its own (measured) process
        from rehearse_hub import vocab_note, write_repo

        repo = REPOS[args.build_one]
        (args.scratch / "hub").mkdir(parents=True, exist_ok=True)
        done = write_repo(repo, args.scratch / "hub", reduced=args.reduced and not repo.fits)
        print(json.dumps({"preset": repo.preset, "revision": repo.revision} | done | {"vocab": vocab_note}, indent=1))
        return 1 if done.get("missing") else 0
    if args.list:
        for name, (presets, _reduced, commands) in SCENARIOS.items():
            print(f"{name}: builds {', '.join(presets) or '-'}; runs {'; '.join(c[0] for c in commands)}")
        return 0

    rows, counts_ok = counts_table()
    results: list[dict] = []
    scenarios = list(SCENARIOS) if args.all else (args.scenario or [])
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="zoetrope-rehearsal-"))
    log = scratch / "rehearsal.log"
    try:
        if scenarios:
            scratch.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(scratch / "out", ignore_errors=True)  # chains and films of an earlier run (models stay)
            print(f"scratch: {scratch} (log: {log})", flush=True)
            built: set[str] = set()
            for name in scenarios:
                got = run_scenario(name, scratch, built, log, args.timeout)
                for r in got:
                    print(f"{name}: $ {r.get('argv') or 'bench/rehearse.py --build-one ' + r['label'].split()[1]}")
                    print(f"{name}: {r['label']}: exit {r['rc']}, {r['seconds']:.0f} s, peak RSS {r['peak_rss_gb']:.2f} GB"
                          f" {figure(r)}" + ("" if r["rc"] == 0 else f"\n  {' / '.join(r['tail'])}"), flush=True)
                results += got
        lines = report(rows, results, NOT_YET)
        print("\n".join(lines))
        failed = [r["label"] for r in results if r["rc"] != 0 or r.get("mismatch")]
        if args.record:
            with open(BENCH / "RESULTS.md", "a", encoding="utf-8") as f:
                f.write(f"\n## Rehearsal, {dt.date.today().isoformat()}: real-size architectures, random weights, "
                        f"CPU ({os.cpu_count()} cores), fp32, {SIZE} px\n\n" + "\n".join(lines) + "\n")
        if not counts_ok:
            print("error: a parameter count differs from the published one")
        if failed:
            print(f"error: {len(failed)} command(s) failed: {', '.join(failed)} (log: {log})")
        return 0 if counts_ok and not failed else 1
    finally:
        if not args.keep and not args.scratch and scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
