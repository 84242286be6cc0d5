"""What reporting progress inside large RAW frames costs: A/B in one process, best of N.

A is one progress report per frame (``PROGRESS_STEP`` larger than any frame: what
ndckpt did before reports came inside frames), B the default step (16 MiB, or 1%
of the total). Both pass a no-op callback; "none" passes no callback at all.
Runs alternate A, B, none so that a noisy neighbour hits all three alike.

    python benchmarks/progress_overhead.py [--gib 1] [--repeat 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np

import ndckpt
from ndckpt import parallel


def _noop(done: int, total: int) -> None:
    return None


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def best(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best wall time of each, and (key + " cpu") its best CPU time (all threads): less hurt by neighbours."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), _cpu()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(_cpu() - c0)
    return {**{k: min(v) for k, v in times.items()}, **{k + " cpu": min(v) for k, v in cpu.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="RAW array size in GiB (LZ4 uses a quarter)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm")
    args = ap.parse_args()
    n = int(args.gib * (1 << 30))
    rng = np.random.default_rng(0)
    raw = {"x": rng.integers(0, 255, n, dtype=np.uint8)}
    lz4 = {"y": np.repeat(np.arange(n // 4 // 64, dtype=np.uint8), 64)}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = os.path.join(d, "p.ndckpt")

        def run(step: int | None, fn: Callable[[Any], Any]) -> Callable[[], Any]:
            def go() -> Any:
                with mock.patch.object(parallel, "PROGRESS_STEP", step or parallel.PROGRESS_STEP):
                    return fn(_noop if step is not None else None)

            return go

        per_frame, default = 1 << 62, parallel.PROGRESS_STEP
        cases: dict[str, Callable[[Any], Any]] = {
            "RAW save": lambda cb: ndckpt.save(path, raw, progress=cb),
            "LZ4 save": lambda cb: ndckpt.save(path, lz4, style="lz4", progress=cb),
        }
        for what, fn in cases.items():
            t = best({"A": run(per_frame, fn), "B": run(default, fn), "none": run(None, fn)}, args.repeat)
            nb = (raw if what.startswith("RAW") else lz4)[("x" if what.startswith("RAW") else "y")].nbytes
            print(
                f"{what} {nb / 2**30:.2f} GiB: per frame {t['A'] * 1e3:.0f} ms, in pieces {t['B'] * 1e3:.0f} ms, "
                f"no callback {t['none'] * 1e3:.0f} ms; speed ratio pieces/per-frame {t['A'] / t['B']:.3f} "
                f"(CPU {t['A cpu'] * 1e3:.0f} / {t['B cpu'] * 1e3:.0f} ms: {t['A cpu'] / t['B cpu']:.3f})"
            )
        ndckpt.save(path, raw)

        def load_mapped(cb: Any) -> Any:
            return ndckpt.load(path, mmap=False, progress=cb)

        def load_stream(cb: Any) -> Any:
            with open(path, "rb") as f:
                return ndckpt.load(f, progress=cb)

        for what, fn in {"RAW load (mmap=False)": load_mapped, "RAW load (stream)": load_stream}.items():
            t = best({"A": run(per_frame, fn), "B": run(default, fn)}, args.repeat)
            print(
                f"{what}: per 64 MiB {t['A'] * 1e3:.0f} ms, in 16 MiB pieces {t['B'] * 1e3:.0f} ms; "
                f"speed ratio {t['A'] / t['B']:.3f} (CPU {t['A cpu'] * 1e3:.0f} / {t['B cpu'] * 1e3:.0f} ms: "
                f"{t['A cpu'] / t['B cpu']:.3f})"
            )


if __name__ == "__main__":
    main()
