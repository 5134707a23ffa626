"""GPU energy per step from NVML's total-energy counter (millijoules since the driver loaded).

Only a measured number is ever logged: on a CPU, a non-NVIDIA device, or a GPU whose counter is not
supported, the meter is absent and records carry `energy_j: null`. The counter covers the whole GPU, so
another process on the same GPU is counted too (docs/gallery.md says so).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class EnergyMeter:
    """Reads one GPU's cumulative energy counter."""

    def __init__(self, nvml, handle):
        self._nvml = nvml
        self._handle = handle

    @classmethod
    def open(cls, device: str) -> EnergyMeter | None:
        """A meter for the CUDA device the models run on, or None (with the reason logged) if unmeasurable."""
        if device != "cuda":
            return None
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            index = torch.cuda.current_device()
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            except pynvml.NVMLError:
                if os.environ.get("CUDA_VISIBLE_DEVICES"):  # index would name the wrong GPU
                    raise
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            meter = cls(pynvml, handle)
            meter.read_mj()
        except Exception as exc:  # ImportError, NVMLError_NotSupported, no driver: energy is unknown, not zero
            log.info("GPU energy is not measurable here (%s); steps log energy_j: null", exc)
            return None
        return meter

    def read_mj(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))


def joules_since(meter: EnergyMeter | None, start_mj: int | None) -> float | None:
    """Energy in joules since `start_mj`, or None when there is no meter (or it failed mid-way)."""
    if meter is None or start_mj is None:
        return None
    try:
        return round((meter.read_mj() - start_mj) / 1000.0, 3)
    except Exception as exc:
        log.warning("energy counter read failed (%s); this step logs energy_j: null", exc)
        return None


def read_start(meter: EnergyMeter | None) -> int | None:
    if meter is None:
        return None
    try:
        return meter.read_mj()
    except Exception:
        return None
