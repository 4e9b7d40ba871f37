"""Host-memory allocator setting for training and prediction on the CPU (glibc's malloc; elsewhere a no-op).

A training step frees most of its activations in backward and allocates them again in the
next forward. By default glibc gives the top of its heap back to the operating system as
soon as more than a trim threshold is free there (twice its dynamic mmap threshold, at
most 64 MB), so the next forward pays a page fault for every 4 KiB it takes back. At the
release size on a 2-core VM that was ~210k page faults and ~0.9 s of a 7.3 s bf16 step
(~270k and ~1.1 s in fp32); whether a given step trims depends on where its last frees land.

:func:`keep_freed_heap_memory` pins the mmap threshold at 32 MB, the cap of glibc's dynamic
threshold (blocks that large and larger still come from ``mmap`` and go back on free),
and stops the trimming. Freed heap memory is then reused instead of
being returned and faulted in again. The peak resident memory does not change (it is the
heap's high-water mark either way, measured in ``bench/RESULTS.md``); what changes is that
the process keeps that peak until it exits, which suits a training process, and the
prediction commands (``egoasl predict``, ``egoasl ensemble``): at full size in bf16 one
clip's forward took 0.97 instead of 1.16 s (0 instead of ~20k page faults per clip).
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
NO_TRIM = 2**31 - 1  # the largest value mallopt takes: the heap top is never that free


def keep_freed_heap_memory() -> bool:
    """Stop glibc from returning freed heap memory to the OS (see the module docstring).

    Returns True when the setting took effect, False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # the mmap threshold first: setting either parameter freezes glibc's dynamic threshold
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, NO_TRIM))
