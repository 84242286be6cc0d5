"""Demo-model benchmark: GrayScott steps per second against a plain-numpy reference step.

Run from the repository root::

    .venv/bin/python benchmarks/bench_sim.py [--n 256] [--steps 40] [--repeat 5]

The demo (``ndckpt demo``) needs its model to step fast enough that checkpoints, not
arithmetic, dominate its run. The baseline is the textbook update of the same
equations with ``np.roll`` Laplacians and fresh temporaries (what a user would write
first), timed in the same process, alternating with the model, so machine noise hits
both alike. Printed: steps/s best-of-R and median for both, and the ratio
``baseline time / model time`` (above 1 means the model is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ndckpt.demo import GrayScott


def _roll_laplacian(a: np.ndarray) -> np.ndarray:
    return np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1) - 4 * a


def _reference_steps(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, k: int) -> None:
    F, kk, Du, Dv, dt, noise = 0.037, 0.06, 0.16, 0.08, 1.0, 0.02
    for _ in range(k):
        uvv = u * v * v
        du = Du * _roll_laplacian(u) - uvv + F * (1 - u)
        dv = Dv * _roll_laplacian(v) + uvv - (F + kk) * v
        u += dt * du
        v[...] = np.maximum(v + dt * dv + (rng.random(v.shape) - 0.5) * noise, 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="grid side (default 256)")
    ap.add_argument("--steps", type=int, default=40, help="steps per timed round (default 40)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    a = ap.parse_args(argv)
    sim = GrayScott(n=a.n, seed=0)
    sim.step(2)  # warm up
    rng = np.random.default_rng(0)
    u, v = sim.u.copy(), sim.v.copy()
    _reference_steps(u, v, rng, 2)
    model, ref = [], []
    for r in range(a.repeat):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            if which == 0:
                sim.step(a.steps)
            else:
                _reference_steps(u, v, rng, a.steps)
            (model if which == 0 else ref).append(time.perf_counter() - t0)
    ratios = [b / m for m, b in zip(model, ref, strict=True)]
    print(f"GrayScott n={a.n}, {a.steps} steps per round, {a.repeat} rounds")
    print(f"  model     best {a.steps / min(model):8.0f} steps/s  median {a.steps / statistics.median(model):8.0f}")
    print(f"  reference best {a.steps / min(ref):8.0f} steps/s  median {a.steps / statistics.median(ref):8.0f}")
    print(f"  ratio reference/model: best {min(ref) / min(model):.2f}  median {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
