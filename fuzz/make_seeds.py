"""Write the seed inputs of the reader fuzz corpus: small valid checkpoints of both styles.

Run from the repository root: ``.venv/bin/python fuzz/make_seeds.py fuzz/corpus``. The seeds
are deterministic (fixed content), named ``seed-<what>``, and kept in the corpus so the
fuzzer always starts from files that pass every check.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

import ndckpt
from ndckpt._backend import StreamSink
from ndckpt.api import _prepare, _write_checkpoint


def _save(arrays: Any, style: Any = "raw", frame_bytes: int = 1 << 16, metadata: Any = None) -> bytes:
    buf = io.BytesIO()
    _write_checkpoint(StreamSink(buf, 1 << 20), _prepare(arrays, style, metadata, frame_bytes), 1, None)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    small = {
        "i": np.arange(6, dtype="<i4").reshape(2, 3),
        "f": np.array([1.5, np.nan, -0.0], ">f8"),
        "s": np.array([(1, 2.0)], [("a", "<i2"), ("b", "<f4")]),
        "u": np.array(["ab", "c"], "<U2"),
        "b": np.array(True),
        "g": {"x": np.zeros(0, "u1"), "empty": {}},
    }
    out = {
        "empty": _save({}),
        "raw-small": _save(small),
        "lz4-small": _save(small, "lz4"),
        "mixed-small": _save(small, {"i": "lz4", "g/x": "lz4"}, metadata={"step": 3}),
        "fortran": _save({"F": np.asfortranarray(np.arange(12, dtype="u2").reshape(3, 4))}, "lz4"),
        # 16 KiB frames: arrays larger than 4 KiB get frames of their own, so these
        # small files still have several frames of each style.
        "raw-frames": _save({"a": np.arange(5000, dtype="<u4"), "b": np.ones(10, "u1")}, frame_bytes=1 << 16),
        "lz4-frames": _save(
            {"a": (np.arange(40000) % 7).astype("u1"), "b": np.frombuffer(rng.bytes(300), "u1")}, "lz4"
        ),
        "lz4-random": _save({"r": np.frombuffer(rng.bytes(20000), "u1")}, "lz4"),
    }
    for data in out.values():
        ndckpt.verify(data)
    return out


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")
    target.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (target / f"seed-{name}").write_bytes(data)
        print(f"{target / ('seed-' + name)}: {len(data)} bytes")


if __name__ == "__main__":
    main()
