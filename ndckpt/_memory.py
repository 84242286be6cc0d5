"""Small memory helpers shared by the writer and the readers."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["PAGE", "aligned_empty", "buffer_address", "buffer_view", "gc_paused"]

#: The alignment of every buffer ndckpt allocates for data: a page.
PAGE = 4096
_addressof = ctypes.addressof
_c_char = ctypes.c_char


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a head's objects are built.

    None of them can be cyclic garbage, but a head of many arrays makes
    hundreds of thousands of objects, and the collector would rescan the growing
    heap again and again while they are built. The caller's setting is restored,
    even on error.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def buffer_view(a: Any) -> memoryview:
    """A memoryview of a buffer (numpy arrays included)."""
    return memoryview(a)


def buffer_address(mv: memoryview) -> int:
    """Address of the first byte of a C-contiguous memoryview (0 when empty).

    The one address helper: the native calls (liblz4, XXH64, memmove) take addresses from it.
    Writable buffers go through ``ctypes.c_char.from_buffer``, the cheaper path; read-only
    ones, which ctypes refuses to wrap, through numpy's ``ndarray.ctypes``, which builds a
    helper object per call (``benchmarks/bench_micro.py --case address`` times both). The
    address is valid while the buffer behind ``mv`` is alive and not resized.
    """
    if not mv.nbytes:
        return 0
    if not mv.readonly:
        return _addressof(_c_char.from_buffer(mv))
    return int(np.frombuffer(mv, dtype=np.uint8).ctypes.data)


def aligned_empty(nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A new, uninitialised uint8 array of ``nbytes`` whose data starts on a :data:`PAGE` boundary.

    The one allocator for data buffers: copies between them and the page-aligned arrays ndckpt
    returns run at one alignment (``benchmarks/bench_micro.py --case alignment``). The caller owns
    it; it keeps its (at most ``PAGE`` bytes larger) base allocation alive.
    """
    raw = np.empty(nbytes + PAGE, dtype=np.uint8)
    start = (-int(raw.ctypes.data)) % PAGE
    return raw[start : start + nbytes]
