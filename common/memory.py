"""Freed memory kept for the next training step, for the frameworks that allocate each operation's output anew.

glibc's malloc hands every block above its mmap threshold (128 KiB at first, 32 MiB at most) to the kernel with
mmap and gives it back with munmap when it is freed. PyTorch's CPU allocator and NumPy allocate each operation's
output anew, so at LeNet's sizes (one 96x96 activation of a 256-batch is 52 MB) every step maps, page-faults and
unmaps every activation and gradient: the kernel's page faults, not the arithmetic, then take most of the time of
an elementwise operation (PyTorch's sigmoid on a 256x6x92x92 tensor: 34.5 ms, 13.6 ms without them, on one core
here). `keep_freed_memory` tells malloc to serve every block from its heap and to keep up to TRIM_BYTES of freed
memory there, so the next step reuses pages already mapped: what TensorFlow's, XLA's and MXNet's own pooling
allocators do for theirs. Nothing changes in the arithmetic; the process's resident memory stays at its peak.
LENET_REPRO_MALLOC=default leaves glibc's malloc as it is (`lenet-repro bench --backends --malloc-default torch`
times both in one run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters (glibc's malloc.h)
TRIM_BYTES = 1 << 30  # freed memory malloc keeps on its heap instead of giving it back to the kernel
MALLOC_ENV = "LENET_REPRO_MALLOC"  # "default": leave glibc's malloc as it is


@functools.cache
def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed memory for reuse (glibc's mallopt: no mmap'd blocks, a trim threshold
    of TRIM_BYTES); True where it did, False where the C library is not glibc or LENET_REPRO_MALLOC=default asks
    for glibc's own behaviour (nothing changed)."""
    if os.environ.get(MALLOC_ENV) == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
