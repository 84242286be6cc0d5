"""Random decompositions: ``random_tilings.py DIR SEED CASES``.

Each case (the same on every rank, drawn from SEED) is a global array of
random dtype, shape and style, cut into one random box per rank (boxes may be
empty); it is saved, read back with another random cut through select
regions, and rank 0 also reads it whole in one process with ndckpt.load.
"""

from __future__ import annotations

import sys

import numpy as np
from _common import report, same
from mpi4py import MPI

import ndckpt
from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
# (Structured dtypes with padding bytes are left out: ndckpt.load assembles blocked arrays with
# numpy assignment, which does not copy padding bytes.)
DTYPES = [np.dtype(t) for t in ("<f8", ">i4", "u1", "<c8", "?", "<f2", "<M8[s]")] + [
    np.dtype([("x", "<u2"), ("y", "i1")])
]

Box = tuple[tuple[int, ...], tuple[int, ...]]


def tiling(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> list[Box]:
    """k boxes tiling ``shape`` (some may be empty), by repeated random cuts; shuffled."""
    boxes: list[Box] = [((0,) * len(shape), shape)]
    while len(boxes) < k:
        i = int(rng.integers(len(boxes)))
        start, sh = boxes.pop(i)
        ax = int(rng.integers(len(sh)))
        cut = int(rng.integers(0, sh[ax] + 1))
        a, b = list(sh), list(sh)
        a[ax], b[ax] = cut, sh[ax] - cut
        s2 = list(start)
        s2[ax] += cut
        boxes += [(start, tuple(a)), (tuple(s2), tuple(b))]
    order = rng.permutation(len(boxes))
    return [boxes[int(j)] for j in order]


def data(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    raw = rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    a = raw.view(dtype).reshape(shape) if raw.size else np.zeros(shape, dtype)
    if dtype.kind == "b":
        a = raw.astype(bool).reshape(shape)
    return a


def main(directory: str, seed: int, cases: int) -> None:
    rng = np.random.default_rng(seed)
    for case in range(cases):
        ndim = int(rng.integers(1, 4))
        shape = tuple(int(n) for n in rng.integers(0, 9, ndim))
        if case % 5 == 0:  # now and then an array of a few MiB: several frames per rank
            shape = (int(rng.integers(300, 700)), 1024)[:ndim] if ndim <= 2 else (64, 64, int(rng.integers(20, 90)))
        dtype = DTYPES[int(rng.integers(len(DTYPES)))]
        style = ["raw", "lz4"][int(rng.integers(2))]
        g = data(rng, dtype, shape)
        wbox, rbox = tiling(rng, shape, size), tiling(rng, shape, size)
        start, sh = wbox[rank]
        sel = tuple(slice(s, s + n) for s, n in zip(start, sh, strict=True))
        local = g[sel]
        if rank % 2 and local.ndim >= 2:
            local = np.asfortranarray(local)  # a block in Fortran order is stored in C order
        path = f"{directory}/case{case}.ndckpt"
        nm.save(comm, path, {"a": nm.Block(local, start, shape)}, style=style)
        rs, rsh = rbox[rank]
        rsel = tuple(slice(s, s + n) for s, n in zip(rs, rsh, strict=True))
        got = nm.load(comm, path, select={"a": rsel})["a"]
        assert same(got, g[rsel]), (case, shape, dtype, style, wbox, rbox)
        if rank == 0:
            assert same(ndckpt.load(path)["a"], g), (case, shape, dtype)
        comm.Barrier()
    report(what="random", rank=rank, cases=cases, seed=seed)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
