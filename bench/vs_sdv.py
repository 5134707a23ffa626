"""Zoetrope against stable-diffusion-videos (SDV) 0.9.2 on identical components: speed ratios in one run.

    .venv/bin/pip install --no-deps --target .venv/bench-sdv stable-diffusion-videos==0.9.2   # once
    .venv/bin/python bench/vs_sdv.py [--quick] [--sizes 128 256] [--rounds 5] [--frames 16] [--threads 1]

SDV is installed as its users install it, `--no-deps` into its own folder (never the project's environment,
never vendored); bench/sdv_shim.py stands in for the torchvision, cv2 and CLIPFeatureExtractor imports its
0.9.2 modules make (see there). Both arms use the same components: Zoetrope's tiny painter folder (UNet, VAE,
CLIP text encoder, tokenizer) loaded by Zoetrope's loader and by SDV's `StableDiffusionWalkPipeline`, the same
Euler scheduler, and the same 3-keyframe scene: SDV walks each pair in `--frames` frames (both keyframes
included, so the middle one is painted twice, as SDV does); Zoetrope's script holds each keyframe one frame and
walks each pair in `--frames` - 2 frames strictly between them: the same film, one frame shorter. 4 steps,
guidance 0, `--threads` torch threads (default 1).

Arms, each timed once a round, the order rotating, after a warm-up of every arm:
- end to end: Zoetrope's render (lay_out + render_and_encode: frames to the cache, the film to mp4 while it
  paints) against SDV's `walk()` (frames to PNG, an mp4 per pair, then the whole film's mp4);
- model only: Zoetrope's Walker painting the film's frames in calls of its width, on its CPU lanes (one call
  per torch thread, each at one intra-op thread, as `render` paints: stages/lanes.py), against SDV's own
  `generate_inputs` + `__call__` loop of `make_clip_frames`, without saving.
Zoetrope's width and VAE width are the rule `render` follows (walk.call_shape: a function of the device type
and the size, nothing measured since 0.8), so every end-to-end run starts from an empty cache; SDV runs at
1 frame per call (its default) and at 8. `--threads` is both arms' budget: SDV's torch threads, Zoetrope's
lanes (at 1, Zoetrope paints one call at a time too). A ratio is SDV's seconds over Zoetrope's in the same
round (above 1: Zoetrope is faster); the headline is the median over rounds against SDV's better width, with
the spread (min-max) beside it. Last lines: `vs_sdv_end_to_end: X` and `vs_sdv_model_only: Y` (the lower of
the sizes).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a red moon over a calm sea", "two old men in a walled garden", "a lighthouse in fog"]
SEEDS = [11, 22, 33]
STEPS, FPS, SDV_WIDTHS = 4, 8, (1, 8)


def zoetrope_script(size: int, frames: int):
    from zoetrope.settings.scene import SceneScript

    keyframes = [{"prompt": p, "seed": s, "hold": 1 / FPS} for p, s in zip(PROMPTS, SEEDS, strict=True)]
    for keyframe in keyframes[:-1]:
        keyframe["transition"] = (frames - 2) / FPS
    return SceneScript(fps=FPS, width=size, height=size, steps=STEPS, guidance=0.0, scheduler="euler", model="tiny",
                       keyframes=keyframes)


class Arms:
    """The six arms at one size; each call returns seconds."""

    def __init__(self, painter, sdv, size: int, frames: int, rows: int, decode: int, tmp: Path):
        from zoetrope.film.walk import painter_identity, plan_scene
        from zoetrope.settings.scene import Film

        self.painter, self.sdv, self.size, self.frames, self.rows, self.tmp = painter, sdv, size, frames, rows, tmp
        self.script = zoetrope_script(size, frames)
        self.identity = painter_identity(painter)
        self.film = Film("bench", [("bench", self.script)], None)
        self.plan = plan_scene("bench", self.script, self.identity, rows=rows, threads=1, decode=decode)
        self.runs = 0

    def fresh(self) -> Path:
        self.runs += 1
        return self.tmp / f"run-{self.runs}"

    def zoetrope_end_to_end(self) -> float:
        from zoetrope.film.layout import FilmModels, lay_out
        from zoetrope.film.render import RenderRequest, render_and_encode

        root = self.fresh()
        frames = root / "films" / "bench" / "frames"
        frames.mkdir(parents=True)
        request = RenderRequest(script=Path("bench.yaml"), cache_root=root / "films", rows=self.rows)
        models = FilmModels(painter=self.painter, walk_identity=self.identity)
        start = time.perf_counter()
        layout = lay_out(self.film, models, request)
        render_and_encode(models, layout, root / "bench.mp4", None, None, lambda line: None,
                          lambda what, total: _Silent())
        seconds = time.perf_counter() - start
        assert (root / "bench.mp4").stat().st_size > 0
        return seconds

    def zoetrope_model(self) -> float:
        from zoetrope.film.walk import Walker, keyframes_of, needed_jobs
        from zoetrope.stages.lanes import cpu_lanes, in_order

        start = time.perf_counter()
        walker, jobs = Walker(self.painter, self.plan), needed_jobs(self.plan)
        walker.prepare(keyframes_of(jobs))
        batches = (jobs[i:i + self.rows] for i in range(0, len(jobs), self.rows))
        for _ in in_order(walker.paint, batches, cpu_lanes(self.painter, walker.params)):
            pass
        return time.perf_counter() - start

    def sdv_end_to_end(self, width: int) -> float:
        root = self.fresh()
        start = time.perf_counter()
        out = self.sdv.walk(prompts=PROMPTS, seeds=SEEDS, num_interpolation_steps=self.frames, output_dir=str(root),
                            name="bench", fps=FPS, num_inference_steps=STEPS, guidance_scale=0.0, height=self.size,
                            width=self.size, batch_size=width)
        seconds = time.perf_counter() - start
        assert Path(out).stat().st_size > 0
        return seconds

    def sdv_model(self, width: int) -> float:
        """make_clip_frames' own loop (generate_inputs, then __call__ per batch) for each pair, nothing saved."""
        import numpy as np

        pipe, shape = self.sdv, (1, self.sdv.unet.config.in_channels, self.size // 8, self.size // 8)
        start = time.perf_counter()
        for a, b in zip(range(len(PROMPTS)), range(1, len(PROMPTS)), strict=False):
            batches = pipe.generate_inputs(PROMPTS[a], PROMPTS[b], SEEDS[a], SEEDS[b], shape,
                                           np.linspace(0.0, 1.0, self.frames), width)
            for _, embeds, noise in batches:
                pipe(latents=noise, text_embeddings=embeds, height=self.size, width=self.size, guidance_scale=0.0,
                     num_inference_steps=STEPS, output_type="pil")
        return time.perf_counter() - start

    def all(self) -> dict:
        arms = {"zoetrope end_to_end": self.zoetrope_end_to_end, "zoetrope model": self.zoetrope_model}
        for w in SDV_WIDTHS:
            arms[f"sdv@{w} end_to_end"] = lambda w=w: self.sdv_end_to_end(w)
            arms[f"sdv@{w} model"] = lambda w=w: self.sdv_model(w)
        return arms


class _Silent:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def load_sdv(painter):
    """SDV's walk pipeline on the tiny painter's folder, with the painter's Euler scheduler config."""
    from diffusers import EulerDiscreteScheduler
    from diffusers.utils import logging as diffusers_logging
    from sdv_shim import walk_pipeline_class

    from zoetrope.stages.tiny import ensure_tiny

    cls = walk_pipeline_class()
    diffusers_logging.set_verbosity_error()  # SDV's module sets INFO: a line per frame otherwise
    sdv = cls.from_pretrained(str(ensure_tiny("painter")), safety_checker=None, feature_extractor=None,
                              requires_safety_checker=False)
    sdv.scheduler = EulerDiscreteScheduler.from_config(painter._base_scheduler_config)
    sdv.set_progress_bar_config(disable=True)
    return sdv


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a couple of minutes: 8 frames a pair, 2 rounds")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 2)")
    parser.add_argument("--frames", type=int, help="SDV frames per keyframe pair (default 16, quick 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="both arms' torch threads: SDV's intra-op threads, Zoetrope's lanes (default 1, as in issue 16)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    frames = args.frames or (8 if args.quick else 16)

    import torch

    from zoetrope.film.walk import call_shape
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    torch.set_num_threads(args.threads)
    quiet_libraries()
    warnings.filterwarnings("ignore", category=FutureWarning)  # SDV reads unet.in_channels (deprecated)
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    painter = load_painter("tiny", pick_device("cpu"))
    sdv = load_sdv(painter)
    print(f"tiny components, CPU, {args.threads} torch thread(s), {STEPS} steps, guidance 0, Euler, 3 keyframes; "
          f"SDV {2 * frames} frames a film ({frames} a pair), Zoetrope {2 * frames - 1}; {rounds} rounds", flush=True)
    headline: dict[str, dict[int, float]] = {"end_to_end": {}, "model": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            rows, _, decode = call_shape(painter, size, size)  # the rule a render follows (issue 25)
            arms = Arms(painter, sdv, size, frames, rows, decode, Path(tmp) / str(size)).all()
            for run in arms.values():  # warm-up: first calls at a size build their kernels
                run()
            seconds: dict[str, list[float]] = {name: [] for name in arms}
            for r in range(rounds):
                names = list(arms)[r % len(arms):] + list(arms)[:r % len(arms)]
                for name in names:
                    seconds[name].append(arms[name]())
            print(f"{size} px (Zoetrope's width by the rule: {rows} rows a call, decoded {decode} at a time):", flush=True)
            for kind in ("end_to_end", "model"):
                zoe = seconds[f"zoetrope {kind}"]
                ratios = {w: [s / z for s, z in zip(seconds[f"sdv@{w} {kind}"], zoe, strict=True)] for w in SDV_WIDTHS}
                line = "; ".join(f"vs SDV@{w} {spread(ratios[w])}" for w in SDV_WIDTHS)
                times = ", ".join(f"{name.split()[0]} {statistics.median(s):.2f} s" for name, s in seconds.items()
                                  if name.endswith(kind))
                print(f"  {kind:<10} Zoetrope speed / SDV's: {line}  ({times})", flush=True)
                headline[kind][size] = min(statistics.median(ratios[w]) for w in SDV_WIDTHS)  # SDV's better width
    for kind in ("end_to_end", "model"):
        sizes = ", ".join(f"{size} px {value:.2f}" for size, value in headline[kind].items())
        print(f"vs SDV at its better width, {kind}: {sizes}")
    print(f"vs_sdv_end_to_end: {min(headline['end_to_end'].values()):.2f}")
    print(f"vs_sdv_model_only: {min(headline['model'].values()):.2f}")


if __name__ == "__main__":
    main()
