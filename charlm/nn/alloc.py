"""Keep freed memory in the process, so that large per-step arrays are not faulted in anew.

A training step allocates the same large arrays every time: the caches of shape (T, B, G·H)
and their gradients, tens of MB each for a 512-unit LSTM. glibc's malloc serves allocations
above its mmap threshold (32 MiB at most, by default) with fresh `mmap`s and gives them back to
the operating system on `free`, so every step pays a page fault and a page of zeroing for every
4 KiB again. Raising the mmap and trim thresholds keeps that memory in the heap, to be reused by
the next step. Numbers are unchanged; only where the memory comes from. On configuration c of
the training benchmark this made a step about 10 % faster. Anywhere but glibc, this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep up to 1 GiB of freed memory for reuse; True if it agreed. Idempotent."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    mallopt(_M_TOP_PAD, 64 << 20)
    return bool(ok)
