"""Peak-memory probes shared by the benchmarks (Linux /proc): resident and peak-resident KiB of this
process, and a reset of the peak to the current resident size."""
from __future__ import annotations

import gc


def status_kib(field: str) -> int:
    """``VmRSS``, ``VmHWM``... of this process from /proc/self/status, in KiB (0 where absent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> int:
    """Reset this process's VmHWM to its current RSS (after a collection); that RSS in KiB."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return status_kib("VmRSS")
