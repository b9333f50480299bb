"""glibc's allocator, tuned for a process that moves part-sized buffers between threads.

The CLI calls :func:`tune_malloc` before anything else; the CPU benchmark calls it too,
so that the floor it measures pays what a push pays for memory and no more.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc's mallopt parameter numbers (malloc.h) and the values set here.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS = 2
#: Larger than any part buffer, so parts are carved from the arenas' heaps.
MALLOC_MMAP_THRESHOLD = 64 * 1024 * 1024
#: Free memory an arena keeps at its top instead of returning it to the kernel.
MALLOC_TRIM_THRESHOLD = 32 * 1024 * 1024


def tune_malloc() -> None:
    """Set glibc's allocator up for part-sized buffers (a no-op elsewhere); call once, early."""
    # glibc gives every thread that allocates under contention an arena of its own
    # and keeps what is freed there for later: parts read and encoded in worker
    # threads would leave freed part buffers in a dozen arenas, and resident memory
    # far above the memory budget. Two arenas keep the budget's promise. Within
    # them, part buffers come from the heap (not one mmap each) and a little freed
    # memory is kept for the next part: fresh pages cost a fault each, and faults
    # were a fifth of the client's CPU per GiB pushed.
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl has no arenas to limit)
        return
    libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    libc.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
