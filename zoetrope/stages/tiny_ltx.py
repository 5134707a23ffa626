"""The tiny LTX-Video: LTXConditionPipeline's real components (LTXVideoTransformer3DModel, AutoencoderKLLTXVideo,
T5EncoderModel and its Unigram tokenizer, FlowMatchEulerDiscreteScheduler) from tiny configs with seeded random
weights, like diffusers' `get_dummy_components` (tests/pipelines/ltx/test_ltx_condition.py). Written once with
`save_pretrained` (tiny_video.py owns the cache folder); stages/ltx.py loads it with `from_pretrained` like the
real weights. Unlike diffusers' dummy VAE, this one compresses like the real one (32x in space, 8x in time), so
the 8k+1 frame rule, sizes in multiples of 32 and the latent positions of condition frames behave as in
production; and its decoder is timestep-conditioned like LTX-Video 0.9.1+, so the decode-noise path runs too.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_LTX_VERSION = "1"  # bump when the builder changes: it names the cache folder (and so every chunk's cache key)


def _tiny_t5_tokenizer():
    """A T5 (Unigram) tokenizer without a file download: every letter and digit is a piece (so any Latin text is
    encodable), and each of TINY_WORDS is one piece, so English prompts have realistic token counts."""
    from transformers import T5TokenizerFast

    from zoetrope.stages.tiny import TINY_WORDS

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{word}", -1.0) for word in dict.fromkeys(TINY_WORDS)]
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789,.'-":
        pieces += [(ch, -5.0), (f"\u2581{ch}", -5.5)]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=256)


def build_tiny_ltx(folder: Path) -> None:
    """Build the tiny LTXConditionPipeline into `folder` (about 1 MB; seconds on a CPU)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = _tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=32,
    )
    torch.manual_seed(0)
    # patch 4 x three 2x stages = 32x in space, three 2x stages = 8x in time: the real VAE's ratios.
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8,
        block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_block_out_channels=(8, 16, 32), decoder_layers_per_block=(1, 1, 1, 1),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False, False, False, False),
        upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=True,
        patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    ))
    # The condition pipeline passes its own sigma schedule as timesteps: no dynamic shifting (as in LTX 0.9.5).
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0)
    pipe = LTXConditionPipeline(
        transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
    )
    pipe.save_pretrained(folder)
