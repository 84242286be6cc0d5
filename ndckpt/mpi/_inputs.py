"""What each rank passes to ``ndckpt.mpi.save``: Blocks, the rank's description, and the checks
that every rank's description agrees with the others' (the same outcome on every rank).

Nothing here calls MPI: descriptions are exchanged by :mod:`ndckpt.mpi._exchange`.
"""

from __future__ import annotations

import errno
import json
import math
import operator
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _files
from ..container.head import ArraySpec, check_blocks
from ..container.plan import (
    StoredBytes,
    StridedBytes,
    as_array,
    bytes_of,
    check_metadata,
    flatten_tree,
    resolve_style_filters,
    stored_bytes,
)
from ..errors import CheckptIOError, InvalidArgumentError

__all__ = ["BLOCKS", "PRIVATE", "Block", "Item", "RankInfo", "check_agreement", "describe", "global_arrays"]

#: Top-level group of rank-private arrays: rank r's array "x" is stored at "ranks/<r>/x".
PRIVATE = "ranks"
#: Group of the blocks in a subfile: rank r's block of global array "u" is "blocks/<r>/u".
BLOCKS = "blocks"


def _int_tuple(v: Any, what: str) -> tuple[int, ...]:
    try:
        return tuple(operator.index(x) for x in v)
    except TypeError:
        raise InvalidArgumentError(f"Block {what}: expected a tuple of ints, got {v!r}") from None


@dataclass(frozen=True, eq=False)
class Block:
    """This rank's block of a global array: ``local`` is ``global[start[0]:start[0]+local.shape[0], ...]``.

    Parameters
    ----------
    local
        A numpy array (any memory layout; stored in C order).
    start
        Index of ``local[0, 0, ...]`` in the global array (one int per dimension).
    global_shape
        Shape of the global array (the same on every rank).

    Notes
    -----
    ``start`` and ``global_shape`` are converted to tuples of ints here
    (InvalidArgumentError if they are not sequences of ints); everything
    else (dimensions, bounds, tiling, dtypes) is checked by :func:`ndckpt.mpi.save`,
    collectively, so that every rank sees the error.
    """

    local: np.ndarray[Any, Any]
    start: tuple[int, ...]
    global_shape: tuple[int, ...]

    def __init__(self, local: np.ndarray[Any, Any], start: Any, global_shape: Any) -> None:
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "start", _int_tuple(start, "start"))
        object.__setattr__(self, "global_shape", _int_tuple(global_shape, "global_shape"))

    @property
    def region(self) -> tuple[slice, ...]:
        """The block's place in the global array, as slices (a ``select`` region of :func:`ndckpt.mpi.load`)."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.local.shape, strict=False))


@dataclass(frozen=True)
class Item:
    """One array of one rank: a block of a global array (start set) or a private array."""

    path: tuple[str, ...]
    dtype: np.dtype[Any]
    shape: tuple[int, ...]  # what this rank stores
    order: str  # order of its stored bytes ("C" for blocks)
    style: int
    start: tuple[int, ...] | None = None
    global_shape: tuple[int, ...] | None = None
    filter: str | None = None  # None, "shuffle", "delta" or "auto" (LZ4 only; format §2.8)

    @property
    def empty(self) -> bool:
        """Whether this rank stores no element of it."""
        return math.prod(self.shape) == 0


@dataclass(frozen=True)
class RankInfo:
    """What one rank passed to save, as every rank receives it: its items and its options."""

    items: tuple[Item, ...]
    groups: tuple[tuple[str, ...], ...]
    metadata: str  # canonical JSON, compared across ranks
    target: str
    subfiles: int
    token: str
    pid: int
    host: str  # _files.host_tag() of this rank: temporary names carry rank 0's pid and host


def describe(
    rank: int, target: Any, arrays: Any, style: Any, metadata: Any, subfiles: Any
) -> tuple[RankInfo, list[StoredBytes]]:
    """Validate this rank's input (local: no exchange); return its description and the stored
    bytes of each item, in the order of ``items`` (views of the caller's arrays, or StridedBytes).

    Raises InvalidArgumentError for bad input, CheckptIOError (rank 0) when the target's
    directory does not exist; only rank 0 checks the target itself.
    """
    if not isinstance(target, str | os.PathLike):
        raise InvalidArgumentError(f"target: expected a path, got {type(target).__name__}")
    if subfiles is not None and (isinstance(subfiles, bool) or not isinstance(subfiles, int) or subfiles < 1):
        raise InvalidArgumentError(f"subfiles must be None or a positive int, got {subfiles!r}")
    flat, groups = flatten_tree(arrays)
    for path in [p for p, _ in flat] + groups:
        if path[0] == PRIVATE:
            raise InvalidArgumentError(
                f"name {'/'.join(path)!r}: the top-level name {PRIVATE!r} is reserved for rank-private arrays"
            )
    styles, kinds = resolve_style_filters(style, ["/".join(p) for p, _ in flat])
    items: list[Item] = []
    array_bytes: list[StoredBytes] = []
    for (path, v), st, kind in zip(flat, styles, kinds, strict=True):
        name = "/".join(path)
        if isinstance(v, Block):
            a = v.local
            if not isinstance(a, np.ndarray):
                raise InvalidArgumentError(f"Block {name!r}: local must be a numpy array, got {type(a).__name__}")
            as_array(path, a)  # dtype checks
            if len(v.start) != a.ndim or len(v.global_shape) != a.ndim:
                raise InvalidArgumentError(
                    f"Block {name!r}: local has {a.ndim} dimensions, start {list(v.start)} and global_shape "
                    f"{list(v.global_shape)} must have as many"
                )
            shape = tuple(int(n) for n in a.shape)
            bad = [d for d in range(a.ndim) if v.start[d] < 0 or v.start[d] + shape[d] > v.global_shape[d]]
            if bad and a.size:
                raise InvalidArgumentError(
                    f"Block {name!r}: local of shape {list(shape)} at start {list(v.start)} lies outside the "
                    f"global shape {list(v.global_shape)} (dimension {bad[0]})"
                )
            items.append(Item(path, a.dtype, shape, "C", int(st), v.start, v.global_shape, kind))
            array_bytes.append(bytes_of(a, "C") if a.flags.c_contiguous else StridedBytes(a))
        elif not isinstance(v, np.ndarray):
            raise InvalidArgumentError(
                f"{name!r}: ndckpt.mpi.save stores numpy arrays and Blocks only, got {type(v).__name__}; pass a "
                "Python value or numpy scalar as metadata= (JSON), or as a 0-d array (np.asarray(x))"
            )
        else:
            a = as_array(path, v)
            src, order = stored_bytes(a)
            items.append(Item(path, a.dtype, tuple(int(n) for n in a.shape), order, int(st), filter=kind))
            array_bytes.append(src)
    meta = json.dumps(check_metadata(metadata), sort_keys=True, separators=(",", ":"))
    # As ndckpt.save: a symlink at the target is written through (every rank resolves it; the
    # agreement check then compares the files the ranks would replace), a directory is refused.
    final, st_ = _files.resolve_target(target)
    info = RankInfo(
        tuple(items),
        tuple(sorted(groups)),
        meta,
        str(final),
        subfiles or 0,
        secrets.token_hex(4),
        os.getpid(),
        _files.host_tag(),
    )
    if rank == 0:
        p = Path(info.target)
        if st_ is not None and not stat.S_ISREG(st_.st_mode):
            raise InvalidArgumentError(f"target {info.target!r} exists and is not a regular file")
        if not p.parent.is_dir():
            raise CheckptIOError(errno.ENOENT, f"directory of target {info.target!r} does not exist")
    return info, array_bytes


def check_agreement(infos: list[RankInfo]) -> None:
    """Check that the ranks agree: names, kinds, styles, metadata, target, dtypes, global shapes
    and tiling. Deterministic, so it raises the same InvalidArgumentError on every rank."""
    first = infos[0]
    for what, attr in (
        ("target", "target"),
        ("metadata", "metadata"),
        ("subfiles", "subfiles"),
        ("empty groups", "groups"),
    ):
        v0 = getattr(first, attr)
        for r, info in enumerate(infos):
            if getattr(info, attr) != v0:
                raise InvalidArgumentError(
                    f"{what} differ between rank 0 ({v0!r}) and rank {r} ({getattr(info, attr)!r})"
                )
    if first.subfiles > len(infos):
        raise InvalidArgumentError(f"subfiles={first.subfiles} exceeds the {len(infos)} ranks")
    kinds0 = {i.path: i.start is not None for i in first.items}
    for r, info in enumerate(infos[1:], 1):
        kinds = {i.path: i.start is not None for i in info.items}
        if kinds != kinds0:
            missing = sorted("/".join(p) for p in set(kinds0) - set(kinds))
            extra = sorted("/".join(p) for p in set(kinds) - set(kinds0))
            changed = sorted("/".join(p) for p in set(kinds) & set(kinds0) if kinds[p] != kinds0[p])
            parts = []
            if missing:
                parts.append(f"rank {r} lacks {missing}")
            if extra:
                parts.append(f"rank {r} has {extra}, which rank 0 lacks")
            if changed:
                parts.append(f"{changed} are Blocks on one of ranks 0 and {r} and private arrays on the other")
            raise InvalidArgumentError("array names differ across ranks: " + "; ".join(parts))
    style0 = {i.path: (i.style, i.filter) for i in first.items}
    for r, info in enumerate(infos[1:], 1):
        for i in info.items:
            if (i.style, i.filter) != style0[i.path]:
                raise InvalidArgumentError(f"array {'/'.join(i.path)!r}: style differs between rank 0 and rank {r}")
    global_arrays(infos)  # validates dtypes, global shapes and tiling


def global_arrays(infos: list[RankInfo]) -> list[tuple[ArraySpec, list[int]]]:
    """The global arrays (blocks in rank order, empty blocks left out), validated, each with the
    ranks whose blocks it lists."""
    out = []
    by_path = [{i.path: i for i in info.items} for info in infos]
    for it0 in infos[0].items:
        if it0.start is None:
            continue
        name = "/".join(it0.path)
        blocks, owners = [], []
        for r, items in enumerate(by_path):
            it = items[it0.path]
            if it.dtype != it0.dtype or it.global_shape != it0.global_shape:
                raise InvalidArgumentError(
                    f"global array {name!r}: rank 0 gives dtype {it0.dtype} and global shape "
                    f"{list(it0.global_shape or ())}, rank {r} gives {it.dtype} and {list(it.global_shape or ())}"
                )
            if not it.empty:
                assert it.start is not None
                blocks.append((it.start, it.shape))
                owners.append(r)
        assert it0.global_shape is not None
        try:
            check_blocks(it0.global_shape, tuple(blocks), f"global array {name!r}", err=InvalidArgumentError)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{e} (the blocks in order are those of ranks {owners})") from None
        out.append((ArraySpec(it0.path, it0.dtype, it0.global_shape, "C", tuple(blocks)), owners))
    return out
