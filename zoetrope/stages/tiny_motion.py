"""The tiny AnimateDiff motion adapter: diffusers' real `MotionAdapter` from a tiny config that fits the tiny SD
painter's UNet (stages/tiny.py: block_out_channels (32, 64), one layer per block, norm groups 8), with seeded
random weights, like the `get_dummy_components` of diffusers' tests/pipelines/animatediff/test_animatediff.py.

Shaped like the Hub's v1-5-3 adapter where shape matters to the code paths: no mid-block motion module (the
case that diffusers' `disable_free_noise` trips on) and a 32-frame positional encoding, so the tiny clip painter
takes the same FreeNoise decisions (context 16) as the real one. stages/tiny_video.py builds it once into the
cache; stages/animatediff.py loads it with `from_pretrained` like any adapter folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_MOTION_VERSION = "1"  # bump when the config or seed changes: it names the cache folder and the revision


def build_tiny_motion(folder: Path) -> None:
    """Write a seeded random MotionAdapter for the tiny painter's UNet into `folder` (save_pretrained)."""
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=(32, 64),  # the tiny UNet's; from_unet2d refuses any other
        motion_layers_per_block=1,  # the tiny UNet's layers_per_block (up blocks get one more, as in diffusers)
        motion_num_attention_heads=4,  # head dims 8 and 16
        motion_norm_num_groups=8,
        motion_max_seq_length=32,  # as v1-5-2/v1-5-3: positional encodings for 32 frames
        use_motion_mid_block=False,  # as v1-5-3
    )
    adapter.save_pretrained(folder)
