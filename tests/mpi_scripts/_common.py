"""Data and decompositions shared by the MPI scripts (run under mpiexec) and tests/test_mpi.py.

Everything is a pure function of its arguments, so every rank, and the pytest
process checking the files afterwards, builds the same global arrays.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

#: Styles of the round-trip checkpoints (names not listed are RAW).
STYLES = {"big": "lz4", "grid": "auto", "z": "lz4+shuffle", "u": "lz4+delta"}
REC = np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "S3")])


def global_arrays() -> dict[str, np.ndarray]:
    """The global state of the round-trip tests (flat names)."""
    rng = np.random.default_rng(1234)
    u = rng.standard_normal((37, 23))
    u[3, 4] = np.float64(np.nan)
    u.view(np.uint64)[5, 6] = 0x7FF8_0000_DEAD_BEEF  # a NaN payload: compared bit for bit
    rec = np.zeros(50, REC)
    rec["a"] = np.arange(50)
    rec["b"] = rng.standard_normal(50)
    rec["c"] = [b"x%02d" % (i % 100) for i in range(50)]
    x = np.linspace(0, 40, 9 * 8 * 7 * 2048, dtype=np.float32)
    return {
        "u": u,
        "grid/t": rng.integers(-(2**15), 2**15, (9, 8, 7), dtype=np.int16),
        "rec": rec,
        "z": np.sin(np.linspace(0, 30, 41, dtype=np.float32)),
        "empty": np.zeros((0, 5), np.float64),
        # 14 MiB, compressible: several 4 MiB LZ4 frames per rank
        "big": (np.sin(x) * 1000).astype(np.int32).reshape(9 * 8 * 7, 2048),
    }


def private_arrays(rank: int) -> dict[str, np.ndarray]:
    """Rank-private state: shapes differ per rank; one array is Fortran-ordered, one is 0-d."""
    return {
        "p": np.arange(rank + 3, dtype=np.int64) * (rank + 1),
        "scalar": np.array(rank + 0.5),
        "f": np.asfortranarray(np.arange(6 * (rank + 1), dtype=np.float32).reshape(rank + 1, 6)),
    }


def split(n: int, k: int, i: int) -> tuple[int, int]:
    """Part i of k of range(n) (numpy.array_split sizes)."""
    q, r = divmod(n, k)
    lo = i * q + min(i, r)
    return lo, lo + q + (1 if i < r else 0)


def box(shape: tuple[int, ...], k: int, rank: int, variant: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(start, shape) of ``rank``'s block of an array of ``shape`` split among ``k`` ranks.

    rows: along axis 0; cols: along the last axis; lastempty: along axis 0
    among the first k-1 ranks (the last rank holds nothing when k > 1).
    """
    nd = len(shape)
    start, size = [0] * nd, list(shape)
    if variant == "lastempty" and k > 1:
        if rank == k - 1:
            return tuple(start), tuple([0] * nd)
        k -= 1
    ax = nd - 1 if variant == "cols" else 0
    lo, hi = split(shape[ax], k, rank)
    start[ax], size[ax] = lo, hi - lo
    return tuple(start), tuple(size)


#: How each global array is split when written, and (differently) when read back.
WRITE_SPLIT = {"u": "rows", "grid/t": "cols", "rec": "lastempty", "z": "rows", "empty": "rows", "big": "cols"}
READ_SPLIT = {"u": "cols", "grid/t": "rows", "rec": "rows", "z": "lastempty", "empty": "cols", "big": "rows"}


def region(start: tuple[int, ...], size: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))


def same(a: Any, b: Any) -> bool:
    """Bit-exact equality (dtype, shape and bytes; NaN payloads included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == b.tobytes()


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flat(v, key))
        else:
            out[key] = v
    return out


def report(**fields: Any) -> None:
    """One JSON line on stdout for the test to parse."""
    sys.stdout.write("RESULT " + json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()
