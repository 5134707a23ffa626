"""Device and dtype, chosen once per process: cuda > mps > cpu; half precision on accelerators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class DevicePlan:
    """Device and dtype, chosen once per process."""

    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def pick_device(device: str | None = None, half: Literal["fp16", "bf16"] = "fp16") -> DevicePlan:
    """cuda > mps > cpu; half precision on accelerators, fp32 on the CPU (CPU half is slow and lossy)."""
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device == "cpu":
        return DevicePlan("cpu", torch.float32)
    return DevicePlan(device, torch.bfloat16 if half == "bf16" else torch.float16)
