"""Deterministic benchmark datasets, generated at any size.

Every generator returns a fresh, page-aligned, C-contiguous numpy array (or, for
``many_small``, a list of small arrays) and caches nothing on disk. The same
arguments always give the same bytes, on any machine with numpy's ``default_rng``
(PCG64). A smaller request is a prefix of a larger one (for ``ints``, among
requests of at least 256 MiB), so the 256 MiB variant of a dataset is the first
quarter of its 1 GiB variant.

- ``smooth`` (A): float64 field of shape (S, 512, 512) sliced to the requested
  size, built slab by slab (slab ``i`` uses ``default_rng([1, i])``) as
  ``300 + 0.5 sin(4 pi (y + z)) + sin(2 pi x) cos(2 pi y) + 0.25 cos(6 pi x + 2 pi z)
  + 1e-4 N(0, 1)``, with ``x = i / 512``, ``y = j / 512``, ``z = k / 512``.
  LZ4 on 64 KiB chunks barely compresses it (ratio ~0.996): the low mantissa bytes
  are noise.
- ``ints`` (B): int64 in blocks of 128 MiB (or half the request when that is
  smaller, so both kinds are always present) alternating between mostly-zero
  particle indices (95 % zeros, 5 % uniform below 2**24; block ``b`` uses
  ``default_rng([2, b])``) and monotone counters (cumsum of U{0..3}, continuing
  the previous counter block's last value). LZ4 ratio ~4.4.
- ``random`` (C): uint8 from ``default_rng(3).bytes``; incompressible.
- ``many_small`` (D): ``count`` separate float32 arrays of ``length`` standard
  normal values each (``default_rng(4)``); 20,000 x 64 by default (4.9 MiB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "PAGE",
    "aligned_empty",
    "generate",
    "ints",
    "many_small",
    "prefault",
    "random_bytes",
    "smooth",
]

PAGE = 4096
_SLAB = 512 * 512  # float64 elements per smooth slab (2 MiB)
_INT_BLOCK = 128 << 20  # bytes per ints block


def aligned_empty(nbytes: int, dtype: Any = np.uint8) -> np.ndarray[Any, Any]:
    """An uninitialised array of ``nbytes`` bytes whose first byte is page-aligned.

    Allocates ``nbytes + 4096`` and slices to the first 4096-byte boundary: on this
    machine copies into addresses 16 B off a page boundary run about 3x slower.
    """
    dt = np.dtype(dtype)
    if nbytes % dt.itemsize:
        raise ValueError(f"{nbytes} bytes is not a multiple of the item size {dt.itemsize}")
    raw = np.empty(nbytes + PAGE, dtype=np.uint8)
    start = (-int(raw.ctypes.data)) % PAGE
    return raw[start : start + nbytes].view(dt)


def prefault(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Touch every page of ``arr`` (writes zeros) so timed runs do not pay first-touch faults."""
    arr.view(np.uint8).reshape(-1).fill(0)
    return arr


def smooth(nbytes: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Dataset A: ``nbytes // 8`` float64 values of the smooth field (flat, page-aligned)."""
    n = nbytes // 8
    out = aligned_empty(n * 8, np.float64)
    grid = np.arange(512, dtype=np.float64) / 512.0
    y = grid[:, None]
    z = grid[None, :]
    base = 300.0 + 0.5 * np.sin(4 * np.pi * (y + z))  # the slab-independent part
    cos2y = np.cos(2 * np.pi * y)
    done, i = 0, 0
    while done < n:
        x = i / 512.0
        slab = base + np.sin(2 * np.pi * x) * cos2y + 0.25 * np.cos(6 * np.pi * x + 2 * np.pi * z)
        slab += 1e-4 * np.random.default_rng([1, i]).standard_normal((512, 512))
        take = min(_SLAB, n - done)
        out[done : done + take] = slab.reshape(-1)[:take]
        done += take
        i += 1
    return out


def ints(nbytes: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Dataset B: ``nbytes // 8`` int64 values, alternating mostly-zero and counter blocks."""
    n = nbytes // 8
    out = aligned_empty(n * 8, np.int64)
    block = min(_INT_BLOCK, max(8, (n * 8) // 2)) // 8
    done, b, last = 0, 0, 0
    while done < n:
        take = min(block, n - done)
        rng = np.random.default_rng([2, b])
        seg = out[done : done + take]
        if b % 2 == 0:
            seg[:] = 0
            hits = rng.random(take) < 0.05
            seg[hits] = rng.integers(0, 1 << 24, size=int(hits.sum()), dtype=np.int64)
        else:
            np.cumsum(rng.integers(0, 4, size=take, dtype=np.int64), out=seg)
            seg += last
            last = int(seg[-1])
        done += take
        b += 1
    return out


def random_bytes(nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Dataset C: ``nbytes`` uniformly random bytes."""
    out = aligned_empty(nbytes, np.uint8)
    rng = np.random.default_rng(3)
    step = 64 << 20
    for lo in range(0, nbytes, step):
        hi = min(nbytes, lo + step)
        out[lo:hi] = np.frombuffer(rng.bytes(hi - lo), dtype=np.uint8)
    return out


def many_small(count: int = 20_000, length: int = 64) -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    """Dataset D: ``count`` separate float32 arrays of ``length`` standard normal values."""
    rng = np.random.default_rng(4)
    block = rng.standard_normal((count, length), dtype=np.float32)
    return [block[i].copy() for i in range(count)]


#: The size-parameterised datasets, by name.
DATASETS: dict[str, Callable[[int], np.ndarray[Any, Any]]] = {
    "smooth": smooth,
    "ints": ints,
    "random": random_bytes,
}


def generate(name: str, nbytes: int) -> np.ndarray[Any, Any]:
    """The dataset ``name`` ("smooth", "ints" or "random") at ``nbytes`` bytes (rounded down to items)."""
    try:
        return DATASETS[name](nbytes)
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS)}") from None
