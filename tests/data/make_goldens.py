"""Regenerate the golden ndckpt files of this directory (format version 2).

Usage: ``python tests/data/make_goldens.py`` (from the repository root).

The goldens pin the container format: ``tests/test_goldens.py`` checks that today's code
writes these exact bytes and reads them back. Regenerate them only for a deliberate format
change, and then update the SHA-256 values pinned in ``tests/test_goldens.py`` too, so the
change shows in review.

Every array is built from integers (no random generator, no platform-dependent math) and
structured arrays start zeroed, so their padding bytes are defined.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def raw_arrays() -> dict[str, Any]:
    return {
        "a": np.arange(6, dtype="<i4").reshape(2, 3),
        "b": np.array([1.5, -2.0, 0.25], dtype=">f8"),
    }


def lz4_arrays() -> dict[str, Any]:
    return {
        "x": np.repeat(np.arange(8, dtype="<u2"), 64),
        "y": (np.arange(50, dtype="<f4") / 8).astype("<f4"),
    }


REC = np.dtype(
    {
        "names": ["id", "pos", "flag"],
        "formats": ["<u4", np.dtype([("x", "<f4"), ("y", "<f4")]), "?"],
        "offsets": [0, 8, 16],
        "itemsize": 20,
    }
)


def mixed_arrays() -> dict[str, Any]:
    rec = np.zeros(3, REC)
    rec["id"] = [7, 8, 9]
    rec["pos"]["x"] = [0.5, 1.5, 2.5]
    rec["pos"]["y"] = [-1.0, -2.0, -3.0]
    rec["flag"] = [True, False, True]
    return {
        "model": {
            "w": np.asfortranarray(np.arange(12, dtype="<f8").reshape(3, 4) / 4),
            "b": np.zeros(4, dtype="<f2"),
        },
        # A 0-d array: numpy scalars are Python-value leaves in the head since the "values" feature,
        # and this golden predates it (its bytes hold "step" as a 0-d array in a frame).
        "opt": {"step": np.array(1234, dtype=np.int64), "state": {}},
        "rec": rec,
        "when": np.array(["2024-01-02T03:04:05", "NaT"], dtype="M8[s]"),
        "names": np.array([b"ab", b"cde"], dtype="S3"),
        "labels": np.array(["\u03b1", "\u03b2\u03b3"], dtype="<U2"),
        "empty": np.empty((0, 3), dtype="<i8"),
    }


def _splitmix64(n: int) -> np.ndarray[Any, Any]:
    """``n`` pseudo-random uint64 values from integer arithmetic only (splitmix64 of 0..n-1)."""
    z = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def verbatim_arrays() -> dict[str, Any]:
    """LZ4 arrays that LZ4 cannot shrink by 1/32: their frame is stored verbatim (record bit 63)."""
    return {
        "noise": _splitmix64(512).astype("<u8"),
        "tag": np.array([3, 1, 4], dtype="<u1"),
        "plain": np.arange(4, dtype="<i2"),
    }


def filter_arrays() -> dict[str, Any]:
    """Arrays for the filter goldens (format §2.8): "f64" spans 3 full filter blocks and a
    4,424-byte one; "f32" and "i16" are packed, one frame per filter group (item sizes 4, 2)."""
    return {
        "f64": (np.arange(25_001, dtype="<i8") // 7).astype("<f8") / 4,
        "f32": (np.arange(1000, dtype="<f4") / 8).astype("<f4"),
        "i16": (np.arange(999, dtype="<i2") % 300 - 150).astype("<i2"),
    }


def delta_arrays() -> dict[str, Any]:
    """filter_arrays plus a uint8 mask (filtered by delta with item size 1)."""
    return {**filter_arrays(), "mask": ((np.arange(5000) // 100) % 2).astype("<u1")}


def auto_arrays() -> dict[str, Any]:
    """For style "auto": a smooth field (a filter pays), spikes (plain LZ4: no "filter" key), and
    noise with "lz4+delta" that LZ4 cannot shrink (stored verbatim, unfiltered)."""
    spikes = np.zeros(140_000, "<f8")  # over 1 MiB: a frame of its own, not packed with "smooth"
    spikes[::4999] = 1.0
    return {
        "smooth": np.arange(20_000, dtype="<i8").astype("<f8") * 0.5 + 1000,
        "spikes": spikes,
        "noise": _splitmix64(4096).view("<f8"),
    }


#: name -> (arrays factory, save keyword arguments)
GOLDENS: dict[str, tuple[Any, dict[str, Any]]] = {
    "raw.ndckpt": (raw_arrays, {"style": "raw"}),
    "lz4.ndckpt": (lz4_arrays, {"style": "lz4"}),
    "verbatim.ndckpt": (verbatim_arrays, {"style": {"noise": "lz4", "tag": "lz4"}}),
    "shuffle.ndckpt": (filter_arrays, {"style": "lz4+shuffle"}),
    "delta.ndckpt": (delta_arrays, {"style": "lz4+delta"}),
    "auto.ndckpt": (auto_arrays, {"style": {"smooth": "auto", "spikes": "auto", "noise": "lz4+delta"}}),
    "mixed.ndckpt": (
        mixed_arrays,
        {
            "style": {"model": {"w": "lz4"}, "rec": "lz4", "labels": "lz4"},
            "metadata": {"format": "ndckpt golden", "version": 1, "notes": ["nested", "structured"]},
        },
    ),
}


#: The filter vectors (format §2.8, ``filters/``): item sizes and the input's length (three
#: full blocks and a partial one; item sizes 3 and 12 leave tails in every block).
VECTOR_ITEMSIZES = (1, 2, 3, 4, 8, 12, 16)
VECTOR_NBYTES = 3 * 65536 + 13


def vector_input() -> np.ndarray[Any, Any]:
    """The filter vectors' input: ``(i * 2654435761) >> 7`` mod 256 for byte i."""
    return ((np.arange(VECTOR_NBYTES, dtype=np.uint64) * np.uint64(2654435761)) >> np.uint64(7)).astype(np.uint8)


def write_filter_vectors() -> None:
    import hashlib

    from ndckpt.filters import FILTERS, filter_into

    d = HERE / "filters"
    d.mkdir(exist_ok=True)
    src = vector_input()
    files = {"input.bin": src.tobytes()}
    for kind in FILTERS:
        for s in VECTOR_ITEMSIZES:
            out = np.empty_like(src)
            filter_into(kind, src, out, s)
            files[f"{kind}-{s}.bin"] = out.tobytes()
    for name, data in files.items():
        (d / name).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    (d / "SHA256SUMS").write_text(sums)
    print(f"wrote {len(files)} filter vectors in {d}")


def main() -> int:
    import ndckpt

    for name, (make, kw) in GOLDENS.items():
        path = HERE / name
        ndckpt.save(path, make(), **kw)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    write_filter_vectors()
    return 0


if __name__ == "__main__":
    sys.exit(main())
