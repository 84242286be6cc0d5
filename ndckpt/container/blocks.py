"""Global arrays stored as blocks (docs/format.md §2.2): the check that blocks tile an array.

Shared by the head parser (:mod:`.head`, which re-exports it) and by writers that describe
blocks themselves (:mod:`ndckpt.mpi`). Bounded in time and memory by the limits of §4.1.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import FormatError
from .spec import BLOCK_GRID_PER_BLOCK, BLOCKS_ANY_MAX

__all__ = ["Block", "check_blocks"]

Block = tuple[tuple[int, ...], tuple[int, ...]]  # (start, shape) of one block of a global array


def check_blocks(
    shape: tuple[int, ...], blocks: tuple[Block, ...], what: str, err: type[Exception] = FormatError
) -> None:
    """Blocks must lie inside ``shape``, be non-empty, not overlap, and cover it exactly."""
    nd, n = len(shape), len(blocks)
    for st, sh in blocks:
        if len(st) != nd or len(sh) != nd:
            raise err(f"{what}: block start {list(st)} / shape {list(sh)} do not have {nd} dimensions")
    if n == 0:
        if math.prod(shape) != 0:
            raise err(f"{what}: no blocks for an array of shape {list(shape)}")
        return
    start = np.array([b[0] for b in blocks], dtype=np.int64).reshape(n, nd)
    size = np.array([b[1] for b in blocks], dtype=np.int64).reshape(n, nd)
    stop = start + size
    lim = np.array(shape, dtype=np.int64).reshape(1, nd)
    bad = np.nonzero((size <= 0).any(axis=1) | (start < 0).any(axis=1) | (stop > lim).any(axis=1))[0]
    if bad.size:
        b = int(bad[0])
        raise err(
            f"{what}: block {b} (start {list(blocks[b][0])}, shape {list(blocks[b][1])}) is empty or "
            f"outside the array of shape {list(shape)}"
        )
    covered = sum(math.prod(sh) for _, sh in blocks)
    if covered != math.prod(shape):
        raise err(f"{what}: blocks cover {covered} elements, the array of shape {list(shape)} has {math.prod(shape)}")
    # In bounds, non-empty, and as many elements as the array: they tile it exactly iff no two
    # overlap, iff every cell of the grid of all block boundaries is covered exactly once.
    if n <= BLOCKS_ANY_MAX:
        for i0 in range(0, n, 64):
            lo = np.maximum(start[i0 : i0 + 64, None, :], start[None, :, :])
            hi = np.minimum(stop[i0 : i0 + 64, None, :], stop[None, :, :])
            hit = (hi > lo).all(axis=2)
            for k in range(hit.shape[0]):
                hit[k, i0 + k] = False
            if hit.any():
                i, j = (int(v) for v in np.argwhere(hit)[0])
                raise err(f"{what}: blocks {i0 + i} and {j} overlap")
        return
    cuts = [np.unique(np.concatenate([start[:, d], stop[:, d]])) for d in range(nd)]
    cells = math.prod(len(c) - 1 for c in cuts)
    if cells > BLOCK_GRID_PER_BLOCK * n:
        raise err(
            f"{what}: {n} blocks whose boundaries make a grid of {cells} cells; more than {BLOCKS_ANY_MAX} blocks "
            f"must make at most {BLOCK_GRID_PER_BLOCK} cells per block (format §4.1)"
        )
    gstart = np.stack([np.searchsorted(cuts[d], start[:, d]) for d in range(nd)], axis=1)
    gstop = np.stack([np.searchsorted(cuts[d], stop[:, d]) for d in range(nd)], axis=1)
    taken = np.zeros([len(c) - 1 for c in cuts], dtype=bool)
    # Each block marks its cells; a block meeting a marked cell overlaps an earlier one. Marking
    # stops there, so the work is at most twice the number of cells.
    for b in range(n):
        view = taken[tuple(slice(a, z) for a, z in zip(gstart[b].tolist(), gstop[b].tolist(), strict=True))]
        if view.any():
            cell = [int(v[0]) for v in np.nonzero(view)]
            at = gstart[b] + np.array(cell, dtype=np.int64)
            other = int(np.nonzero(((gstart[:b] <= at) & (at < gstop[:b])).all(axis=1))[0][0])
            raise err(f"{what}: blocks {other} and {b} overlap")
        view[...] = True
