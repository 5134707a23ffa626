"""An optional budget: images per hour (paced evenly, a gallery wants no bursts) and kWh per rolling day.
The loop waits instead of generating past it."""

from __future__ import annotations

from collections import deque

from zoetrope.base.errors import UserError
from zoetrope.settings.loop import BudgetSettings

DAY_S = 86400.0


class Budget:
    def __init__(self, settings: BudgetSettings, energy_measurable: bool, last_start: float | None = None):
        if settings.kwh_per_day is not None and not energy_measurable:
            raise UserError("budget.kwh_per_day: GPU energy cannot be measured here (needs an NVIDIA GPU with "
                            "NVML); remove the energy budget or use budget.images_per_hour")
        self.settings = settings
        self.last_start = last_start
        self.spent: deque[tuple[float, float]] = deque()  # (time, joules) in the last day

    @property
    def active(self) -> bool:
        return self.settings.images_per_hour is not None or self.settings.kwh_per_day is not None

    def wait_s(self, now: float) -> tuple[float, str | None]:
        """Seconds to wait before the next step may start, and why (0 and None when it may start now)."""
        waits = [(0.0, None)]
        if self.settings.images_per_hour is not None and self.last_start is not None:
            interval = 3600.0 / self.settings.images_per_hour
            waits.append((self.last_start + interval - now, f"{self.settings.images_per_hour:g} images per hour"))
        if self.settings.kwh_per_day is not None:
            while self.spent and self.spent[0][0] <= now - DAY_S:
                self.spent.popleft()
            limit_j = self.settings.kwh_per_day * 3.6e6
            total = sum(j for _, j in self.spent)
            for t, j in self.spent:  # wait until enough of the day's spending has aged out
                if total < limit_j:
                    break
                total -= j
                waits.append((t + DAY_S - now, f"{self.settings.kwh_per_day:g} kWh per day"))
        seconds, why = max(waits, key=lambda w: w[0])
        return (seconds, why) if seconds > 0 else (0.0, None)

    def started(self, now: float) -> None:
        self.last_start = now

    def spend(self, now: float, joules: float | None) -> None:
        if joules is not None:
            self.spent.append((now, joules))
