"""Keeping the solvers' large tensors in the process's heap while they run (glibc's allocator).

A diffusion solver calls its network once per step on the same shapes, so every step allocates
and frees the same large activations again: hundreds of megabytes per tensor for a photograph
and several samples. glibc serves a request above its *mmap threshold* (128 KiB, adapted up to
32 MiB as large blocks are freed) with a fresh ``mmap``, hands it back with ``munmap`` when the
tensor is freed, and the kernel then faults in (and zeroes) every page again on the next step:
on the README's main job, 42 million page faults and about a third of the CPU time spent in the
kernel. :func:`heap_reuse` serves every request from the heap instead (``M_MMAP_MAX = 0``) and
keeps freed memory there (``M_TRIM_THRESHOLD`` at its maximum), so the next step reuses the
same pages: the same arithmetic on the same inputs, bit-identical results, without the faults.

The price is a higher peak of resident memory: freed blocks stay in the heap and do not always
fit the next request (``docs/benchmarks/end_to_end.rst`` has the measured figures). On leaving
the outermost block the thresholds are set to the values glibc's own adaptation reaches after
large frees (an mmap threshold of 32 MiB and a trim threshold of twice that) and the free
memory is handed back to the system (``malloc_trim``).

Nothing happens where it cannot apply: on a C library other than glibc, or when the user has
chosen malloc settings of their own through the environment (``MALLOC_*_`` variables or
``glibc.malloc`` tunables in ``GLIBC_TUNABLES``), which are then left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["heap_reuse", "heap_reuse_applies"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
#: The mmap threshold glibc's adaptation stops at (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems).
ADAPTED_MMAP_THRESHOLD = 32 * 1024 * 1024
#: glibc's default maximum number of mmapped blocks (DEFAULT_MMAP_MAX).
DEFAULT_MMAP_MAX = 65536
#: Environment variables through which a user sets glibc's malloc parameters.
MALLOC_ENV = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
)

_lock = threading.Lock()
_depth = 0


def _libc() -> Any:
    """glibc, or ``None`` on another C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
            return None  # not glibc
    except OSError:
        return None
    return libc


def heap_reuse_applies() -> bool:
    """Whether :func:`heap_reuse` changes anything in this process.

    Returns
    -------
    bool
        ``True`` on glibc when the environment sets no malloc parameter of its own.
    """
    if any(name in os.environ for name in MALLOC_ENV):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return _libc() is not None


@contextmanager
def heap_reuse() -> Iterator[None]:
    """Within the block, large tensors come from the heap and freed memory stays for reuse.

    See the module docstring. Blocks nest (and may run in several threads): the outermost one
    sets and resets the allocator. Every built-in solver runs inside one; a third-party solver
    may use it the same way.

    Yields
    ------
    None
    """
    global _depth
    libc = _libc() if heap_reuse_applies() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, ADAPTED_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * ADAPTED_MMAP_THRESHOLD)
                libc.malloc_trim(0)
