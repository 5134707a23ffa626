"""Load stable-diffusion-videos (SDV) 0.9.2 as its users install it, in the bench process only.

SDV is a peer, not a dependency: it is installed with `--no-deps` into a folder of its own, never into the
project's environment and never vendored:

    .venv/bin/pip install --no-deps --target .venv/bench-sdv stable-diffusion-videos==0.9.2

Its 0.9.2 modules import three things this environment does not have, and the walk needs none of them:
- `torchvision` (the project never installs it): `torchvision.io.write_video` (which SDV calls with PyAV's
  libx264 options to make its mp4s) and `torchvision.transforms.functional.pil_to_tensor`. The stubs below
  do the same with the ffmpeg binary Zoetrope's encoder uses (imageio-ffmpeg's), so both arms pay for the
  same encoder, with SDV's own options (crf 10, yuv420p).
- `cv2`, imported at the top of `upsampling.py` for Real-ESRGAN, which the bench never enables: an empty
  module.
- `transformers.CLIPFeatureExtractor`, removed in transformers 5: an alias of `CLIPImageProcessor`, used
  only in a type hint.
The stubs go into `sys.modules` of this process only, after checking that no real torchvision or cv2 is
importable there, so nothing else can pick them up.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

DEFAULT_TARGET = Path(__file__).resolve().parent.parent / ".venv" / "bench-sdv"
INSTALL = ".venv/bin/pip install --no-deps --target .venv/bench-sdv stable-diffusion-videos==0.9.2"


def _write_video(filename: str, video_array, fps: float, video_codec: str = "libx264", options=None,
                 **_unused) -> None:
    """torchvision.io.write_video for SDV's call: THWC uint8 frames -> H.264 through one ffmpeg process."""
    import imageio_ffmpeg
    import numpy as np

    frames = np.ascontiguousarray(np.asarray(video_array, dtype=np.uint8))
    _, height, width, _ = frames.shape
    options = dict(options or {})
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-c:v", video_codec,
           "-pix_fmt", options.pop("pix_fmt", "yuv420p")]
    for key, value in options.items():
        cmd += [f"-{key}", str(value)]
    subprocess.run([*cmd, str(filename)], input=frames.tobytes(), check=True)


def _pil_to_tensor(image):
    import numpy as np
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def install_shims() -> None:
    """Put the stubs into sys.modules (idempotent); refuse if a real torchvision or cv2 exists here."""
    for real in ("torchvision", "cv2"):
        if real not in sys.modules and importlib.util.find_spec(real) is not None:
            raise RuntimeError(f"a real {real} is installed; the SDV shim would hide it. Remove the shim's use.")
    torchvision = types.ModuleType("torchvision")
    io = types.ModuleType("torchvision.io")
    io.write_video = _write_video
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.pil_to_tensor = _pil_to_tensor
    torchvision.io, torchvision.transforms, transforms.functional = io, transforms, functional
    sys.modules.setdefault("torchvision", torchvision)
    sys.modules.setdefault("torchvision.io", io)
    sys.modules.setdefault("torchvision.transforms", transforms)
    sys.modules.setdefault("torchvision.transforms.functional", functional)
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    import transformers

    if not hasattr(transformers, "CLIPFeatureExtractor"):
        transformers.CLIPFeatureExtractor = transformers.CLIPImageProcessor


def walk_pipeline_class(target: Path = DEFAULT_TARGET):
    """SDV's StableDiffusionWalkPipeline, imported from its own `--target` folder with the shims in place."""
    if not (target / "stable_diffusion_videos").is_dir():
        raise SystemExit(f"stable-diffusion-videos is not installed in {target}; run: {INSTALL}")
    install_shims()
    if str(target) not in sys.path:
        sys.path.append(str(target))  # appended: SDV's folder never shadows the project's packages
    from stable_diffusion_videos.stable_diffusion_pipeline import StableDiffusionWalkPipeline

    return StableDiffusionWalkPipeline
