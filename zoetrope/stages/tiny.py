"""The `tiny` models: the real diffusers and transformers classes (StableDiffusionPipeline's components,
BlipForConditionalGeneration, their tokenizers and processors) from tiny configs with seeded random
weights, like diffusers' `get_dummy_components`. Built once into the cache with `save_pretrained`;
models.py loads them with `from_pretrained` like any other folder. Only the weights are untrained.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from zoetrope.stages.presets import TINY_BUILD_VERSION, Role, cache_dir


def ensure_tiny(role: Role) -> Path:
    """Build the tiny SD painter and BLIP captioner once into the cache; the folder of `role`."""
    def build(folder: Path) -> None:
        build_tiny_painter(folder / "painter")
        build_tiny_captioner(folder / "captioner")

    return build_once(cache_dir() / f"tiny-v{TINY_BUILD_VERSION}", build, TINY_BUILD_VERSION) / role


def build_once(root: Path, build: Callable[[Path], None], version: str) -> Path:
    """`build(folder)` once into `root`, atomically: into a staging folder beside it, marked complete, renamed
    whole (a crash never leaves half a model; a process that finishes second keeps the first one's copy)."""
    if not (root / "complete").exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            build(staging)
            (staging / "complete").write_text(version)
            try:
                os.replace(staging, root)
            except OSError:  # another process finished first; its copy is identical
                if not (root / "complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root


# Words for the tiny BLIP vocabulary: its untrained captions then read as (random) English.
TINY_WORDS = """a an the of with on in at by near under over and two three small large old young
cat dog man woman child girl boy horse bird fish boat car train bicycle tree flower forest field river sea
lake mountain sky cloud sun moon star city street road bridge house window door room table chair bed
painting photo drawing portrait statue wall garden beach snow rain fire light shadow night morning
red blue green yellow white black grey golden dark bright sitting standing walking running flying
looking holding wearing playing sleeping empty crowded distant quiet""".split()


def _tiny_clip_tokenizer():
    """A byte-level CLIP tokenizer: every byte is a token (so any script is encodable), plus merges that make
    each of TINY_WORDS one token, so English prompts have realistic token counts."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for ch in alphabet:
            vocab[ch + suffix] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in [*TINY_WORDS, "photograph", "engraving", "gallery", "painted", "picture"]:
        symbols = [*word[:-1], word[-1] + "</w>"]
        merged = symbols[0]
        for symbol in symbols[1:]:
            if (merged, symbol) not in merges:
                merges.append((merged, symbol))
            merged += symbol
            vocab.setdefault(merged, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_tiny_painter(folder: Path) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    torch.manual_seed(0)
    # Four blocks: the same 8x latent downsampling as the real SD VAE, so sizes behave as in production.
    vae = AutoencoderKL(
        block_out_channels=[16, 16, 32, 32], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=8, layers_per_block=1, sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=77, layer_norm_eps=1e-5,
    ))
    # sd-turbo's scheduler: Euler, trailing timesteps (non-ancestral, so walks do not flicker).
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)


def build_tiny_captioner(folder: Path) -> None:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *TINY_WORDS]
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    # initializer_range 0.2 (not 0.02): untrained captions then depend on the image, as real ones do.
    text = dict(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=64, bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"],
        eos_token_id=vocab["[SEP]"], pad_token_id=vocab["[PAD]"], initializer_range=0.2,
    )
    vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                  image_size=32, patch_size=8, initializer_range=0.2)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=32, initializer_range=0.2)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def ensure_tiny_taesd() -> Path:
    """A tiny AutoencoderTiny (random weights) for the tiny painter, built once like the other tiny models."""
    from diffusers import AutoencoderTiny

    folder = cache_dir() / f"tiny-taesd-v{TINY_BUILD_VERSION}"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        model = AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16), decoder_block_out_channels=(16, 16, 16, 16),
            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
        )
        cache_dir().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".taesd-", dir=cache_dir()))
        model.save_pretrained(staging)
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    return folder
