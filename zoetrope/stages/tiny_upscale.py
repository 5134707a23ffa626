"""The `tiny` upscalers: diffusers' StableDiffusionLatentUpscalePipeline (x2) and StableDiffusionUpscalePipeline
(x4), the real classes from tiny configs with seeded random weights (the shapes of diffusers' own fast tests,
tests/pipelines/stable_diffusion_latent_upscale and stable_diffusion_2/test_stable_diffusion_upscale.py).

Built once by stages/tiny_video.py into their own cache folder (`folder/x2`, `folder/x4`) with
`save_pretrained`; stages/upscale.py loads them with `from_pretrained` like any Hub snapshot. The VAEs keep the
real models' downsampling (8 for the x2 latent upscaler, 4 for the x4 one), so the sizes a tile may take are
the production ones; only the weights are untrained. Channels are the fewest the blocks take, and the VAEs have no
mid-block attention (quadratic in a tile's latent size, the one part that would cost real time at the default
tiles): the tiny models exist for tests and smoke runs on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoetrope.stages.tiny import _tiny_clip_tokenizer

TINY_UPSCALE_VERSION = "1"  # bump when the builder changes: it names the cache folder (and the tiny revision)


def build_tiny_upscalers(folder: Path) -> None:
    """Write `folder/x2` (latent x2 upscaler) and `folder/x4` (x4 upscaler), each a complete diffusers folder."""
    folder = Path(folder)
    _build_x2(folder / "x2")
    _build_x4(folder / "x4")


def _text_encoder(tokenizer, hidden_act: str):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, layer_norm_eps=1e-5,
        vocab_size=len(tokenizer), max_position_embeddings=77, hidden_act=hidden_act,
    ))


def _build_x2(folder: Path) -> None:
    """The latent upscaler: a k-diffusion UNet (K blocks, Fourier time embedding) conditioned on the nearest-
    upsampled low-res latents (4 + 4 = 8 input channels; 5 outputs, the last an unused variance channel) and on
    a time condition of 128 noise-level features + the pooled prompt (hidden size 32): 160."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionLatentUpscalePipeline,
        UNet2DConditionModel,
    )

    tokenizer = _tiny_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        act_fn="gelu", attention_head_dim=8, norm_num_groups=None, block_out_channels=[32, 32, 64, 64],
        time_cond_proj_dim=160, conv_in_kernel=1, conv_out_kernel=1, cross_attention_dim=32,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"),
        in_channels=8, out_channels=5, mid_block_type=None, only_cross_attention=False,
        resnet_time_scale_shift="scale_shift", time_embedding_type="fourier", timestep_post_act="gelu",
    )
    torch.manual_seed(0)
    # Four blocks: the real SD VAE's 8x downsampling (the latent upscaler works in SD 1/2 latent space).
    vae = AutoencoderKL(
        block_out_channels=[16, 16, 32, 32], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=8, layers_per_block=1, mid_block_add_attention=False,
    )
    scheduler = EulerDiscreteScheduler(prediction_type="sample")
    pipe = StableDiffusionLatentUpscalePipeline(
        vae=vae.eval(), text_encoder=_text_encoder(tokenizer, "quick_gelu"), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)


def _build_x4(folder: Path) -> None:
    """The x4 upscaler: an SD 2 UNet at the low-res image's own size (4 latent + 3 image = 7 input channels),
    the noise level as a class label, a 3-block VAE (4x, scaling factor 0.08333 as in the real model)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    tokenizer = _tiny_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 16, 32), layers_per_block=1, sample_size=32, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, use_linear_projection=True, only_cross_attention=(True, True, False),
        num_class_embeds=351, norm_num_groups=8,  # a class per noise level, 0..max_noise_level
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        norm_num_groups=8, layers_per_block=1, scaling_factor=0.08333, mid_block_add_attention=False,
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae.eval(), text_encoder=_text_encoder(tokenizer, "gelu"), tokenizer=tokenizer, unet=unet.eval(),
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=350,
    )
    pipe.save_pretrained(folder)
