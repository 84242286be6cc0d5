"""A zoo of simulation-like fields for the filter benchmarks (issue 15), deterministic.

Every field is a fresh, page-aligned, C-contiguous 2-D array of ``n x n`` (default 1024),
built with numpy's ``default_rng`` from a fixed seed per field, so the same ``n`` gives the
same bytes on any machine. The coordinates are ``x = i / n``, ``y = j / n``.

=================  ==========  ==============================================================
field              dtype       what it stands for
=================  ==========  ==============================================================
smooth_f64         float64     ``300 + 0.5 sin(4 pi (x+y)) + sin(2 pi x) cos(2 pi y)``: a smooth
                               state variable, full-precision mantissas, no noise
smooth_f32         float32     the same in single precision
turbulent_f64      float64     a random field with a Kolmogorov-like spectrum (amplitude
                               ``k**(-4/3)``, random phases, inverse FFT), zero mean, unit std
turbulent_f32      float32     the same in single precision
temperature_f32    float32     ``288.15 + 12 smooth + 0.05 turbulent``: kelvin with an offset
                               (the exponent and top mantissa bits hardly change)
temperature_q_f32  float32     the temperature rounded to 0.01 K, as a logger stores it
sparse_f64         float64     zero except inside 12 disks (about 9 % of cells), where it is
                               smooth: long constant runs
spikes_f64         float64     zero but for 0.5 % of cells at random, normal values (tracer
                               particles on a grid): runs that shuffle cuts into 8 planes
counters_i64       int64       monotone counters: cumulative sum of Poisson(2) increments
counts_i32         int32       per-cell particle counts, Poisson(3)
mask_bool          bool        a land/sea-like mask: smooth field above a threshold
smooth_f16         float16     the smooth field minus 300, in half precision
wave_c128          complex128  ``A(x, y) exp(i phi(x, y))`` with smooth amplitude and phase
noise_f64          float64     standard normal noise: the control, nothing should pay
=================  ==========  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from _datasets import aligned_empty

__all__ = ["FIELDS", "SMOOTH", "field", "zoo"]

Array = np.ndarray[Any, Any]


def _aligned(a: Array) -> Array:
    out = aligned_empty(a.nbytes, a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _grid(n: int) -> tuple[Array, Array]:
    x = np.arange(n, dtype=np.float64) / n
    return x[:, None], x[None, :]


def _smooth(n: int) -> Array:
    x, y = _grid(n)
    return 300 + 0.5 * np.sin(4 * np.pi * (x + y)) + np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)


def _turbulent(n: int, seed: int = 11) -> Array:
    rng = np.random.default_rng(seed)
    kx = np.fft.fftfreq(n)[:, None] * n
    ky = np.fft.rfftfreq(n)[None, :] * n
    k = np.hypot(kx, ky)
    k[0, 0] = 1.0
    amp = k ** (-4.0 / 3.0)
    amp[0, 0] = 0.0
    spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
    f = np.fft.irfft2(spec, s=(n, n))
    return (f - f.mean()) / f.std()


def _sparse(n: int) -> Array:
    rng = np.random.default_rng(13)
    x, y = _grid(n)
    out = np.zeros((n, n))
    for cx, cy, r in zip(rng.random(12), rng.random(12), 0.04 + 0.06 * rng.random(12), strict=True):
        inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        out = np.where(inside, 1 + np.sin(10 * x) * np.cos(7 * y), out)
    return out


def _spikes(n: int) -> Array:
    rng = np.random.default_rng(18)
    out = np.zeros(n * n)
    at = rng.choice(n * n, n * n // 200, replace=False)
    out[at] = rng.standard_normal(at.size)
    return out.reshape(n, n)


def _fields() -> dict[str, Callable[[int], Array]]:
    return {
        "smooth_f64": lambda n: _smooth(n),
        "smooth_f32": lambda n: _smooth(n).astype(np.float32),
        "turbulent_f64": lambda n: _turbulent(n),
        "turbulent_f32": lambda n: _turbulent(n).astype(np.float32),
        "temperature_f32": lambda n: (288.15 + 12 * (_smooth(n) - 300) + 0.05 * _turbulent(n, 12)).astype(np.float32),
        "temperature_q_f32": lambda n: np.round(288.15 + 12 * (_smooth(n) - 300) + 0.05 * _turbulent(n, 12), 2).astype(
            np.float32
        ),
        "sparse_f64": _sparse,
        "spikes_f64": _spikes,
        "counters_i64": lambda n: np.cumsum(np.random.default_rng(14).poisson(2, n * n)).astype(np.int64).reshape(n, n),
        "counts_i32": lambda n: np.random.default_rng(15).poisson(3, (n, n)).astype(np.int32),
        "mask_bool": lambda n: (_smooth(n) - 300 + 0.3 * _turbulent(n, 16)) > 0.2,
        "smooth_f16": lambda n: (_smooth(n) - 300).astype(np.float16),
        "wave_c128": lambda n: (
            (1 + 0.5 * (_smooth(n) - 300)) * np.exp(1j * 6 * np.pi * _grid(n)[0] * (1 + _grid(n)[1]))
        ),
        "noise_f64": lambda n: np.random.default_rng(17).standard_normal((n, n)),
    }


FIELDS: tuple[str, ...] = tuple(_fields())
#: The smooth fields, on which "auto" must also reach the better of blosc2's shuffle and bytedelta.
SMOOTH: tuple[str, ...] = ("smooth_f64", "smooth_f32", "temperature_f32", "temperature_q_f32", "smooth_f16")


def field(name: str, n: int = 1024) -> Array:
    """The zoo field ``name`` at ``n x n``, page-aligned. KeyError for an unknown name."""
    return _aligned(np.ascontiguousarray(_fields()[name](n)))


def zoo(n: int = 1024, names: tuple[str, ...] = FIELDS) -> dict[str, Array]:
    """Every field (or those named) at ``n x n``."""
    return {name: field(name, n) for name in names}
