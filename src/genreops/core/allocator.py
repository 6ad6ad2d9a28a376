"""glibc's allocator, tuned per process: keep freed memory where it is reused (a process
computing spectrograms: the preprocessor's Python stubs, a Dask worker extracting a chunk), give
it back where a buffer's size is the client's choice (tritonserver).

A clip's spectrograms are a few MB each: with glibc's defaults every request maps fresh pages
and returns them afterwards (~3,500 page faults per request measured in the preprocessor stub),
so the processes that compute them keep freed memory in their heap and their memory is its
high-water mark. Dask workers need it most: their nanny starts them with
MALLOC_TRIM_THRESHOLD_=65536, which also pins the mmap threshold at 128 KiB for good (a
feature computation took 70 ms per 30 s clip there instead of 42, bench/scale.py).
tritonserver itself must not: it holds whatever a client sends (a 38 MB wav, a 2 GB
request), and with the same settings its heap kept such buffers for good (measured: +20-50 MB
per oversized request, never given back). Triton starts the stubs with its own environment, so
the server gets its settings from the environment and the stubs override them with ``mallopt``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys

__all__ = ["KEEP_FREED", "SERVER_MALLOC_ENV", "keep_freed_memory"]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks under 32 MiB come from the heap (a 30 s clip's features peak at ~32 MB in all, in
# blocks of a few MB), and freed memory goes back to the system only once 256 MiB of it sit
# at the heap's top. A larger block (the copy of an oversized request) is its own mapping and
# goes back when freed, so it does not raise the stub's high-water mark.
KEEP_FREED = {M_MMAP_THRESHOLD: 32 * MiB, M_TRIM_THRESHOLD: 256 * MiB}
# For tritonserver: every block from 1 MiB up is its own mapping, unmapped when freed. Setting
# the threshold fixes it: glibc's default raises it up to 32 MiB after the first such free, and
# blocks under it then stay in the arenas. (MALLOC_ARENA_MAX=2 was measured too: no gain.)
SERVER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 * MiB)}


@functools.cache  # process-wide settings: once is enough (extraction calls it per chunk)
def keep_freed_memory() -> bool:
    """Apply ``KEEP_FREED`` to this process; False (and nothing changed) where there is no
    glibc ``mallopt`` or it refuses a value."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.info("no glibc mallopt here: the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = True
    for param, value in KEEP_FREED.items():
        ok = mallopt(param, value) == 1 and ok
    return ok
