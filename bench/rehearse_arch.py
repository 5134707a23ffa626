"""The published architectures of Zoetrope's presets, for bench/rehearse.py: each model component's class and
config as its Hub repository publishes it, the parameter count its publisher states (with the source), and
the files the repository holds. Only the weights are not the publisher's: they are seeded random.

A count is `exact` where a publisher states the number itself; otherwise it is the range implied by a
published fp32 file size (the Hub lists sizes to three significant digits: 3.46 GB is 3.455e9..3.465e9 bytes,
4 bytes a parameter), or None where nothing is published (then the built count is shown, never checked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from zoetrope.stages.presets import PRESETS


@dataclass(frozen=True)
class Published:
    low: int
    high: int
    source: str
    what: str = "parameters"  # or "stored": a file's size counts tied tensors once per name (BLIP's lm head)

    @property
    def exact(self) -> bool:
        return self.low == self.high

    def matches(self, n: int) -> bool:
        return self.low <= n <= self.high

    def __str__(self) -> str:
        return f"{self.low:,}" if self.exact else f"{self.low / 1e6:,.2f}M..{self.high / 1e6:,.2f}M"


def exact(n: int, source: str) -> Published:
    return Published(n, n, source)


def file_size(gb: float, source: str, digits: int = 3) -> Published:
    """The parameter range of an fp32 safetensors file listed as `gb` GB (decimal, `digits` significant)."""
    import math

    half = 10 ** (math.floor(math.log10(gb)) - digits + 1) / 2 * 1e9
    return Published(int((gb * 1e9 - half) // 4) - 50_000, int((gb * 1e9 + half) // 4), source, "stored")  # header < 200 kB


# ---------------------------------------------------------------------------------------- published counts
# The brief's exact figures are the ones the original code prints when it builds each model:
SD15_UNET = exact(859_520_964, "CompVis/stable-diffusion v1 training log: 'DiffusionWrapper has 859.52 M params'")
SD2_UNET = exact(865_910_724, "Stability-AI/stablediffusion v2 log: 'DiffusionWrapper has 865.91 M params'")
SDXL_UNET = exact(2_567_463_684, "SDXL report (arXiv:2307.01952) / generative-models log: 2567.46 M params")
SD_VAE = exact(83_653_863, "CompVis/latent-diffusion AutoencoderKL f=8: 83.65 M params")
CLIP_L_TEXT = exact(123_060_480, "OpenAI CLIP ViT-L/14 text tower (openai/clip-vit-large-patch14)")
T5_XXL_ENCODER = exact(4_762_310_656, "google/t5-v1_1-xxl encoder (T5EncoderModel)")
# From the Hub's file listings (fp32 safetensors; URL of the listing in each source).
SD2_TEXT = file_size(1.36, "hf.co/stabilityai/sd-turbo text_encoder/model.safetensors 1.36 GB")
SDXL_TEXT2 = file_size(2.78, "hf.co/stabilityai/sdxl-turbo text_encoder_2/model.safetensors 2.78 GB")
SAFETY = file_size(1.22, "SD 1.5 safety_checker/model.safetensors 1.22 GB (listing of hf.co/pt-sk/stable-diffusion-1.5)")
BLIP_BASE = file_size(0.990, "hf.co/Salesforce/blip-image-captioning-base pytorch_model.bin 990 MB")
BLIP_LARGE = file_size(1.88, "hf.co/Salesforce/blip-image-captioning-large model.safetensors 1.88 GB")
LTX_TRANSFORMER = Published(file_size(7.685, "", 4).low, file_size(7.695, "", 4).high,
                            "hf.co/Lightricks/LTX-Video transformer shards 4.94 GB + 2.75 GB", "stored")
MOTION_V153 = file_size(1.67, "hf.co/guoyww/animatediff-motion-adapter-v1-5-3 diffusion_pytorch_model.safetensors 1.67 GB")
X2 = "hf.co/stabilityai/sd-x2-latent-upscaler/tree/1f2883b"
X2_UNET = file_size(1.49, f"{X2}/unet diffusion_pytorch_model.safetensors 1.49 GB")
X2_VAE = file_size(0.335, f"{X2}/vae diffusion_pytorch_model.bin 335 MB")
X4 = "hf.co/stabilityai/stable-diffusion-x4-upscaler/tree/91ecd52"
X4_UNET = file_size(1.89, f"{X4}/unet diffusion_pytorch_model.safetensors 1.89 GB")
X4_VAE = file_size(0.221, f"{X4}/vae diffusion_pytorch_model.safetensors 221 MB")
X4_TEXT = file_size(1.36, f"{X4}/text_encoder model.safetensors 1.36 GB")

# ------------------------------------------------------------------------------------------------ configs
EULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
             interpolation_type="linear", num_train_timesteps=1000, prediction_type="epsilon", sample_max_value=1.0,
             set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, timestep_spacing="trailing",
             trained_betas=None)
SD_VAE_CFG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
                  layers_per_block=2, norm_num_groups=32, act_fn="silu",
                  down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              projection_dim=768, hidden_act="quick_gelu", max_position_embeddings=77, vocab_size=49408,
              bos_token_id=0, eos_token_id=2, pad_token_id=1, layer_norm_eps=1e-5)
CLIP_H23 = dict(CLIP_L, hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                projection_dim=512, hidden_act="gelu")
CLIP_BIGG = dict(CLIP_L, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                 projection_dim=1280, hidden_act="gelu")
SD_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
               block_out_channels=[320, 640, 1280, 1280], act_fn="silu", center_input_sample=False,
               down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
               up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
SD15_UNET_CFG = dict(SD_UNET, attention_head_dim=8, cross_attention_dim=768)
SD2_UNET_CFG = dict(SD_UNET, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True)
SDXL_UNET_CFG = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
                     block_out_channels=[320, 640, 1280], attention_head_dim=[5, 10, 20],
                     transformer_layers_per_block=[1, 2, 10], cross_attention_dim=2048, use_linear_projection=True,
                     addition_embed_type="text_time", addition_time_embed_dim=256,
                     projection_class_embeddings_input_dim=2816,
                     down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                     up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"])
BLIP_TEXT = dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=512, bos_token_id=30522, sep_token_id=102,
                 eos_token_id=2, pad_token_id=0, layer_norm_eps=1e-12)
BLIP_VIT_B = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=384, patch_size=16, layer_norm_eps=1e-5, dropout=0.0)
BLIP_VIT_L = dict(BLIP_VIT_B, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
              dense_act_fn="gelu_new", is_gated_act=True, layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1,
              decoder_start_token_id=0, tie_word_embeddings=False)
LTX_TRANSFORMER_CFG = dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                           attention_head_dim=64, cross_attention_dim=2048, num_layers=28, caption_channels=4096,
                           activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads", norm_elementwise_affine=False,
                           norm_eps=1e-6, attention_bias=True, attention_out_bias=True)
# LTX-Video 0.9.5's VAE (timestep-conditioned decoder, 0.9.5 down blocks), as its vae/config.json publishes it.
LTX_VAE_CFG = dict(in_channels=3, out_channels=3, latent_channels=128, block_out_channels=[128, 256, 512, 1024, 2048],
                   down_block_types=["LTXVideo095DownBlock3D"] * 4, decoder_block_out_channels=[256, 512, 1024],
                   layers_per_block=[4, 6, 6, 2, 2], decoder_layers_per_block=[5, 5, 5, 5],
                   spatio_temporal_scaling=[True] * 4, decoder_spatio_temporal_scaling=[True] * 3,
                   decoder_inject_noise=[False] * 4, downsample_type=["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
                   upsample_residual=[True] * 3, upsample_factor=[2, 2, 2], timestep_conditioning=True, patch_size=4,
                   patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0, encoder_causal=True, decoder_causal=False,
                   spatial_compression_ratio=32, temporal_compression_ratio=8)
MOTION_CFG = dict(block_out_channels=[320, 640, 1280, 1280], motion_layers_per_block=2, motion_max_seq_length=32,
                  motion_mid_block_layers_per_block=1, motion_norm_num_groups=32, motion_num_attention_heads=8,
                  use_motion_mid_block=False, conv_in_channels=None)

# sd-x2-latent-upscaler's unet/config.json at main ("correct config", 12f0a89; diffusers' K-upscaler conversion of
# Katherine Crowson's laion_text_cond_latent_upscaler_2: channels 384-768, depth 4, 8 in = 4 noisy + 4 low-res
# latents, 5 out = 4 + a variance channel, mapping_cond 896 = 128 noise-level + 768 pooled CLIP).
X2_UNET_CFG = dict(act_fn="gelu", attention_head_dim=64, block_out_channels=[384, 384, 768, 768],
                   center_input_sample=False, class_embed_type=None, conv_in_kernel=1, conv_out_kernel=1,
                   cross_attention_dim=768, down_block_types=["KDownBlock2D"] + ["KCrossAttnDownBlock2D"] * 3,
                   downsample_padding=1, dual_cross_attention=False, flip_sin_to_cos=True, freq_shift=0, in_channels=8,
                   layers_per_block=4, mid_block_scale_factor=1, mid_block_type=None, norm_eps=1e-5,
                   norm_num_groups=None, num_class_embeds=None, only_cross_attention=False, out_channels=5,
                   resnet_time_scale_shift="scale_shift", sample_size=None, time_cond_proj_dim=896,
                   time_embedding_type="fourier", timestep_post_act="gelu",
                   up_block_types=["KCrossAttnUpBlock2D"] * 3 + ["KUpBlock2D"], upcast_attention=False,
                   use_linear_projection=False)
X2_SCHEDULER = dict(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, num_train_timesteps=1000,
                    interpolation_type="log_linear", prediction_type="original_sample", trained_betas=None)
# stable-diffusion-x4-upscaler's unet/config.json, vae/config.json (after "Update vae/config.json (#9)", which
# added scaling_factor) and its two scheduler configs, as published.
X4_UNET_CFG = dict(act_fn="silu", attention_head_dim=8, block_out_channels=[256, 512, 512, 1024],
                   center_input_sample=False, cross_attention_dim=1024,
                   down_block_types=["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 3, downsample_padding=1,
                   dual_cross_attention=False, flip_sin_to_cos=True, freq_shift=0, in_channels=7, layers_per_block=2,
                   mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, num_class_embeds=1000,
                   only_cross_attention=[True, True, True, False], out_channels=4, sample_size=128,
                   up_block_types=["CrossAttnUpBlock2D"] * 3 + ["UpBlock2D"], use_linear_projection=True)
X4_VAE_CFG = dict(act_fn="silu", block_out_channels=[128, 256, 512], down_block_types=["DownEncoderBlock2D"] * 3,
                  in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=3,
                  sample_size=256, up_block_types=["UpDecoderBlock2D"] * 3, scaling_factor=0.08333)
X4_LOW_RES = dict(beta_end=0.02, beta_schedule="scaled_linear", beta_start=0.0001, clip_sample=True,
                  num_train_timesteps=1000, prediction_type="epsilon", trained_betas=None, variance_type="fixed_small")
X4_DDIM = dict(beta_end=0.02, beta_schedule="scaled_linear", beta_start=0.0001, clip_sample=False,
               num_train_timesteps=1000, prediction_type="v_prediction", set_alpha_to_one=False, skip_prk_steps=True,
               steps_offset=1, trained_betas=None)


# ------------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class Model:
    """One model component: `folder` in the repo ('' for the root), its library and class, its config."""

    folder: str
    lib: str  # "diffusers" | "transformers" | "safety" (diffusers' StableDiffusionSafetyChecker on a CLIPConfig)
    cls: str
    config: dict
    published: Published | None
    weights: str  # the weights file name as the repository has it
    fp16: bool = False  # the repository also has the `.fp16.` variant
    shard: str = "50GB"  # max_shard_size that reproduces the repository's shards
    reduced: dict | None = None  # full width, fewer layers: what runs where the full one does not fit

    @property
    def label(self) -> str:
        return self.folder or self.cls


@dataclass(frozen=True)
class Aux:
    """A tokenizer, scheduler or processor: built by bench/rehearse_hub.py's `AUX[kind]`, saved in `folder`."""

    folder: str
    kind: str
    cls: str
    options: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()  # exactly what the repository has there


@dataclass(frozen=True)
class Repo:
    preset: str
    revision: str
    revision_note: str  # where the commit comes from
    pipeline: str | None  # model_index.json's _class_name; None for a single model
    parts: tuple  # Model and Aux
    not_written: tuple[str, ...] = ()  # what the repository also holds, which no Zoetrope path reads
    fits: bool = True  # the full architecture loads in fp32 in 12 GB
    extra_index: dict = field(default_factory=dict)  # model_index.json entries besides the parts (nulls, flags)

    @property
    def repo_id(self) -> str:
        return PRESETS[self.preset].repo_id

    def models(self) -> list[Model]:
        return [p for p in self.parts if isinstance(p, Model)]


def synthetic_revision(repo_id: str) -> str:
    return hashlib.sha1(f"zoetrope-rehearsal:{repo_id}".encode()).hexdigest()


DIFF = "diffusion_pytorch_model.safetensors"
CLIP_TOKENIZER_FILES = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")
BLIP_FILES = ("preprocessor_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def _repos() -> dict[str, Repo]:
    nulls = {"feature_extractor": [None, None], "image_encoder": [None, None], "safety_checker": [None, None],
             "requires_safety_checker": False}
    sd_turbo = Repo(
        "sd-turbo", "1681ed09e0cff58eeb41e878a49893228b78b94c", "a published commit (hf.co/stabilityai/sd-turbo/tree/1681ed0)",
        "StableDiffusionPipeline", (
            Model("unet", "diffusers", "UNet2DConditionModel", SD2_UNET_CFG, SD2_UNET, DIFF, fp16=True),
            Model("vae", "diffusers", "AutoencoderKL", dict(SD_VAE_CFG, sample_size=768, scaling_factor=0.18215),
                  SD_VAE, DIFF, fp16=True),
            Model("text_encoder", "transformers", "CLIPTextModel", CLIP_H23, SD2_TEXT, "model.safetensors", fp16=True),
            Aux("tokenizer", "clip_tokenizer", "CLIPTokenizer", {"pad": "!"}, CLIP_TOKENIZER_FILES),
            Aux("scheduler", "scheduler", "EulerDiscreteScheduler",
                dict(EULER, timestep_type="discrete", use_karras_sigmas=False, sigma_min=None, sigma_max=None),
                ("scheduler_config.json",)),
        ), ("sd_turbo.safetensors (single-file checkpoint)", "README.md, LICENSE, pictures"), extra_index=nulls)
    sdxl_reduced = dict(transformer_layers_per_block=[1, 1, 1], layers_per_block=1)
    sdxl_turbo = Repo(
        "sdxl-turbo", "b0ff6e8c8d37d300d650d5f371c80d8bce29de92", "a published commit (hf.co/stabilityai/sdxl-turbo/tree/b0ff6e8)",
        "StableDiffusionXLPipeline", (
            Model("unet", "diffusers", "UNet2DConditionModel", SDXL_UNET_CFG, SDXL_UNET, DIFF, fp16=True,
                  reduced=sdxl_reduced),
            Model("vae", "diffusers", "AutoencoderKL", dict(SD_VAE_CFG, sample_size=512, scaling_factor=0.13025),
                  SD_VAE, DIFF, fp16=True),
            Model("text_encoder", "transformers", "CLIPTextModel", CLIP_L, CLIP_L_TEXT, "model.safetensors", fp16=True,
                  reduced=dict(num_hidden_layers=2)),
            Model("text_encoder_2", "transformers", "CLIPTextModelWithProjection", CLIP_BIGG, SDXL_TEXT2,
                  "model.safetensors", fp16=True, reduced=dict(num_hidden_layers=2)),
            Aux("tokenizer", "clip_tokenizer", "CLIPTokenizer", {"pad": "<|endoftext|>"}, CLIP_TOKENIZER_FILES),
            Aux("tokenizer_2", "clip_tokenizer", "CLIPTokenizer", {"pad": "!"}, CLIP_TOKENIZER_FILES),
            Aux("scheduler", "scheduler", "EulerAncestralDiscreteScheduler", EULER, ("scheduler_config.json",)),
        ), ("sd_xl_turbo_1.0*.safetensors (single-file checkpoints)", "onnx folders of refs/pr", "README.md, pictures"),
        fits=False, extra_index={"feature_extractor": [None, None], "image_encoder": [None, None],
                                 "force_zeros_for_empty_prompt": True})
    sd15 = Repo(
        "sd15", "451f4fe16113bff5a5d2269ed5ad43b0592e9a14", "a published commit (a snapshot path quoted by copies)",
        "StableDiffusionPipeline", (
            Model("unet", "diffusers", "UNet2DConditionModel", SD15_UNET_CFG, SD15_UNET, DIFF, fp16=True),
            Model("vae", "diffusers", "AutoencoderKL", dict(SD_VAE_CFG, sample_size=512, scaling_factor=0.18215),
                  SD_VAE, DIFF, fp16=True),
            Model("text_encoder", "transformers", "CLIPTextModel", CLIP_L, CLIP_L_TEXT, "model.safetensors", fp16=True),
            Model("safety_checker", "safety", "StableDiffusionSafetyChecker",
                  dict(text_config=CLIP_L, vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                                              num_hidden_layers=24, patch_size=14, image_size=224,
                                                              projection_dim=768, hidden_act="quick_gelu"),
                       projection_dim=768), SAFETY, "model.safetensors", fp16=True),
            Aux("tokenizer", "clip_tokenizer", "CLIPTokenizer", {"pad": "<|endoftext|>"}, CLIP_TOKENIZER_FILES),
            Aux("feature_extractor", "clip_image_processor", "CLIPImageProcessor", {}, ("preprocessor_config.json",)),
            Aux("scheduler", "scheduler", "PNDMScheduler",
                dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                     set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, clip_sample=False, trained_betas=None),
                ("scheduler_config.json",)),
        ), ("*.bin, non-EMA variants, v1-5-pruned*.ckpt/.safetensors", "README.md"),
        extra_index={"requires_safety_checker": True, "image_encoder": [None, None]})
    blip = {}
    for name, vision, pub, revision, weights in (
        ("blip-base", BLIP_VIT_B, BLIP_BASE, "82a37760796d32b1411fe092ab5d4e227313294b", "pytorch_model.bin"),
        ("blip-large", BLIP_VIT_L, BLIP_LARGE, "d2494ca4112ee8060b38c500f468b9938e6206af", "model.safetensors"),
    ):
        blip[name] = Repo(
            name, revision, f"a published commit (hf.co/{PRESETS[name].repo_id}/tree/{revision[:7]})", None, (
                Model("", "transformers", "BlipForConditionalGeneration",
                      dict(text_config=BLIP_TEXT, vision_config=vision, projection_dim=512, image_text_hidden_size=256,
                           logit_scale_init_value=2.6592), pub, weights),
                Aux("", "blip_processor", "BlipProcessor", {"size": 384}, BLIP_FILES),
            ), ("tf_model.h5", "README.md") + (("pytorch_model.bin (model.safetensors beside it is read)",)
                                                if weights.endswith("safetensors") else ()))
    taesd = {}
    for name in ("taesd", "taesdxl"):
        scaling = {"taesd": 1.0, "taesdxl": 1.0}[name]
        taesd[name] = Repo(
            name, synthetic_revision(PRESETS[name].repo_id), "synthetic (the preset pins no commit)", None, (
                Model("", "diffusers", "AutoencoderTiny", dict(scaling_factor=scaling), None, DIFF),
            ), ("taesd*_encoder.pth / _decoder.pth (the original PyTorch files)", "README.md, pictures"))
    ltx = Repo(
        "ltx-video", PRESETS["ltx-video"].revision, "the preset's pinned commit", "LTXConditionPipeline", (
            Model("transformer", "diffusers", "LTXVideoTransformer3DModel", LTX_TRANSFORMER_CFG, LTX_TRANSFORMER,
                  DIFF, shard="5GB", reduced=dict(num_layers=2)),
            Model("vae", "diffusers", "AutoencoderKLLTXVideo", LTX_VAE_CFG, None, DIFF),
            Model("text_encoder", "transformers", "T5EncoderModel", T5_XXL, T5_XXL_ENCODER, "model.safetensors",
                  shard="5GB", reduced=dict(num_layers=2)),
            Aux("tokenizer", "t5_tokenizer", "T5Tokenizer", {},
                ("added_tokens.json", "special_tokens_map.json", "spiece.model", "tokenizer_config.json")),
            Aux("scheduler", "scheduler", "FlowMatchEulerDiscreteScheduler",
                dict(base_image_seq_len=1024, base_shift=0.95, invert_sigmas=False, max_image_seq_len=4096,
                     max_shift=2.05, num_train_timesteps=1000, shift=1.0, shift_terminal=0.1, use_beta_sigmas=False,
                     use_dynamic_shifting=False, use_exponential_sigmas=False, use_karras_sigmas=False),
                ("scheduler_config.json",)),
        ), ("ltx-video-2b-v0.9.5.safetensors (single-file checkpoint)", "README.md, media"), fits=False)
    motion = Repo(
        "animatediff-v1-5-3", PRESETS["animatediff-v1-5-3"].revision, "the preset's pinned commit", None, (
            Model("", "diffusers", "MotionAdapter", MOTION_CFG, MOTION_V153, DIFF, fp16=True),
        ), ("README.md",))
    sched = ("scheduler_config.json",)
    x2 = Repo(
        "sd-x2-latent-upscaler", "1f2883b22f62cfb29323770ba9cfdcf601757bd3",
        "a published commit (hf.co/stabilityai/sd-x2-latent-upscaler/tree/1f2883b, the safetensors merge)",
        "StableDiffusionLatentUpscalePipeline", (
            Model("unet", "diffusers", "UNet2DConditionModel", X2_UNET_CFG, X2_UNET, DIFF),
            # vae/config.json (653 B) was not found verbatim: the card says the upscaler works in SD's latent space,
            # and its 335 MB file is exactly the SD VAE's count; no scaling_factor (diffusers' default 0.18215).
            Model("vae", "diffusers", "AutoencoderKL", dict(SD_VAE_CFG, sample_size=256), X2_VAE, DIFF),
            Model("text_encoder", "transformers", "CLIPTextModel", CLIP_L, CLIP_L_TEXT, "model.safetensors"),
            Aux("tokenizer", "clip_tokenizer", "CLIPTokenizer", {"pad": "<|endoftext|>"}, CLIP_TOKENIZER_FILES),
            Aux("scheduler", "scheduler", "EulerDiscreteScheduler", X2_SCHEDULER, sched),
        ), ("*/diffusion_pytorch_model.bin, text_encoder/pytorch_model.bin (the safetensors beside them are read)",
            "README.md, astronaut_*.png"))
    x4 = Repo(
        "sd-x4-upscaler", "91ecd5236872fb9f0f40e9977b166b9d915b8440",
        "a published commit (hf.co/stabilityai/stable-diffusion-x4-upscaler/tree/91ecd52, after vae/config.json #9)",
        "StableDiffusionUpscalePipeline", (
            Model("unet", "diffusers", "UNet2DConditionModel", X4_UNET_CFG, X4_UNET, DIFF),
            Model("vae", "diffusers", "AutoencoderKL", X4_VAE_CFG, X4_VAE, DIFF),
            Model("text_encoder", "transformers", "CLIPTextModel", CLIP_H23, X4_TEXT, "model.safetensors"),
            Aux("tokenizer", "clip_tokenizer", "CLIPTokenizer", {"pad": "!"}, CLIP_TOKENIZER_FILES),
            Aux("low_res_scheduler", "scheduler", "DDPMScheduler", X4_LOW_RES, sched),
            Aux("scheduler", "scheduler", "DDIMScheduler", X4_DDIM, sched),
        ), ("x4-upscaler-ema.ckpt / .safetensors (single-file checkpoints)", "*.bin beside the safetensors",
            "unet/.ipynb_checkpoints/config-checkpoint.json", "README.md"), extra_index={"max_noise_level": 350})
    repos = [sd_turbo, blip["blip-base"], blip["blip-large"], taesd["taesd"], sd15, motion, sdxl_turbo,
             taesd["taesdxl"], ltx, x2, x4]
    return {r.preset: r for r in repos}


REPOS = _repos()
# Presets without a rehearsal yet: what they would need (none: every preset is in REPOS).
NOT_YET: dict[str, str] = {p: "no published architecture transcribed" for p in PRESETS if p not in REPOS}
