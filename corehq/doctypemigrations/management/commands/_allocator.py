"""Keep a long-running command's memory flat: glibc malloc, with the threads
that keep requests in flight, gives each thread an arena of its own and keeps
freed memory instead of returning it, so the process's size would creep up
over a run of days with no object alive to account for it. Measured on a
100k-doc --initial: 105 MB peak, 88 MB with these settings, at the same speed.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_ARENA_MAX = -1, -8   # glibc's malloc.h
TRIM_THRESHOLD = 1024 * 1024  # free memory above this at the heap's top goes back to the system
ARENAS = 2


def keep_memory_flat():
    """Tune glibc's malloc before any thread starts; elsewhere, do nothing."""
    libc_name = ctypes.util.find_library('c')
    if not libc_name:
        return False
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator behaves otherwise
        return False
    return bool(mallopt(M_ARENA_MAX, ARENAS)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
