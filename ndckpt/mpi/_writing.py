"""Writing ``ndckpt.mpi.save``'s files: one shared file, or subfiles and their index.

Every rank writes its own frames of the file with independent MPI-IO at offsets every rank
computes alike; the bytes and where they go come from :mod:`ndckpt.container.write`, the
writer of ``ndckpt.save``. Commit is by rename, by rank 0, only once every rank has reported
success.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpi4py import MPI

from .. import _files, _lz4
from .._memory import buffer_view
from .._subfiles import INDEX_KEY, listed_subfiles, removable_subfile, subfile_name
from ..api import open as open_checkpoint
from ..api import save as save_single
from ..container.dtype import encode_dtype
from ..container.plan import StoredBytes
from ..container.write import (
    EncodedFrame,
    encode_frame,
    frame_input,
    index_table,
    place,
    write_head,
    write_record,
    write_tail,
)
from ..errors import CheckptError, CheckptIOError, InvalidArgumentError
from ..format import FrameStyle
from ..parallel import ScratchPool, run_all
from ._exchange import allgather, bcast, errs_of, raise_agreed, root_call, to_err
from ._inputs import RankInfo, global_arrays
from ._planning import FilePlan, plan_file

__all__ = ["save_shared", "save_subfiled", "write_at", "write_file"]


def write_at(f: MPI.File, offset: int, buf: memoryview) -> None:
    """Write all of ``buf`` at ``offset`` (independent MPI-IO); CheckptIOError on a short write,
    MPI.Exception or OSError as MPI raises them."""
    n = buf.nbytes
    if n == 0:
        return
    st = MPI.Status()
    f.Write_at(offset, buf, st)
    got = st.Get_count(MPI.BYTE)
    if got != n:
        raise CheckptIOError(errno.EIO, f"short write at offset {offset}: {got} of {n} bytes written")


def write_file(
    comm: MPI.Intracomm,
    fp: FilePlan,
    path: Path,
    tmp: Path,
    threads: int,
    timeout: float,
    what: str,
    world: list[int] | None = None,
) -> None:
    """Write ``fp`` to ``tmp`` and commit it as ``path``, collectively over ``comm`` (the writers of ``fp``).

    The bytes and their places are :mod:`ndckpt.container.write`'s, as for ``ndckpt.save``:
    LZ4 frames are encoded first, their stored sizes exchanged, and :func:`~ndckpt.container.write.place`
    gives every frame's offsets; each rank then writes its frames through
    :func:`write_at` (pads are holes of the new file). ``world`` numbers the ranks of
    ``comm`` in error messages (default: their ranks in ``comm``).

    Every step that can fail on one rank is followed by an exchange, so all
    ranks take the same branch; on any failure every rank raises the same
    agreed error and rank 0 removes ``tmp``; ``path`` is then untouched.
    The staging buffers of encoded frames are given back on every path.
    """
    me = comm.Get_rank()
    frames = fp.head.frames
    encoded: dict[int, EncodedFrame] = {}
    err: BaseException | None = None
    try:  # 1. LZ4 frames are compressed first: their stored sizes decide every later offset
        lz4_local = [k for k, f in enumerate(fp.local) if f.style == FrameStyle.LZ4]

        def enc(k: int) -> None:
            encoded[k] = encode_frame(fp.local[k], fp.local_ids[k], fp.array_bytes)

        run_all(enc, lz4_local, threads)
    except Exception as e:
        err = e
    wr = world or list(range(comm.Get_size()))  # ranks as the caller numbers them
    all_sizes: dict[int, int] = {}
    if any(f.style == FrameStyle.LZ4 for f in frames):  # (all RAW: every size is known already)
        sizes = {fp.local_ids[k]: e.stored for k, e in encoded.items()}  # bit 63: verbatim
        got = allgather(comm, (None if err is None else to_err(err), sizes), timeout, f"{what}: frame sizes")
        errs = [(wr[r], e) for r, (e, _) in enumerate(got) if e is not None]
        if errs:
            _release(encoded)
            raise_agreed(errs, err, "save")
        for _, s in got:
            all_sizes.update(s)
    stored = [all_sizes.get(fi, f.nbytes) for fi, f in enumerate(frames)]
    where = place(len(fp.head_json), frames, stored)

    fh: MPI.File | None = None
    try:  # 2. open the temporary file (collective: every rank is known to be here)
        fh = MPI.File.Open(comm, os.fspath(tmp), MPI.MODE_WRONLY | MPI.MODE_CREATE | MPI.MODE_EXCL)
    except Exception as e:
        err = CheckptIOError(errno.EIO, f"cannot create {str(tmp)!r}: {to_err(e)[1]}")
    got_open = allgather(comm, None if err is None else to_err(err), timeout, f"{what}: open")
    errs = [(wr[r], e) for r, e in enumerate(got_open) if e is not None]
    if errs:  # MPI-IO reports open errors on every rank: either all ranks hold the file or none does
        _release(encoded)
        if fh is not None:
            with contextlib.suppress(Exception):
                fh.Close()
            if me == 0:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        raise_agreed(errs, err, "save")
    assert fh is not None

    def at(offset: int, buf: memoryview) -> None:  # (write_at looked up per call: tests replace it)
        write_at(fh, offset, buf)

    hashes: dict[int, int] = {}
    try:  # 3. write this rank's frames (rank 0: also superblock and head); RAW frames hashed just before
        if me == 0:
            write_head(at, fp.head_json)
        for k, f in enumerate(fp.local):
            fi = fp.local_ids[k]
            if f.style == FrameStyle.LZ4:
                done = encoded.pop(k)
                try:
                    at(write_record(at, where.starts[fi], f.style, done.stored, done.xxh), buffer_view(done.data))
                    hashes[fi] = done.xxh
                finally:
                    _release({k: done})
                continue
            src, gathered = frame_input(f, fp.array_bytes)
            try:
                hashes[fi] = _lz4.xxh64(src)
                at(write_record(at, where.starts[fi], f.style, f.nbytes, 0), buffer_view(src))
            finally:
                if gathered is not None:
                    ScratchPool.put(gathered)
    except Exception as e:
        err = e
    _release(encoded)
    got = allgather(comm, (None if err is None else to_err(err), hashes), timeout, f"{what}: frames written")
    if me == 0 and all(e is None for e, _ in got):
        try:  # 4. rank 0: the index and trailer, now that every frame's checksum is known
            for _, h in got:
                hashes.update(h)
            index = index_table(where.offsets, stored, [hashes[fi] for fi in range(len(frames))])
            write_tail(at, index, where.index_offset)
        except Exception as e:
            err = e
    for step in (fh.Sync, fh.Close):  # 5. collective: every rank has passed the exchange above
        try:
            step()
        except Exception as e:
            err = err or e
    got3 = allgather(comm, None if err is None else to_err(err), timeout, f"{what}: synced")
    errs = [(wr[r], e) for r, e in enumerate(got3) if e is not None]
    if me == 0:  # 6. commit only if every rank succeeded
        committed = False
        if not errs:
            try:
                _files.keep_mode_of(path, tmp)
                os.replace(tmp, path)
                committed = True
                _files.fsync_dir(path.parent)
            except OSError as e:
                err = CheckptIOError(e.errno, f"rename to {str(path)!r} failed: {e.strerror}")
                errs = [(wr[0], to_err(err))]
        if not committed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    errs = bcast(comm, errs, 0, timeout, f"{what}: commit")
    if errs:
        raise_agreed(errs, err, "save")


def _release(encoded: dict[int, EncodedFrame]) -> None:
    """Give every encoded frame's staging buffers back, and forget the frames."""
    for e in encoded.values():
        for b in e.hold:
            ScratchPool.put(b)
    encoded.clear()


Filters = dict[int, tuple[str, int] | None]


def _sharer(comm: MPI.Intracomm, timeout: float, what: str) -> Callable[[Filters], Filters]:
    """The ``share`` of :func:`plan_file` over ``comm``: every rank's "auto" decisions, merged.
    (Deciding cannot fail on one rank alone: LZ4 was found on every rank when the styles were
    checked, and the chooser's arguments come from the plan.)"""

    def share(mine: Filters) -> Filters:
        got = allgather(comm, mine, timeout, what)
        out: Filters = {}
        for d in got:
            out.update(d)
        return out

    return share


def save_shared(
    comm: MPI.Intracomm, infos: list[RankInfo], array_bytes: list[StoredBytes], path: Path, threads: int, timeout: float
) -> None:
    """Write one file at ``path`` from every rank of ``comm`` (collective; ``infos`` agreed on).

    A plan readers would refuse (a head too large) raises the same InvalidArgumentError on
    every rank before anything is written (planning is deterministic: no exchange is needed).
    """
    lead = infos[0]
    ranks = list(range(comm.Get_size()))
    try:
        fp = plan_file(
            infos,
            ranks,
            comm.Get_rank(),
            array_bytes,
            blocked=True,
            metadata=json.loads(lead.metadata),
            share=_sharer(comm, timeout, "save: filters"),
        )
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"ndckpt.mpi.save: {e}; nothing was committed") from None
    tmp = path.parent / _files.temp_name(path.name, pid=lead.pid, host=lead.host, token=lead.token)
    write_file(comm, fp, path, tmp, threads, timeout, "save")


def save_subfiled(
    comm: MPI.Intracomm, infos: list[RankInfo], array_bytes: list[StoredBytes], path: Path, threads: int, timeout: float
) -> None:
    """Write ``infos[0].subfiles`` subfiles, one per contiguous group of ranks, then rank 0 the
    index at ``path`` (collective; ``infos`` agreed on). The index is the commit point; on any
    failure every rank raises the same error and no new subfile or index remains."""
    rank, size = comm.Get_rank(), comm.Get_size()
    lead = infos[0]
    m = lead.subfiles
    color = rank * m // size
    members = [r for r in range(size) if r * m // size == color]
    names = [subfile_name(path.name, lead.token, k) for k in range(m)]
    sub_path = path.parent / names[color]
    sub = comm.Split(color, rank)
    assert isinstance(sub, MPI.Intracomm)
    err: BaseException | None = None
    try:
        fp = plan_file(
            infos,
            members,
            rank,
            array_bytes,
            blocked=False,
            metadata=None,
            share=_sharer(sub, timeout, f"save: subfile {color}: filters"),
        )
        tmp = path.parent / _files.temp_name(sub_path.name, pid=lead.pid, host=lead.host, token=lead.token)
        write_file(sub, fp, sub_path, tmp, threads, timeout, f"save: subfile {color}", members)
    except Exception as e:
        err = e
    finally:
        sub.Free()

    def write_index() -> None:
        old: list[Any] = []
        with contextlib.suppress(CheckptError, OSError), open_checkpoint(path) as r:
            old = listed_subfiles(r.metadata) or []
        globals_ = [
            {
                "path": list(g.path),
                "dtype": encode_dtype(g.dtype),
                "shape": list(g.shape),
                "blocks": [[list(st), list(sh), r] for (st, sh), r in zip(g.blocks or (), holders, strict=True)],
            }
            for g, holders in global_arrays(infos)
        ]
        desc = {
            "version": 1,
            "nranks": size,
            "files": names,
            "rank_file": [r * m // size for r in range(size)],
            "global": globals_,
            "private": sorted("/".join(i.path) for i in lead.items if i.start is None),
        }
        save_single(path, {}, metadata={INDEX_KEY: desc, "metadata": json.loads(lead.metadata)})
        # The old index is untrusted: only names this writer makes for this target are deleted.
        for name in old:
            victim = removable_subfile(path, name) if name not in names else None
            if victim is not None:
                with contextlib.suppress(OSError):
                    os.unlink(victim)

    got = allgather(comm, [] if err is None else errs_of(err, rank), timeout, "save: subfiles written")
    errs = [e for g in got for e in g]
    if not errs:
        try:
            root_call(comm, write_index, timeout, "save: index")
            return
        except CheckptError as e:
            err = err or e
            errs = errs_of(e, 0)
    if rank == members[0]:
        with contextlib.suppress(OSError):
            os.unlink(sub_path)
    raise_agreed(errs, err, "save")
