"""Helpers shared by the benchmark scripts: devices, clocks and medians.

On the CPU a benchmark times the **process CPU time** (robust on a shared machine: waiting for a
core is not counted, and with one torch thread all the work is counted); on a GPU it times the
**wall clock** around the call followed by ``torch.cuda.synchronize``, since the work happens on
the device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def device_of(name: str) -> torch.device:
    """``torch.device(name)``, with a clear error when CUDA is asked for but absent."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return dev


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> Callable[[], float]:
    """Process CPU time on the CPU, wall time elsewhere."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def clock_name(device: torch.device) -> str:
    """Words for :func:`clock`."""
    return "process CPU time" if device.type == "cpu" else "wall time (synchronised)"


def median_time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` (after none: warm up yourself)."""
    tick = clock(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = tick()
        fn()
        sync(device)
        times.append(tick() - t0)
    return statistics.median(times)


def device_label(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU architecture."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"
