"""A small but real simulation whose state is worth checkpointing: 2-D Gray-Scott.

Gray-Scott reaction-diffusion on an ``n x n`` periodic grid, integrated with
explicit Euler and a 5-point Laplacian (grid spacing 1)::

    du/dt = Du * lap(u) - u*v*v + F * (1 - u)
    dv/dt = Dv * lap(v) + u*v*v - (F + k) * v

with the standard parameters ``F=0.037, k=0.06, Du=0.16, Dv=0.08, dt=1``
(stable: ``D * dt <= 1/4``). Every step also adds uniform noise of amplitude
``noise`` to ``v`` (then clamps ``v >= 0``), drawn from a PCG64
:class:`numpy.random.Generator`, so the generator's state is part of the
simulation's state.

The state mixes dtypes and sizes the way real checkpoints do:

``fields/u``, ``fields/v``
    float64 ``(n, n)``: the concentrations.
``stats/activation_count``
    int64 ``(n, n)``: per cell, how many steps ended with ``v > threshold``.
``stats/mask``
    uint8 ``(n, n)``: 1 where ``v > threshold`` after the last step.
``stats/diagnostics``
    float32 ``(capacity, 4)``: one row per step (mean u, mean v, active
    fraction, max v), appended into a preallocated array that doubles when
    full; rows at and past ``step`` are zero.
``rng/*``
    The PCG64 ``bit_generator.state`` as arrays: ``bit_generator`` (ASCII
    bytes, uint8), ``state`` and ``inc`` (128-bit integers as two uint64
    words, low word first), ``has_uint32`` (int64) and ``uinteger`` (uint64).
``params/*``
    float64 0-d arrays: ``F``, ``k``, ``Du``, ``Dv``, ``dt``, ``threshold``,
    ``noise``.
``step``, ``time``
    int64 and float64 0-d arrays.

The run is deterministic: ``GrayScott(n, seed)`` stepped 100 times has the
same :meth:`GrayScott.digest` as one stepped 40 times, saved with
:meth:`GrayScott.state`, rebuilt with :meth:`GrayScott.from_state` and stepped
60 more. The update uses only element-wise numpy operations (which round the
same way whatever the memory layout) and every array is page-aligned, so the
reductions in the diagnostics see the same layout in a resumed run too.

Examples
--------
>>> sim = GrayScott(n=32, seed=1)
>>> sim.step(40)
>>> resumed = GrayScott.from_state(sim.state(copy=True))
>>> sim.step(60)
>>> resumed.step(60)
>>> resumed.digest() == sim.digest()
True
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, TypeAlias, Union

import numpy as np
from numpy.typing import NDArray

__all__ = ["GrayScott", "StateTree"]

#: A nested dict of arrays, as :meth:`GrayScott.state` returns it.
StateTree: TypeAlias = dict[str, Union["NDArray[Any]", "StateTree"]]

_PAGE: Final = 4096
_DIAG_COLUMNS: Final = 4
_BIT_GENERATOR: Final = "PCG64"
_PARAMS: Final = ("F", "k", "Du", "Dv", "dt", "threshold", "noise")
_U64: Final = (1 << 64) - 1


def _aligned(shape: tuple[int, ...], dtype: type[np.generic]) -> NDArray[Any]:
    """A zeroed, page-aligned C-contiguous array (same layout in a fresh and a resumed run)."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.zeros(nbytes + _PAGE, dtype=np.uint8)
    start = (-int(raw.ctypes.data)) % _PAGE
    return raw[start : start + nbytes].view(dt).reshape(shape)


def _split128(x: int) -> NDArray[np.uint64]:
    return np.array([x & _U64, (x >> 64) & _U64], dtype=np.uint64)


def _join128(a: NDArray[Any]) -> int:
    return int(a[0]) | int(a[1]) << 64


def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    v = a.view()
    v.flags.writeable = False
    return v


def _leaf(
    tree: StateTree, path: str, dtype: type[np.generic], shape: tuple[int, ...] | None
) -> NDArray[Any]:
    """The array at ``path`` ("a/b"), checked for dtype and (if given) shape."""
    node: NDArray[Any] | StateTree = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"GrayScott.from_state: missing entry {path!r}")
        node = node[part]
    if isinstance(node, dict):
        raise ValueError(f"GrayScott.from_state: {path!r} is a group, expected an array")
    arr = np.asarray(node)
    if arr.dtype != np.dtype(dtype):
        raise ValueError(
            f"GrayScott.from_state: {path!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}"
        )
    if shape is not None and arr.shape != shape:
        raise ValueError(f"GrayScott.from_state: {path!r} has shape {arr.shape}, expected {shape}")
    return arr


class GrayScott:
    """Gray-Scott reaction-diffusion on a periodic ``n x n`` grid; see the module docstring.

    Parameters
    ----------
    n
        Grid size (at least 3).
    seed
        Seed of the PCG64 generator that places the initial spots and draws
        the per-step noise.
    F, k, Du, Dv, dt
        Feed rate, kill rate, diffusion coefficients and time step.
    threshold
        A cell is *active* when ``v > threshold``.
    noise
        Amplitude of the uniform noise added to ``v`` every step.
    history
        Initial capacity (rows) of the diagnostics array.

    Warnings
    --------
    Not thread-safe. :meth:`state` returns views of the live arrays unless
    ``copy=True``; they change on the next :meth:`step`.
    """

    def __init__(
        self,
        n: int = 256,
        seed: int = 0,
        *,
        F: float = 0.037,
        k: float = 0.06,
        Du: float = 0.16,
        Dv: float = 0.08,
        dt: float = 1.0,
        threshold: float = 0.25,
        noise: float = 0.002,
        history: int = 1024,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 3:
            raise ValueError(f"GrayScott: n must be an int >= 3, got {n!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"GrayScott: history must be an int >= 1, got {history!r}")
        self._alloc(n, history)
        self.params: dict[str, float] = {
            "F": float(F), "k": float(k), "Du": float(Du), "Dv": float(Dv), "dt": float(dt),
            "threshold": float(threshold), "noise": float(noise),
        }  # fmt: skip
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._step = 0
        self._time = 0.0
        u, v = self._u, self._v
        u.fill(1.0)
        # A few square spots of (u, v) = (0.5, 0.25) at random places, plus a little noise.
        r = max(1, n // 16)
        for _ in range(max(1, n // 32)):
            cy, cx = (int(c) for c in self._rng.integers(0, n, size=2))
            rows = np.arange(cy - r, cy + r) % n
            cols = np.arange(cx - r, cx + r) % n
            u[np.ix_(rows, cols)] = 0.5
            v[np.ix_(rows, cols)] = 0.25
        self._rng.random(out=self._w)
        self._w *= 0.01
        v += self._w
        np.greater(v, self.params["threshold"], out=self._active)

    def _alloc(self, n: int, history: int) -> None:
        self.n = n
        self._u = _aligned((n, n), np.float64)
        self._v = _aligned((n, n), np.float64)
        self._lu = _aligned((n, n), np.float64)
        self._lv = _aligned((n, n), np.float64)
        self._t = _aligned((n, n), np.float64)
        self._w = _aligned((n, n), np.float64)
        self._count = _aligned((n, n), np.int64)
        self._mask = _aligned((n, n), np.uint8)
        self._active = self._mask.view(np.bool_)  # writes 0/1 bytes into the uint8 mask
        self._diag = _aligned((history, _DIAG_COLUMNS), np.float32)

    @property
    def step_count(self) -> int:
        """Steps taken since the initial condition."""
        return self._step

    @property
    def time(self) -> float:
        """Simulated time (the sum of ``dt`` over all steps)."""
        return self._time

    @property
    def u(self) -> NDArray[np.float64]:
        """A read-only view of the ``u`` field."""
        return _readonly(self._u)

    @property
    def v(self) -> NDArray[np.float64]:
        """A read-only view of the ``v`` field."""
        return _readonly(self._v)

    @staticmethod
    def _laplacian(a: NDArray[np.float64], out: NDArray[np.float64]) -> None:
        """5-point periodic Laplacian of ``a`` into ``out``, without temporaries."""
        np.multiply(a, -4.0, out=out)
        out[1:] += a[:-1]
        out[0] += a[-1]
        out[:-1] += a[1:]
        out[-1] += a[0]
        out[:, 1:] += a[:, :-1]
        out[:, 0] += a[:, -1]
        out[:, :-1] += a[:, 1:]
        out[:, -1] += a[:, 0]

    def _one_step(self) -> None:
        p = self.params
        u, v, lu, lv, t, w = self._u, self._v, self._lu, self._lv, self._t, self._w
        self._laplacian(u, lu)
        self._laplacian(v, lv)
        np.multiply(v, v, out=t)
        t *= u  # t = u v^2
        lu *= p["Du"]
        lu -= t
        np.multiply(u, p["F"], out=w)
        lu -= w
        lu += p["F"]  # lu = du/dt = Du lap(u) - u v^2 + F (1 - u)
        lv *= p["Dv"]
        lv += t
        np.multiply(v, p["F"] + p["k"], out=w)
        lv -= w  # lv = dv/dt = Dv lap(v) + u v^2 - (F + k) v
        if p["dt"] != 1.0:
            lu *= p["dt"]
            lv *= p["dt"]
        u += lu
        v += lv
        self._rng.random(out=w)
        w -= 0.5
        w *= p["noise"]
        v += w
        np.maximum(v, 0.0, out=v)
        np.greater(v, p["threshold"], out=self._active)
        self._count += self._active
        self._record()
        self._step += 1
        self._time += p["dt"]

    def _record(self) -> None:
        row = self._step
        if row == self._diag.shape[0]:
            grown = _aligned((2 * row, _DIAG_COLUMNS), np.float32)
            grown[:row] = self._diag
            self._diag = grown
        n2 = self.n * self.n
        self._diag[row] = (
            self._u.sum() / n2,
            self._v.sum() / n2,
            np.count_nonzero(self._active) / n2,
            self._v.max(),
        )

    def step(self, k: int = 1) -> None:
        """Advance ``k`` (>= 0) steps."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"GrayScott.step: k must be an int >= 0, got {k!r}")
        for _ in range(k):
            self._one_step()

    def state(self, *, copy: bool = False) -> StateTree:
        """The whole state as a nested dict of numpy arrays (layout in the module docstring).

        With ``copy=False`` the large arrays are read-only views of the live
        buffers: zero-copy, but they change on the next :meth:`step`, so save
        them first. With ``copy=True`` every array is an independent copy.
        The small arrays (rng, params, step, time) are always new.
        """

        def live(a: NDArray[Any]) -> NDArray[Any]:
            return a.copy() if copy else _readonly(a)

        st = self._rng.bit_generator.state
        if st["bit_generator"] != _BIT_GENERATOR:
            raise ValueError(f"GrayScott.state: unexpected bit generator {st['bit_generator']!r}")
        return {
            "fields": {"u": live(self._u), "v": live(self._v)},
            "stats": {
                "activation_count": live(self._count),
                "mask": live(self._mask),
                "diagnostics": live(self._diag),
            },
            "rng": {
                "bit_generator": np.frombuffer(
                    _BIT_GENERATOR.encode("ascii"), dtype=np.uint8
                ).copy(),
                "state": _split128(st["state"]["state"]),
                "inc": _split128(st["state"]["inc"]),
                "has_uint32": np.array(st["has_uint32"], dtype=np.int64),
                "uinteger": np.array(st["uinteger"], dtype=np.uint64),
            },
            "params": {name: np.array(self.params[name], dtype=np.float64) for name in _PARAMS},
            "step": np.array(self._step, dtype=np.int64),
            "time": np.array(self._time, dtype=np.float64),
        }

    @classmethod
    def from_state(cls, d: StateTree) -> GrayScott:
        """Rebuild a simulation from :meth:`state` output; it continues bit-identically.

        The arrays are copied (they may be read-only views or memory maps).
        Raises ValueError naming the entry if one is missing or has the wrong
        dtype or shape.
        """
        u = _leaf(d, "fields/u", np.float64, None)
        if u.ndim != 2 or u.shape[0] != u.shape[1] or u.shape[0] < 3:
            raise ValueError(
                f"GrayScott.from_state: 'fields/u' must be n x n, n >= 3, got {u.shape}"
            )
        n = u.shape[0]
        diag = _leaf(d, "stats/diagnostics", np.float32, None)
        if diag.ndim != 2 or diag.shape[1] != _DIAG_COLUMNS or diag.shape[0] < 1:
            raise ValueError(
                f"GrayScott.from_state: 'stats/diagnostics' must be (rows, {_DIAG_COLUMNS}), "
                f"got {diag.shape}"
            )
        step = int(_leaf(d, "step", np.int64, ()))
        if not 0 <= step <= diag.shape[0]:
            raise ValueError(
                f"GrayScott.from_state: step {step} outside [0, {diag.shape[0]}] (diagnostics rows)"
            )
        name = bytes(_leaf(d, "rng/bit_generator", np.uint8, None)).decode("ascii", "replace")
        if name != _BIT_GENERATOR:
            raise ValueError(
                f"GrayScott.from_state: 'rng/bit_generator' is {name!r}, "
                f"expected {_BIT_GENERATOR!r}"
            )

        sim = cls.__new__(cls)
        sim._alloc(n, diag.shape[0])
        sim._u[...] = u
        sim._v[...] = _leaf(d, "fields/v", np.float64, (n, n))
        sim._count[...] = _leaf(d, "stats/activation_count", np.int64, (n, n))
        sim._mask[...] = _leaf(d, "stats/mask", np.uint8, (n, n))
        if np.any(sim._mask > 1):
            raise ValueError("GrayScott.from_state: 'stats/mask' holds values other than 0 and 1")
        sim._diag[...] = diag
        sim.params = {name: float(_leaf(d, f"params/{name}", np.float64, ())) for name in _PARAMS}
        sim._step = step
        sim._time = float(_leaf(d, "time", np.float64, ()))
        sim._rng = np.random.Generator(np.random.PCG64())
        sim._rng.bit_generator.state = {
            "bit_generator": _BIT_GENERATOR,
            "state": {
                "state": _join128(_leaf(d, "rng/state", np.uint64, (2,))),
                "inc": _join128(_leaf(d, "rng/inc", np.uint64, (2,))),
            },
            "has_uint32": int(_leaf(d, "rng/has_uint32", np.int64, ())),
            "uinteger": int(_leaf(d, "rng/uinteger", np.uint64, ())),
        }
        return sim

    def digest(self) -> str:
        """A BLAKE2b hex digest of every state array's path, dtype, shape and bytes."""
        h = hashlib.blake2b(digest_size=32)

        def walk(prefix: str, node: StateTree) -> None:
            for key in sorted(node):
                val = node[key]
                path = f"{prefix}/{key}"
                if isinstance(val, dict):
                    walk(path, val)
                else:
                    h.update(f"{path}|{val.dtype.str}|{val.shape}|".encode())
                    h.update(np.ascontiguousarray(val).data)

        walk("", self.state())
        return h.hexdigest()
