"""GPU benchmark: the real architectures of `sd-turbo` and `blip-base`, built from their configs with random
weights (only the weights are missing offline; the compute is the same), in half precision.

Reports ms per loop step (caption + paint + durable commit, through zoetrope's own code path), ms per paint,
ms per caption, images/s for batched film frames at 512x512, peak GPU memory, and the paint time as a multiple
of its FLOP floor (FLOPs counted by torch.utils.flop_counter on the paint itself, over the GPU's dense
half-precision peak). `--reduced` runs shrunken architectures at small sizes on the CPU, so a unit test keeps
this script from rotting; `--record` appends the figures to bench/RESULTS.md.

    .venv/bin/python bench/gpu.py [--reduced] [--batch N] [--reps 10] [--compile] [--channels-last] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from zoetrope.film.walk import (
    call_rows,  # noqa: E402
)
from zoetrope.loop.chain import Chain  # noqa: E402
from zoetrope.loop.chainlog import ChainWriter, step_record  # noqa: E402
from zoetrope.settings.loop import LoopConfig  # noqa: E402
from zoetrope.settings.params import (
    PaintParams,  # noqa: E402
    SpeedOptions,
)
from zoetrope.stages.caption import Captioner  # noqa: E402
from zoetrope.stages.device import DevicePlan, pick_device
from zoetrope.stages.models import apply_speed, quiet_libraries  # noqa: E402
from zoetrope.stages.paint import Painter
from zoetrope.stages.presets import ModelRef

# Dense fp16/bf16 tensor-core peaks (FLOP/s), from the vendors' datasheets.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12, "A10G": 70e12}

# stabilityai/sd-turbo: the SD 2.1 architecture at 512 px (OpenCLIP ViT-H/14 text encoder).
SD_TURBO = {
    "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                 cross_attention_dim=1024, use_linear_projection=True,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
    "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                sample_size=768, scaling_factor=0.18215),
    "text": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                 hidden_act="gelu", projection_dim=512, max_position_embeddings=77, vocab_size=49408),
}
# Salesforce/blip-image-captioning-base: ViT-B/16 at 384 px and a BERT-base decoder.
BLIP_BASE = {
    "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=384, patch_size=16),
    "text": dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=512),
}
# --reduced: the same module types, narrow and shallow, for a CPU smoke run.
REDUCED = {
    "unet": dict(block_out_channels=(32, 64, 64, 64), attention_head_dim=(2, 4, 4, 4), cross_attention_dim=64,
                 layers_per_block=1, norm_num_groups=8),
    "vae": dict(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8),
    "text": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2, projection_dim=64),
    "vision": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    "blip_text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
}


def clip_tokenizer(vocab_size: int):
    """A byte-level CLIP tokenizer padded to the real vocabulary size, begin/end ids where SD 2's are."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for ch in sorted(ByteLevel.alphabet()):
            vocab[ch + suffix] = len(vocab)
    while len(vocab) < vocab_size - 2:
        vocab[f"tok{len(vocab)}</w>"] = len(vocab)
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = vocab_size - 2, vocab_size - 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_painter(plan: DevicePlan, reduced: bool, speed: SpeedOptions) -> Painter:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = {k: dict(v) | (REDUCED[k] if reduced else {}) for k, v in SD_TURBO.items()}
    cfg["unet"]["cross_attention_dim"] = cfg["text"]["hidden_size"]
    tokenizer = clip_tokenizer(cfg["text"]["vocab_size"])
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(**cfg["text"], bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet, vae = UNet2DConditionModel(**cfg["unet"]), AutoencoderKL(**cfg["vae"])
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing", steps_offset=1)
    parts = dict(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                 safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    text2img = StableDiffusionPipeline(**parts).to(plan.device, plan.dtype)
    img2img = StableDiffusionImg2ImgPipeline(**text2img.components)
    for pipe in (text2img, img2img):
        pipe.set_progress_bar_config(disable=True)
    ref = ModelRef("painter", "sd-turbo-architecture", "random weights")
    apply_speed(text2img, img2img, speed, plan, ref)
    return Painter(text2img, img2img, ref, plan)


def build_captioner(plan: DevicePlan, reduced: bool) -> Captioner:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vision = BLIP_BASE["vision"] | (REDUCED["vision"] if reduced else {})
    text = BLIP_BASE["text"] | (REDUCED["blip_text"] if reduced else {})
    specials = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, "[DEC]": 30522}
    by_id = {i: w for w, i in specials.items()}
    vocab = {by_id.get(i, f"w{i}"): i for i in range(text["vocab_size"])}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": vision["image_size"],
                                                                          "width": vision["image_size"]}),
                              tokenizer=tokenizer)
    torch.manual_seed(0)
    config = BlipConfig(text_config=text | dict(bos_token_id=30522, sep_token_id=102, eos_token_id=102, pad_token_id=0),
                        vision_config=vision)
    model = BlipForConditionalGeneration(config).to(plan.device, plan.dtype).eval()
    return Captioner(model, processor, ModelRef("captioner", "blip-base-architecture", "random weights"), plan)


def sync(plan: DevicePlan) -> None:
    if plan.device == "cuda":
        torch.cuda.synchronize()


def timed(plan: DevicePlan, fn, reps: int, warmup: int = 2) -> float:
    """Median seconds of `fn` after warm-up (the first calls compile kernels and fill caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(plan)
        start = time.perf_counter()
        fn()
        sync(plan)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def paint_flops(painter: Painter, params: PaintParams) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        painter.paint(["a lighthouse in a storm"], params=params, seeds=[0])
    return counter.get_total_flops()


def gpu_name(plan: DevicePlan) -> str:
    return torch.cuda.get_device_name(0) if plan.device == "cuda" else f"CPU ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="shrunken architectures at small sizes (CPU check)")
    parser.add_argument("--size", type=int, help="image size (default 512, or 128 with --reduced)")
    parser.add_argument("--batch", type=int, help="film frames per call (default: what memory holds, as `render` measures it)")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--device", choices=["cuda", "cpu"])
    parser.add_argument("--bf16", action="store_true", help="bfloat16 instead of float16 on the GPU")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()

    quiet_libraries()
    plan = pick_device(args.device, half="bf16" if args.bf16 else "fp16")
    size = args.size or (128 if args.reduced else 512)
    speed = SpeedOptions(channels_last=args.channels_last, compile=args.compile)
    painter, captioner = build_painter(plan, args.reduced, speed), build_captioner(plan, args.reduced)
    params = PaintParams(steps=1, guidance=0.0, width=size, height=size)
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    (image,) = painter.paint(["warm-up"], params=params, seeds=[1])
    fixed = dict(max_length=20, min_length=20, num_beams=3)  # a fixed-length caption: a fixed cost per call
    config = LoopConfig.model_validate({"paint": {"width": size, "height": size}, "caption": fixed,
                                        "guard": {"enabled": False}})
    caption_params = config.caption.params()
    paint_s = timed(plan, lambda: painter.paint(["a lighthouse in a storm"], params=params, seeds=[7]), args.reps)
    caption_s = timed(plan, lambda: captioner.caption([image], caption_params), args.reps)

    chain = Chain(config, captioner, painter)
    with tempfile.TemporaryDirectory() as tmp:
        writer = ChainWriter.create(Path(tmp) / "chain", {"kind": "header", "schema_version": 2,
                                                                "models": {"painter": painter.ref.as_header()}}, None)
        state = {"image": image}

        def loop_step():
            step = chain.next_step(state["image"])
            writer.commit(step_record(step, None, None), step.image)
            state["image"] = step.image

        step_s = timed(plan, loop_step, args.reps)
        writer.close()

    batch = args.batch or call_rows(painter.plan.device, size, size)  # the rule a render follows
    embeds = painter.encode(["a lighthouse", "a harbour"], None, 0.0)
    t = torch.linspace(0, 1, batch).view(-1, 1, 1).to(embeds["prompt_embeds"])
    walk = {"prompt_embeds": torch.lerp(embeds["prompt_embeds"][:1], embeds["prompt_embeds"][1:], t)}
    latents = painter.noise(list(range(batch)), size, size)
    frames_s = timed(plan, lambda: painter.paint(params=params, prompt_embeds=walk, latents=latents), max(3, args.reps // 3))

    flops = paint_flops(painter, params)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in gpu_name(plan)), None)
    floor_ms = flops / peak * 1e3 if peak else None
    memory = torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None

    rows = {
        "device": ", ".join([gpu_name(plan), plan.dtype_name] + [name for name, on in (
            ("channels-last", args.channels_last), ("torch.compile", args.compile),
            ("reduced architectures", args.reduced)) if on]),
        "size": f"{size}x{size}",
        "ms per loop step (caption + paint + commit)": f"{step_s * 1e3:.1f}",
        "ms per paint (1 step)": f"{paint_s * 1e3:.1f}",
        "ms per caption (beam 3, 20 tokens)": f"{caption_s * 1e3:.1f}",
        f"film frames/s (batch {batch}{', the measured call width' if args.batch is None else ''})":
            f"{batch / frames_s:.2f}",
        "paint GFLOP": f"{flops / 1e9:.2f}",
        "paint / FLOP floor": f"{paint_s * 1e3 / floor_ms:.1f}x (floor {floor_ms:.2f} ms)" if floor_ms else "n/a (no known peak)",
        "peak GPU memory (GiB)": f"{memory:.2f}" if memory is not None else "n/a (CPU)",
    }
    for key, value in rows.items():
        print(f"{key}: {value}")
    if args.record:
        record(rows)
    print(f"gpu_loop_step_ms: {step_s * 1e3:.2f}")


def record(rows: dict) -> None:
    path = Path(__file__).resolve().parent / "RESULTS.md"
    lines = [f"\n## {dt.date.today().isoformat()}: {rows['device']}\n\n", "| figure | value |\n", "|---|---|\n"]
    lines += [f"| {k} | {v} |\n" for k, v in rows.items() if k != "device"]
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
