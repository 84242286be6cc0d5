"""Zero-copy assembly of byte ranges of several files into one contiguous read-only array.

:func:`stitch` reserves address space for the whole array and maps each file range over its part
with ``MAP_FIXED`` (POSIX ``mmap`` through ctypes), so an array whose pieces live in several
files is still a view of the page cache, as a RAW array of one file is. Contracts:

* Every range but the last must be a whole number of pages long and every range must start at
  a page-aligned file offset; otherwise (or on a platform without ``mmap``/``MAP_FIXED``, or
  when any call fails) :func:`stitch` returns None and maps nothing, and the caller copies.
* The result is read-only and owns its mapping: it is unmapped when the array (and every view
  of it) is collected. The files may be deleted or renamed meanwhile (the mapping keeps them);
  a file truncated by another program makes touching the view raise SIGBUS, as for any mapping.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PAGE", "stitch"]

PAGE = mmap.PAGESIZE

_libc: Any = None
if sys.platform.startswith("linux") or sys.platform == "darwin":
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        _libc.mmap.restype = ctypes.c_void_p
        _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc.munmap.restype = ctypes.c_int
    except (OSError, AttributeError):
        _libc = None

_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED = getattr(mmap, "MAP_FIXED", 0x10)
_MAP_ANON = getattr(mmap, "MAP_ANONYMOUS", getattr(mmap, "MAP_ANON", 0x20))


def stitch(parts: Sequence[tuple[str, int, int]]) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
    """One read-only uint8 array of the ranges ``(path, offset, nbytes)`` back to back, or None.

    None when the ranges do not meet the module's alignment contract, when the platform cannot
    do it, or when any system call fails (nothing stays mapped then). Never raises OSError.
    """
    if _libc is None or not parts:
        return None
    total = sum(n for _, _, n in parts)
    if total == 0 or any(off % PAGE for _, off, _ in parts) or any(n % PAGE for _, _, n in parts[:-1]):
        return None
    span = -(-total // PAGE) * PAGE
    base = _libc.mmap(None, span, mmap.PROT_READ, mmap.MAP_PRIVATE | _MAP_ANON, -1, 0)
    if base is None or base == _MAP_FAILED:
        return None
    ok = False
    try:
        at = 0
        for path, off, n in parts:
            fd = os.open(path, os.O_RDONLY)
            try:
                got = _libc.mmap(base + at, -(-n // PAGE) * PAGE, mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED, fd, off)
            finally:
                os.close(fd)
            if got is None or got == _MAP_FAILED or got != base + at:
                return None
            at += n
        ok = True
    except OSError:
        return None
    finally:
        if not ok:
            _libc.munmap(base, span)
    buf = (ctypes.c_char * total).from_address(base)
    weakref.finalize(buf, _libc.munmap, base, span)
    a: np.ndarray[Any, np.dtype[np.uint8]] = np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
    a.flags.writeable = False
    return a
