"""The tiny video models (LTX-Video, an AnimateDiff motion adapter) and upscalers, each in its own cache folder.

They are built like the tiny SD painter (stages/tiny.py): the real diffusers and transformers classes from
tiny configs with seeded random weights, written once with `save_pretrained`, loaded with `from_pretrained`.
Each family has its own folder and version, so adding one never changes the tiny SD painter's revision (which
is part of every walk frame's cache key). Builders: tiny_ltx.py, tiny_motion.py, tiny_upscale.py.
"""

from __future__ import annotations

from pathlib import Path

from zoetrope.stages.presets import Role, cache_dir


def _builder(role: Role):
    """(build(folder), version) for a video role; imported only when that family is asked for."""
    if role == "ltx":
        from zoetrope.stages.tiny_ltx import TINY_LTX_VERSION, build_tiny_ltx

        return build_tiny_ltx, f"tiny-ltx-v{TINY_LTX_VERSION}"
    if role == "motion":
        from zoetrope.stages.tiny_motion import TINY_MOTION_VERSION, build_tiny_motion

        return build_tiny_motion, f"tiny-motion-v{TINY_MOTION_VERSION}"
    if role == "upscaler":
        from zoetrope.stages.tiny_upscale import TINY_UPSCALE_VERSION, build_tiny_upscalers

        return build_tiny_upscalers, f"tiny-upscale-v{TINY_UPSCALE_VERSION}"
    raise ValueError(f"`role` must be 'ltx', 'motion' or 'upscaler' but is {role!r}.")


def ensure_tiny_video(role: Role) -> tuple[Path, str]:
    """Build the role's tiny model once (atomically: tiny.build_once); (folder, revision)."""
    from zoetrope.stages.tiny import build_once

    build, version = _builder(role)
    root = build_once(cache_dir() / version, lambda folder: build(folder / "model"), version)
    return root / "model", version
