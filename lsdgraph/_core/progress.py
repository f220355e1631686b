"""A one-line progress bar on a terminal's stderr (bytes, docs/s, ETA); silent otherwise."""
from __future__ import annotations

import sys
import time


def count_of(unit: str):
    """An ``amount`` for :class:`Progress` that prints a count: ``count_of("chunks")(1200)``."""
    return lambda n: f"{n:,.0f} {unit}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class Progress:
    """Call :meth:`update` as work advances; :meth:`close` ends the line."""

    def __init__(self, label: str, total_bytes: int, *, enabled: bool | None = None, stream=None,
                 done_bytes: int = 0, amount=human_bytes, unit: str = "docs"):
        self.amount = amount  # how to print progress: bytes by default, or e.g. edges
        self.unit = unit      # what the rate counts
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled)
        self.label, self.total = label, max(total_bytes, 1)
        self.start_bytes = self.bytes = done_bytes
        self.docs = 0
        self.t0 = self.last = time.monotonic()

    def update(self, nbytes: int, ndocs: int) -> None:
        self.bytes += nbytes
        self.docs += ndocs
        now = time.monotonic()
        if self.enabled and (now - self.last >= 0.2 or self.bytes >= self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        dt = max(now - self.t0, 1e-9)
        frac = min(self.bytes / self.total, 1.0)
        rate_b = (self.bytes - self.start_bytes) / dt
        eta = (self.total - self.bytes) / rate_b if rate_b > 0 else float("inf")
        eta_s = "--:--" if eta == float("inf") else time.strftime("%M:%S", time.gmtime(min(eta, 359999)))
        bar = "#" * int(frac * 24)
        self.stream.write(f"\r{self.label[:40]:<40} [{bar:<24}] {frac:6.1%} "
                          f"{self.amount(self.bytes)}/{self.amount(self.total)} "
                          f"{self.docs / dt:,.0f} {self.unit}/s ETA {eta_s} ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
