"""Collective failures: ``failures.py DIR`` (3 ranks).

A good checkpoint is saved first; then every scenario saves to the same path
and must raise an error of the same class on every rank, leave the good
checkpoint in place and no temporary file behind. One line per rank and
scenario is reported; the script itself also asserts all of this.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

import numpy as np
from _common import report, same
from mpi4py import MPI

import ndckpt
from ndckpt import errors
from ndckpt import mpi as nm
from ndckpt.container import plan
from ndckpt.mpi import _writing as writing  # the module whose writes and encoder are replaced

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
assert size == 3
SHAPE = (12, 5)
G = np.arange(60, dtype=np.float64).reshape(SHAPE)


def rows(lo: int, hi: int) -> nm.Block:
    return nm.Block(G[lo:hi], (lo, 0), SHAPE)


def good() -> dict[str, object]:
    return {"u": rows(4 * rank, 4 * rank + 4), "p": np.full(rank + 1, rank), "c": {"v": rows(4 * rank, 4 * rank + 4)}}


def expect_error(e: Exception, cls: type[Exception], needle: str, name: str) -> None:
    if type(e) is not cls or needle not in str(e):
        raise AssertionError(f"{name}: expected {cls.__name__} with {needle!r}, got {type(e).__name__}: {e}") from e


def scenario(name: str, expect: type[Exception], needle: str, path: str, **kw: object) -> Callable[..., None]:
    def run(arrays: dict[str, object]) -> None:
        try:
            nm.save(comm, path, arrays, **kw)  # type: ignore[arg-type]
        except Exception as e:
            expect_error(e, expect, needle, name)
            report(scenario=name, rank=rank, error=type(e).__name__, message=str(e))
        else:
            raise AssertionError(f"{name}: save succeeded")
        comm.Barrier()
        if rank == 0:
            assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)], os.listdir(
                os.path.dirname(path)
            )
            d = ndckpt.load(path)
            assert same(d["u"], G)
            assert same(d["c"]["v"], G)
            assert ndckpt.open(path).metadata == {"good": True}
        comm.Barrier()

    return run


def main(directory: str) -> None:
    path = f"{directory}/ck.ndckpt"
    nm.save(comm, path, good(), metadata={"good": True}, style={"c": "lz4"})
    inv = errors.InvalidArgumentError

    a = good()
    if rank == 1:
        a["u"] = rows(3, 7)  # overlaps rank 0's row 3 (and leaves row 7 out)
    scenario("overlap", inv, "overlap", path)(a)

    a = good()
    if rank == 2:
        a["u"] = rows(8, 11)  # row 11 is covered by nobody
    scenario("gap", inv, "cover", path)(a)

    a = good()
    if rank == 2:
        a["extra"] = np.zeros(3)
    scenario("names", inv, "names differ", path)(a)

    a = good()
    if rank == 1:
        a["u"] = G[4:8].copy()  # a private array where the others pass a Block
    scenario("kinds", inv, "names differ", path)(a)

    a = good()
    if rank == 1:
        a["u"] = nm.Block(G[4:8].astype(np.float32), (4, 0), SHAPE)
    scenario("dtype", inv, "dtype", path)(a)

    a = good()
    if rank == 1:
        a["u"] = nm.Block(G[4:8], (4, 0), (13, 5))
    scenario("global-shape", inv, "global shape", path)(a)

    a = good()
    if rank == 2:
        a["p"] = np.array([object()])
    scenario("bad-input", inv, "rank 2", path)(a)

    a = good()
    if rank == 0:
        a["u"] = nm.Block(G[0:4], (0, 0, 0), SHAPE)
    scenario("ndim", inv, "dimensions", path)(a)

    scenario("metadata", inv, "metadata differ", path, metadata={"rank": rank})(good())
    scenario("style", inv, "style differs", path, style="lz4" if rank == 1 else "raw")(good())
    scenario("subfiles", inv, "subfiles", path, subfiles=4)(good())

    # A head larger than readers accept: refused by the planner ndckpt.save uses, on every rank.
    real_max = plan.HEAD_MAX
    plan.HEAD_MAX = 64  # type: ignore[misc]
    scenario("head-too-large", inv, "byte limit readers accept: too many arrays or blocks; use subfiles", path)(good())
    plan.HEAD_MAX = real_max  # type: ignore[misc]

    # A rank raising while writing its frames (a disk-full error on rank 1).
    real_write = writing.write_at

    def full_disk(f: MPI.File, offset: int, buf: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    writing.write_at = full_disk if rank == 1 else real_write  # type: ignore[assignment]
    scenario("write-fails", errors.CheckptIOError, "rank 1: ", path)(good())
    writing.write_at = real_write  # type: ignore[assignment]

    # Rank 0 failing to write the index and trailer, after every frame was written.
    def no_trailer(f: MPI.File, offset: int, buf: object) -> None:
        if bytes(memoryview(buf)[-8:]) == b"NDCKEND\n":  # type: ignore[arg-type]
            raise OSError(errno.EIO, "I/O error (injected)")
        real_write(f, offset, buf)

    writing.write_at = no_trailer if rank == 0 else real_write  # type: ignore[assignment]
    scenario("index-fails", errors.CheckptIOError, "rank 0: ", path)(good())
    writing.write_at = real_write  # type: ignore[assignment]

    # A rank raising while compressing (LZ4 frames are encoded before anything is written).
    real_encode = writing.encode_frame

    def bad_encode(*args: object) -> object:
        raise errors.CompressionError("LZ4 failed (injected)")

    writing.encode_frame = bad_encode if rank == 2 else real_encode  # type: ignore[assignment]
    scenario("encode-fails", errors.CompressionError, "rank 2: ", path, style="lz4")(good())
    writing.encode_frame = real_encode  # type: ignore[assignment]

    # The rename (rank 0) failing: every rank learns it.
    real_replace = os.replace

    def no_rename(a: object, b: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link (injected)")

    os.replace = no_rename if rank == 0 else real_replace  # type: ignore[assignment]
    scenario("rename-fails", errors.CheckptIOError, "rename", path)(good())
    os.replace = real_replace

    # Subfiles: a rank of the second group failing leaves no subfile and no new index.
    writing.write_at = full_disk if rank == 2 else real_write  # type: ignore[assignment]
    scenario("subfile-fails", errors.CheckptIOError, "rank 2: ", path, subfiles=2)(good())
    writing.write_at = real_write  # type: ignore[assignment]

    # load: a rank asking for something that does not exist fails on every rank.
    try:
        nm.load(comm, path, select={"nope": None} if rank == 1 else None)
    except errors.InvalidArgumentError as e:
        expect_error(e, errors.InvalidArgumentError, "rank 1", "load-select")
        report(scenario="load-select", rank=rank, error=type(e).__name__, message=str(e))
    # load: private arrays of 3 writers read on 2 ranks need select.
    sub = comm.Split(0 if rank < 2 else 1, rank)
    if rank < 2:
        try:
            nm.load(sub, path)
        except errors.InvalidArgumentError as e:
            expect_error(e, errors.InvalidArgumentError, "select", "load-private")
            report(scenario="load-private", rank=rank, error=type(e).__name__, message=str(e))
        d = nm.load(sub, path, select={"u": (slice(rank * 6, rank * 6 + 6),), "ranks/2/p": None})
        assert same(d["u"], G[rank * 6 : rank * 6 + 6])
        assert same(d["ranks"]["2"]["p"], np.full(3, 2))
    sub.Free()
    report(what="failures", rank=rank)


if __name__ == "__main__":
    main(sys.argv[1])
