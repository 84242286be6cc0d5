"""Checkpoint a few numpy arrays with the frame engine, restore them, and print what happened."""

from __future__ import annotations

import io
import time

import numpy as np

import ndckpt
from ndckpt import Checkpt, FrameStyle, Restore


def main() -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 8 * np.pi, 1 << 21)
    arrays = {
        "field": (300 + np.sin(x)).astype(np.float64),
        "counters": np.cumsum(rng.integers(0, 4, size=1 << 21)).astype(np.int64),
        "noise": rng.integers(0, 256, size=1 << 20, dtype=np.uint8),
    }
    for style in (FrameStyle.RAW, FrameStyle.LZ4):
        f = io.BytesIO()
        t0 = time.perf_counter()
        with Checkpt.stream(f) as ck:
            offs = []
            for a in arrays.values():
                ck.frame_open(style)
                ck.buf(a)
                offs.append(ck.frame_close())
        t1 = time.perf_counter()
        data = f.getvalue()
        out = {k: np.empty_like(v) for k, v in arrays.items()}
        t2 = time.perf_counter()
        with Restore.mmio(data) as rs:
            for k in arrays:
                with rs.frame(style):
                    rs.buf(out[k])
        t3 = time.perf_counter()
        ok = all(np.array_equal(out[k], arrays[k]) for k in arrays)
        raw = sum(a.nbytes for a in arrays.values())
        print(
            f"{style.name}: {raw / 2**20:.1f} MiB -> {len(data) / 2**20:.1f} MiB "
            f"(ratio {raw / len(data):.2f}), write {raw / (t1 - t0) / 1e9:.2f} GB/s, "
            f"restore {raw / (t3 - t2) / 1e9:.2f} GB/s, frame ends {offs}, identical={ok}"
        )
        assert ok
    print(f"ndckpt {ndckpt.__version__}")


if __name__ == "__main__":
    main()
