"""Checkpoints of MPI jobs: every rank writes its share of one ndckpt file, in parallel.

Concepts
--------
Global arrays and blocks
    A simulation that runs on N ranks holds each global array as blocks, one
    per rank. ``Block(local, start, global_shape)`` says that ``local`` is
    ``global[start[0]:start[0]+local.shape[0], ...]``. :func:`save` stores the
    global array once, as the container's *global array stored as blocks*
    (``docs/format.md`` §2.2): the blocks of all ranks, in rank order, must
    tile the array exactly. A rank may pass an empty block (it holds nothing).
Rank-private arrays
    A plain numpy array passed to :func:`save` is this rank's own state
    (say, its particles). It is stored at ``ranks/<rank>/<name>``, so a
    single process sees every rank's copy; the top-level name ``ranks`` is
    therefore reserved. Names must be the same on every rank; shapes and
    dtypes of private arrays may differ.
One file, written in parallel
    The file is an ordinary ndckpt file (``ndckpt.load`` and
    ``ndckpt.open(path).read(name, region=...)`` read it in one process). Every
    data frame belongs to one rank: each rank plans its own frames with the
    same planner as ``ndckpt.save`` (so frames never span two ranks' bytes),
    and every rank computes the plan of every rank from the descriptions all
    ranks exchange, so the head, and with it the offset of every frame, is
    the same everywhere. LZ4 frames are compressed first and their sizes
    exchanged; then each rank hashes and writes its frames at their offsets
    with MPI-IO (independent ``Write_at``), rank 0
    writes the superblock and head, and, once it has every frame's
    checksum, the index and trailer.
Commit
    The file is written under a temporary name in the target's directory,
    synced (``MPI_File_sync``) and closed; only if every rank reports
    success does rank 0 give it the replaced file's permission bits, rename
    it over the target (atomic) and fsync the directory. A symlink at the
    target is written through, as by :func:`ndckpt.save`. Otherwise the temporary file is removed and every rank raises
    the same error. The bytes depend only on the arrays, their decomposition
    and the options: saving the same blocks again gives the same file.
Collective calls and timeouts
    :func:`save` and :func:`load` are collective: every rank of ``comm`` must
    call them, with the same target. Errors are agreed on: when one rank's
    input is bad or one rank fails, every rank raises an error naming the
    rank and the reason, and nothing is committed. Every exchange between
    ranks is a nonblocking collective that is waited for at most ``timeout``
    seconds; a rank that waits longer (another rank died, hangs, or never
    made the call) prints why and calls ``MPI_Abort``, which ends the whole
    job: an MPI job cannot go on once a rank has left a collective. The few
    blocking MPI-IO calls (open, sync, close) always come right after such an
    exchange, when every rank is known to be there. A rank that dies leaves
    only a temporary file (``CheckpointManager`` removes those of dead
    writers) and the previous checkpoint stays the latest.
Subfiles
    One shared file is slow where the file system serialises writes to one
    file (``benchmarks/bench_mpi.py`` compares the two on a given file system:
    peers ``ndckpt``, one shared file, and ``ndckpt_sub``, a file per rank).
    ``save(..., subfiles=M)`` instead splits the ranks into M contiguous
    groups; each group writes its own ordinary ndckpt file
    (``<target>.<token>.sub<k>``, the blocks stored as ``blocks/<rank>/<name>``,
    private arrays as ``ranks/<rank>/<name>``), and rank 0 then writes
    ``target`` as a small index file (an ndckpt file with no arrays whose
    metadata maps every block to its subfile). The index is the commit
    point: written last, atomically, after every subfile is complete.
    :func:`load` reads both layouts; ``ndckpt.load`` of an index returns no
    arrays (read it with :func:`load`, on any number of ranks, or one
    process with ``MPI.COMM_SELF``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import operator
import os
import pickle
import secrets
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np

try:
    from mpi4py import MPI
except (ImportError, RuntimeError) as _e:  # no mpi4py, or no MPI library it can load
    raise ImportError(
        "ndckpt.mpi needs mpi4py and an MPI library; install them from an ndckpt checkout with: "
        f"pip install -e '.[mpi]' ({_e})"
    ) from _e

from . import _files, _lz4
from ._subfiles import INDEX_KEY, foreign_subfiles, listed_subfiles, removable_subfile, subfile_name
from .api import open as open_checkpoint
from .api import save as save_single
from .container.dtype import decode_dtype, encode_dtype
from .container.head import ArraySpec, FrameSpec, Head, Part, block_offsets, check_blocks
from .container.layout import frame_offsets
from .container.plan import (
    DEFAULT_FRAME_BYTES,
    StoredBytes,
    StridedBytes,
    as_array,
    bytes_of,
    check_metadata,
    flat_names,
    flatten_tree,
    plan,
    resolve_styles,
    stored_bytes,
)
from .container.read import normalise_region
from .container.spec import (
    END_MAGIC,
    HEAD_MAX,
    INDEX_DTYPE,
    MAGIC,
    RECORD,
    STORED_VERBATIM,
    SUPERBLOCK,
    TRAILER,
    VERSION,
)
from .container.write import EncodedFrame, encode_frame, frame_input
from .errors import (
    CheckptError,
    CheckptIOError,
    CompressionError,
    FormatError,
    InvalidArgumentError,
    UnsupportedError,
)
from .format import FrameStyle
from .parallel import ScratchPool, resolve_threads, run_all

__all__ = ["DEFAULT_TIMEOUT", "PRIVATE", "Block", "load", "save"]

#: Top-level group of rank-private arrays: rank r's array "x" is stored at "ranks/<r>/x".
PRIVATE = "ranks"
#: Group of the blocks in a subfile: rank r's block of global array "u" is "blocks/<r>/u".
_BLOCKS = "blocks"
#: Metadata key of a subfile index.
_INDEX_KEY = INDEX_KEY
#: Seconds any exchange between ranks may wait before the job is aborted.
DEFAULT_TIMEOUT = 600.0
#: Exit code passed to MPI_Abort when an exchange times out.
ABORT_CODE = 75
#: Longest sleep between two polls of an exchange. A nonblocking collective only progresses
#: while its ranks poll it, so this bounds the latency each exchange adds to a save (a save
#: has several; ``benchmarks/bench_mpi.py`` times whole saves against plain MPI-IO).
_POLL_MAX = 5e-4
#: RAW frames of a large array (ndckpt.save uses 1 GiB). Each rank hashes a frame inline and
#: then writes it while it is still in cache, so a frame is small enough to stay cached and
#: large enough that per-frame costs vanish; ``benchmarks/bench_mpi.py`` (write, against plain
#: MPI-IO) is the measurement to repeat when changing it.
_RAW_FRAME_BYTES = 16 << 20

T = TypeVar("T")
_Err = tuple[str, str]  # (error class name, message) as sent between ranks
_ERRORS: dict[str, type[CheckptError]] = {
    c.__name__: c
    for c in (CheckptError, InvalidArgumentError, UnsupportedError, CheckptIOError, CompressionError, FormatError)
}


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


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
    else (dimensions, bounds, tiling, dtypes) is checked by :func:`save`,
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
        """The block's place in the global array, as slices (usable as a ``select`` region in :func:`load`)."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.local.shape, strict=False))


# ----------------------------------------------------------------------------------------------
# Exchanges between ranks: nonblocking collectives, each waited for at most `timeout` seconds
# ----------------------------------------------------------------------------------------------


def _abort(comm: MPI.Intracomm, what: str, timeout: float) -> NoReturn:
    sys.stderr.write(
        f"ndckpt.mpi: rank {comm.Get_rank()}: {what}: not every rank answered within {timeout:g} s "
        "(a rank died, hangs, or did not make this call); aborting the MPI job\n"
    )
    sys.stderr.flush()
    time.sleep(0.5)  # let the launcher forward the message before it tears the job down
    MPI.COMM_WORLD.Abort(ABORT_CODE)  # the whole job: a rank stuck in a collective cannot be freed


def _wait(comm: MPI.Intracomm, req: MPI.Request, timeout: float, what: str) -> None:
    """Complete ``req``, polling with growing sleeps (cheap for ranks oversubscribing cores)."""
    if req.Test():
        return
    deadline = time.monotonic() + timeout
    pause = 2e-5
    while not req.Test():
        if time.monotonic() > deadline:
            _abort(comm, what, timeout)
        time.sleep(pause)
        pause = min(pause * 1.5, _POLL_MAX)


def _allgather(comm: MPI.Intracomm, obj: Any, timeout: float, what: str) -> list[Any]:
    """Every rank's ``obj`` (pickled: ranks of one job trust each other), in rank order."""
    data = np.frombuffer(pickle.dumps(obj, protocol=5), np.uint8)
    sizes = np.zeros(comm.Get_size(), np.int64)
    _wait(comm, comm.Iallgather(np.array([data.size], np.int64), sizes), timeout, what)
    counts = [int(n) for n in sizes]
    displs = [0, *np.cumsum(counts)[:-1].tolist()]
    recv = np.empty(max(sum(counts), 1), np.uint8)
    _wait(comm, comm.Iallgatherv(data, [recv, counts, displs, MPI.BYTE]), timeout, what)
    return [pickle.loads(recv[d : d + n].tobytes()) for d, n in zip(displs, counts, strict=True)]


def _bcast(comm: MPI.Intracomm, obj: Any, root: int, timeout: float, what: str) -> Any:
    """``obj`` of rank ``root`` on every rank."""
    mine = comm.Get_rank() == root
    data = np.frombuffer(pickle.dumps(obj, protocol=5), np.uint8) if mine else np.empty(0, np.uint8)
    n = np.array([data.size], np.int64)
    _wait(comm, comm.Ibcast(n, root), timeout, what)
    buf = data if mine else np.empty(int(n[0]), np.uint8)
    _wait(comm, comm.Ibcast(buf, root), timeout, what)
    return obj if mine else pickle.loads(buf.tobytes())


def _to_err(e: BaseException) -> _Err:
    if isinstance(e, CheckptError):
        return type(e).__name__, str(e)
    if isinstance(e, MPI.Exception):
        return "CheckptIOError", f"MPI error: {e.Get_error_string()}"
    if isinstance(e, OSError):
        return "CheckptIOError", str(e)
    return "CheckptError", f"{type(e).__name__}: {e}"


def _raise_agreed(errs: list[tuple[int, _Err]], local: BaseException | None, op: str) -> NoReturn:
    """Raise, on every rank, one error describing what failed where (the first failing rank's class).

    Ranks that failed with the same message are listed together. The error
    carries the list (``mpi_errors``) so that an outer exchange can pass it on.
    """
    errs = sorted(set(errs))
    by_msg: dict[str, list[int]] = {}
    for r, (_, msg) in errs:
        by_msg.setdefault(msg, []).append(r)
    shown = "; ".join(
        f"rank {rs[0]}: {msg}" if len(rs) == 1 else f"ranks {', '.join(map(str, rs))}: {msg}"
        for msg, rs in list(by_msg.items())[:4]
    )
    more = f" (and {len(by_msg) - 4} more errors)" if len(by_msg) > 4 else ""
    cls = _ERRORS.get(errs[0][1][0], CheckptError)
    tail = "; nothing was committed" if op == "save" else ""
    exc = cls(f"ndckpt.mpi.{op}: {shown}{more}{tail}")
    exc.mpi_errors = errs  # type: ignore[attr-defined]
    raise exc from local


def _errs_of(e: BaseException, rank: int) -> list[tuple[int, _Err]]:
    """The per-rank errors behind ``e`` (an agreed error), or ``e`` itself as this rank's error."""
    inner = getattr(e, "mpi_errors", None)
    return list(inner) if inner else [(rank, _to_err(e))]


def _agree(comm: MPI.Intracomm, local: BaseException | None, timeout: float, what: str, op: str) -> None:
    """Exchange every rank's error (or None); raise the same error on every rank if any failed."""
    got = _allgather(comm, None if local is None else _to_err(local), timeout, what)
    errs = [(r, e) for r, e in enumerate(got) if e is not None]
    if errs:
        _raise_agreed(errs, local, op)


def root_call(comm: MPI.Intracomm, fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` on rank 0 only and return its result (or raise its error) on every rank."""
    if comm.Get_rank() == 0:
        try:
            res: tuple[str, Any] = ("ok", fn())
        except Exception as e:
            _bcast(comm, ("err", _to_err(e)), 0, timeout, what)
            raise
        return _bcast(comm, res, 0, timeout, what)[1]  # type: ignore[no-any-return]
    kind, val = _bcast(comm, None, 0, timeout, what)
    if kind == "err":
        exc = _ERRORS.get(val[0], CheckptError)(f"{what}: rank 0: {val[1]}")
        exc.mpi_errors = [(0, tuple(val))]  # type: ignore[attr-defined]
        raise exc
    return val  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------
# save: what each rank holds
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One array of one rank: a block of a global array (start set) or a private array."""

    path: tuple[str, ...]
    dtype: np.dtype[Any]
    shape: tuple[int, ...]  # what this rank stores
    order: str  # order of its stored bytes ("C" for blocks)
    style: int
    start: tuple[int, ...] | None = None
    global_shape: tuple[int, ...] | None = None

    @property
    def empty(self) -> bool:
        return math.prod(self.shape) == 0


@dataclass(frozen=True)
class _RankInfo:
    items: tuple[_Item, ...]
    groups: tuple[tuple[str, ...], ...]
    metadata: str  # canonical JSON, compared across ranks
    target: str
    subfiles: int
    token: str
    pid: int
    host: str  # _files.host_tag() of this rank: temporary names carry rank 0's pid and host


def _describe(
    rank: int, target: Any, arrays: Any, style: Any, metadata: Any, subfiles: Any
) -> tuple[_RankInfo, list[StoredBytes]]:
    """Validate this rank's input; return its description and the stored bytes of each item."""
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
    styles = resolve_styles(style, ["/".join(p) for p, _ in flat])
    items: list[_Item] = []
    sources: list[StoredBytes] = []
    for (path, v), st in zip(flat, styles, strict=True):
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
            items.append(_Item(path, a.dtype, shape, "C", int(st), v.start, v.global_shape))
            sources.append(bytes_of(a, "C") if a.flags.c_contiguous else StridedBytes(a))
        elif not isinstance(v, np.ndarray):
            raise InvalidArgumentError(
                f"{name!r}: ndckpt.mpi.save stores numpy arrays and Blocks only, got {type(v).__name__}; pass a "
                "Python value or numpy scalar as metadata= (JSON), or as a 0-d array (np.asarray(x))"
            )
        else:
            a = as_array(path, v)
            src, order = stored_bytes(a)
            items.append(_Item(path, a.dtype, tuple(int(n) for n in a.shape), order, int(st)))
            sources.append(src)
    meta = json.dumps(check_metadata(metadata), sort_keys=True, separators=(",", ":"))
    # As ndckpt.save: a symlink at the target is written through (every rank resolves it; the
    # agreement check then compares the files the ranks would replace), a directory is refused.
    final, st_ = _files.resolve_target(target)
    info = _RankInfo(
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
    return info, sources


def _check_agreement(infos: list[_RankInfo]) -> None:
    """The same on every rank (deterministic): names, styles, metadata, dtypes and tiling agree."""
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
    style0 = {i.path: i.style for i in first.items}
    for r, info in enumerate(infos[1:], 1):
        for i in info.items:
            if i.style != style0[i.path]:
                raise InvalidArgumentError(f"array {'/'.join(i.path)!r}: style differs between rank 0 and rank {r}")
    _global_arrays(infos)  # validates dtypes, global shapes and tiling


def _global_arrays(infos: list[_RankInfo]) -> list[tuple[ArraySpec, list[int]]]:
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


# ----------------------------------------------------------------------------------------------
# save: the plan of one file (the same on every rank)
# ----------------------------------------------------------------------------------------------


@dataclass
class _FilePlan:
    head: Head
    head_json: bytes
    owner: list[int]  # frame -> index of its writer in the file's communicator
    local: list[FrameSpec]  # this rank's frames, parts indexing `sources`, in file order
    local_ids: list[int]  # their indices in head.frames
    sources: list[StoredBytes]  # this rank's stored bytes, in the order its local frames use


def _plan_file(
    infos: list[_RankInfo],
    writers: list[int],
    me: int,
    my_sources: list[StoredBytes] | None,
    *,
    blocked: bool,
    metadata: Any,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
) -> _FilePlan:
    """Plan the file written by ranks ``writers`` (world ranks, in order); ``me`` is this rank's world rank.

    With ``blocked``, blocks are parts of global arrays stored as blocks;
    otherwise (subfiles) each block is an ordinary array ``blocks/<rank>/<name>``.
    Each writer's items are planned on their own with :func:`ndckpt.container.plan.plan`,
    so that every frame holds the bytes of one rank only; frames follow in
    writer order, and parts refer to the file's arrays (sorted by path).
    """
    arrays: list[ArraySpec] = []
    base: dict[tuple[tuple[str, ...], int], tuple[tuple[str, ...], int]] = {}  # (item path, rank) -> (array, byte)
    if blocked:
        for g, holders in _global_arrays(infos):
            arrays.append(g)
            offs = block_offsets(g)
            for r, off in zip(holders, offs, strict=False):
                base[(g.path, r)] = (g.path, off)
    per_rank: list[tuple[list[ArraySpec], list[tuple[tuple[str, ...], int]], list[FrameStyle]]] = []
    for r in writers:
        pseudo: list[ArraySpec] = []
        dest: list[tuple[tuple[str, ...], int]] = []
        styles: list[FrameStyle] = []
        for it in infos[r].items:
            if it.start is None:
                path = (PRIVATE, str(r), *it.path)
                arrays.append(ArraySpec(path, it.dtype, it.shape, it.order))
                pseudo.append(ArraySpec(path, it.dtype, it.shape, it.order))
                dest.append((path, 0))
            elif blocked:
                pseudo.append(ArraySpec(it.path, it.dtype, it.shape, "C"))
                dest.append(base.get((it.path, r), (it.path, 0)))
            else:
                path = (_BLOCKS, str(r), *it.path)
                arrays.append(ArraySpec(path, it.dtype, it.shape, "C"))
                pseudo.append(ArraySpec(path, it.dtype, it.shape, "C"))
                dest.append((path, 0))
            styles.append(FrameStyle(it.style))
        per_rank.append((pseudo, dest, styles))
    arrays.sort(key=lambda a: a.path)
    index = {a.path: i for i, a in enumerate(arrays)}
    frames: list[FrameSpec] = []
    owner: list[int] = []
    local: list[FrameSpec] = []
    local_ids: list[int] = []
    sources: list[StoredBytes] = []
    for w, (r, (pseudo, dest, styles)) in enumerate(zip(writers, per_rank, strict=True)):
        order, rframes = plan(pseudo, styles, frame_bytes, _RAW_FRAME_BYTES)
        for f in rframes:
            parts = []
            for p in f.parts:
                path, off = dest[order[p.array]]
                parts.append(Part(index[path], off + p.start, p.nbytes, p.at))
            if r == me:
                local.append(f)
                local_ids.append(len(frames))
            frames.append(FrameSpec(f.style, f.nbytes, parts))
            owner.append(w)
        if r == me:
            assert my_sources is not None
            sources = [my_sources[i] for i in order]
    groups = sorted(infos[0].groups) if blocked else []  # subfiles: empty groups are not kept
    head = Head(arrays, frames, [tuple(g) for g in groups], metadata)
    head.check_tiling()
    head_json = head.to_json()
    if len(head_json) > HEAD_MAX:
        raise InvalidArgumentError(
            f"the checkpoint's head would be {len(head_json)} bytes, more than the {HEAD_MAX}-byte limit "
            "(too many arrays or blocks; use subfiles)"
        )
    return _FilePlan(head, head_json, owner, local, local_ids, sources)


# ----------------------------------------------------------------------------------------------
# save: writing one file
# ----------------------------------------------------------------------------------------------


def _write_at(f: MPI.File, offset: int, buf: Any) -> None:
    """Write all of ``buf`` at ``offset`` (independent MPI-IO); CheckptIOError on a short write."""
    n = memoryview(buf).nbytes
    if n == 0:
        return
    st = MPI.Status()
    f.Write_at(offset, buf, st)
    got = st.Get_count(MPI.BYTE)
    if got != n:
        raise CheckptIOError(errno.EIO, f"short write at offset {offset}: {got} of {n} bytes written")


def _write_file(
    comm: MPI.Intracomm,
    fp: _FilePlan,
    path: Path,
    tmp: Path,
    threads: int,
    timeout: float,
    what: str,
    world: list[int] | None = None,
) -> None:
    """Write ``fp`` to ``tmp`` and commit it as ``path``, collectively over ``comm`` (the writers of ``fp``).

    Every step that can fail on one rank is followed by an exchange, so all
    ranks take the same branch; on any failure every rank raises and rank 0
    removes ``tmp``.
    """
    me = comm.Get_rank()
    frames = fp.head.frames
    encoded: dict[int, EncodedFrame] = {}
    err: BaseException | None = None
    try:  # 1. LZ4 frames are compressed first: their stored sizes decide every later offset
        lz4_local = [k for k, f in enumerate(fp.local) if f.style == FrameStyle.LZ4]

        def enc(k: int) -> None:
            encoded[k] = encode_frame(fp.local[k], fp.local_ids[k], fp.sources)

        run_all(enc, lz4_local, threads)
    except Exception as e:
        err = e
    wr = world or list(range(comm.Get_size()))  # ranks as the caller numbers them
    all_sizes: dict[int, int] = {}
    if any(f.style == FrameStyle.LZ4 for f in frames):  # (all RAW: every size is known already)
        sizes = {fp.local_ids[k]: e.stored for k, e in encoded.items()}  # bit 63: verbatim
        got = _allgather(comm, (None if err is None else _to_err(err), sizes), timeout, f"{what}: frame sizes")
        errs = [(wr[r], e) for r, (e, _) in enumerate(got) if e is not None]
        if errs:
            _release(encoded)
            _raise_agreed(errs, err, "save")
        for _, s in got:
            all_sizes.update(s)
    stored = [all_sizes.get(fi, f.nbytes) for fi, f in enumerate(frames)]
    offsets, index_off = frame_offsets(SUPERBLOCK.size + len(fp.head_json), frames, stored)
    # Records end where their data frame starts, or (stored verbatim) where its zero pad starts;
    # pads are never written: the file's holes read as zeros.
    ends = [
        SUPERBLOCK.size + len(fp.head_json),
        *(o + (n & ~STORED_VERBATIM) for o, n in zip(offsets, stored, strict=True)),
    ]
    rec_at = {fi: ends[fi] for fi, f in enumerate(frames) if f.style == FrameStyle.LZ4}

    fh: MPI.File | None = None
    try:  # 2. open the temporary file (collective: every rank is known to be here)
        fh = MPI.File.Open(comm, os.fspath(tmp), MPI.MODE_WRONLY | MPI.MODE_CREATE | MPI.MODE_EXCL)
    except Exception as e:
        err = CheckptIOError(errno.EIO, f"cannot create {str(tmp)!r}: {_to_err(e)[1]}")
    got_open = _allgather(comm, None if err is None else _to_err(err), timeout, f"{what}: open")
    errs = [(wr[r], e) for r, e in enumerate(got_open) if e is not None]
    if errs:  # MPI-IO reports open errors on every rank: either all ranks hold the file or none does
        _release(encoded)
        if fh is not None:
            with contextlib.suppress(Exception):
                fh.Close()
            if me == 0:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        _raise_agreed(errs, err, "save")
    assert fh is not None

    hashes: dict[int, int] = {}
    try:  # 3. write this rank's frames (rank 0: also superblock and head); RAW frames hashed just before
        if me == 0:
            sb = SUPERBLOCK.pack(MAGIC, VERSION, 0, len(fp.head_json), _lz4.xxh64(fp.head_json))
            _write_at(fh, 0, sb + fp.head_json)
        for k, f in enumerate(fp.local):
            fi = fp.local_ids[k]
            if f.style == FrameStyle.LZ4:
                done = encoded.pop(k)
                try:
                    _write_at(fh, rec_at[fi], RECORD.pack(done.stored, done.xxh))
                    _write_at(fh, offsets[fi], done.data)
                    hashes[fi] = done.xxh
                finally:
                    _release({k: done})
                continue
            src, gathered = frame_input(f, fp.sources)
            try:
                hashes[fi] = _lz4.xxh64(src)
                _write_at(fh, offsets[fi], src)
            finally:
                if gathered is not None:
                    ScratchPool.put(gathered)
    except Exception as e:
        err = e
    _release(encoded)
    got = _allgather(comm, (None if err is None else _to_err(err), hashes), timeout, f"{what}: frames written")
    if me == 0 and all(e is None for e, _ in got):
        try:  # 4. rank 0: the index and trailer, now that every frame's checksum is known
            for _, h in got:
                hashes.update(h)
            index = np.zeros(len(frames), INDEX_DTYPE)
            index["offset"] = offsets
            index["stored"] = stored
            index["xxh64"] = [hashes[fi] for fi in range(len(frames))]
            ib = index.tobytes()
            total = index_off + len(ib) + TRAILER.size
            _write_at(
                fh, index_off, ib + TRAILER.pack(index_off, len(frames), _lz4.xxh64(ib), total, VERSION, 0, END_MAGIC)
            )
        except Exception as e:
            err = e
    for step in (fh.Sync, fh.Close):  # 5. collective: every rank has passed the exchange above
        try:
            step()
        except Exception as e:
            err = err or e
    got3 = _allgather(comm, None if err is None else _to_err(err), timeout, f"{what}: synced")
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
                errs = [(wr[0], _to_err(err))]
        if not committed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    errs = _bcast(comm, errs, 0, timeout, f"{what}: commit")
    if errs:
        _raise_agreed(errs, err, "save")


def _release(encoded: dict[int, EncodedFrame]) -> None:
    for e in encoded.values():
        for b in e.hold:
            ScratchPool.put(b)
    encoded.clear()


# ----------------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------------


def save(
    comm: MPI.Intracomm,
    target: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    *,
    style: Any = "raw",
    metadata: Mapping[str, Any] | None = None,
    subfiles: int | None = None,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Write one checkpoint from every rank of ``comm``, in parallel (collective).

    Parameters
    ----------
    comm
        An mpi4py intracommunicator; every rank calls ``save`` with the same
        ``target``, the same names, styles and metadata.
    target
        Path of the checkpoint (its directory must be visible to every rank).
        Replaced atomically; the previous file stays intact on any failure.
    arrays
        Mapping (possibly nested) of names to :class:`Block` (this rank's block
        of a global array) or to numpy arrays/scalars (rank-private state,
        stored at ``ranks/<rank>/<name>``). The same names on every rank.
    style
        As in :func:`ndckpt.save`: ``"raw"``, ``"lz4"``, a FrameStyle or a
        mapping from names to styles (the same on every rank).
    metadata
        JSON-compatible dict stored with the checkpoint (the same on every rank).
    subfiles
        None: one shared file. M: M subfiles written by M groups of ranks plus
        an index at ``target`` (see the module docstring).
    threads
        Threads per rank for compressing and hashing (None: the cores this
        process may use).
    timeout
        Seconds any exchange between ranks may wait; past it the job is
        aborted (``MPI_Abort``) because a rank died, hangs or did not call.

    Raises
    ------
    InvalidArgumentError
        On every rank, when any rank's input is bad or the ranks disagree
        (names, dtypes, global shapes, styles, metadata, target), or the blocks
        of a global array do not tile it; the message names the ranks.
    CheckptIOError, CompressionError, UnsupportedError
        On every rank, when any rank failed to compress or write. In all
        these cases nothing is committed: ``target`` is untouched and the
        temporary file is removed.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
    timeout = float(timeout)
    err: BaseException | None = None
    info: _RankInfo | None = None
    sources: list[StoredBytes] = []
    th = 1
    try:
        th = resolve_threads(threads)
        info, sources = _describe(rank, target, arrays, style, metadata, subfiles)
    except Exception as e:
        err = e
    got = _allgather(comm, ("err", _to_err(err)) if err is not None else ("ok", info), timeout, "save: describe")
    errs = [(r, v) for r, (k, v) in enumerate(got) if k == "err"]
    if errs:
        _raise_agreed(errs, err, "save")
    infos: list[_RankInfo] = [v for _, v in got]
    try:
        _check_agreement(infos)  # the same outcome on every rank
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"ndckpt.mpi.save: {e}; nothing was committed") from None
    lead = infos[0]
    path = Path(lead.target)
    meta = json.loads(lead.metadata)
    if not lead.subfiles:
        fp = _plan_file(infos, list(range(size)), rank, sources, blocked=True, metadata=meta)
        tmp = path.parent / _files.temp_name(path.name, pid=lead.pid, host=lead.host, token=lead.token)
        _write_file(comm, fp, path, tmp, th, timeout, "save")
        return
    _save_subfiled(comm, infos, sources, path, th, timeout)


def _save_subfiled(
    comm: MPI.Intracomm, infos: list[_RankInfo], sources: list[StoredBytes], path: Path, threads: int, timeout: float
) -> None:
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
        fp = _plan_file(infos, members, rank, sources, blocked=False, metadata=None)
        tmp = path.parent / _files.temp_name(sub_path.name, pid=lead.pid, host=lead.host, token=lead.token)
        _write_file(sub, fp, sub_path, tmp, threads, timeout, f"save: subfile {color}", members)
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
            for g, holders in _global_arrays(infos)
        ]
        desc = {
            "version": 1,
            "nranks": size,
            "files": names,
            "rank_file": [r * m // size for r in range(size)],
            "global": globals_,
            "private": sorted("/".join(i.path) for i in lead.items if i.start is None),
        }
        save_single(path, {}, metadata={_INDEX_KEY: desc, "metadata": json.loads(lead.metadata)})
        # The old index is untrusted: only names this writer makes for this target are deleted.
        for name in old:
            victim = removable_subfile(path, name) if name not in names else None
            if victim is not None:
                with contextlib.suppress(OSError):
                    os.unlink(victim)

    got = _allgather(comm, [] if err is None else _errs_of(err, rank), timeout, "save: subfiles written")
    errs = [e for g in got for e in g]
    if not errs:
        try:
            root_call(comm, write_index, timeout, "save: index")
            return
        except CheckptError as e:
            err = err or e
            errs = _errs_of(e, 0)
    if rank == members[0]:
        with contextlib.suppress(OSError):
            os.unlink(sub_path)
    _raise_agreed(errs, err, "save")


# ----------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------


def _flat_out(out: Any) -> dict[str, Any]:
    if out is None:
        return {}
    if not isinstance(out, Mapping):
        raise InvalidArgumentError(f"out: expected a mapping of names to arrays, got {type(out).__name__}")
    return flat_names(out)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(flat):
        parts = name.split("/")
        d = out
        for k in parts[:-1]:
            d = d.setdefault(k, {})
        d[parts[-1]] = flat[name]
    return out


def _wanted(
    select: Any, global_names: list[str], private: dict[int, list[str]], rank: int, size: int
) -> dict[str, tuple[str, Any]]:
    """name -> (stored name, region or None) for this rank."""
    nwriters = len(private)
    mine = private.get(rank, [])
    if select is None:
        if private and (nwriters != size or set(private) != set(range(nwriters))):
            names = sorted({n for v in private.values() for n in v})
            raise InvalidArgumentError(
                f"the checkpoint has rank-private arrays {names} of {nwriters} ranks and is loaded on {size}: "
                "pass select= naming the arrays this rank wants (another rank's private array 'x' is "
                f"'{PRIVATE}/<rank>/x')"
            )
        want = {n: (n, None) for n in global_names}
        want.update({n: (f"{PRIVATE}/{rank}/{n}", None) for n in mine})
        return want
    if not isinstance(select, Mapping):
        raise InvalidArgumentError(f"select: expected a mapping of names to regions, got {type(select).__name__}")
    want = {}
    gset = set(global_names)
    for name, region in select.items():
        key = "/".join(name) if isinstance(name, tuple) else name
        if not isinstance(key, str):
            raise InvalidArgumentError(f"select: names must be strings, got {name!r}")
        if key in gset:
            want[key] = (key, region)
        elif key in mine:
            want[key] = (f"{PRIVATE}/{rank}/{key}", region)
        elif key.startswith(PRIVATE + "/") and key.split("/", 2)[-1] in private.get(_rank_of(key), []):
            want[key] = (key, region)
        else:
            raise InvalidArgumentError(
                f"select: no array {key!r} in the checkpoint for rank {rank} (global arrays: {sorted(gset)}, "
                f"this rank's private arrays: {sorted(mine)})"
            )
    return want


def _rank_of(key: str) -> int:
    r = key.split("/")[1] if key.count("/") >= 2 else ""
    return int(r) if r.isdigit() else -1


def _load_local(rank: int, size: int, source: Any, select: Any, out: Any) -> dict[str, Any]:
    outs = _flat_out(out)
    with open_checkpoint(source) as reader:
        md = reader.metadata
        if isinstance(md, dict) and _INDEX_KEY in md:
            if not isinstance(source, str | os.PathLike):
                raise InvalidArgumentError("a subfiled checkpoint must be loaded from its path")
            return _load_subfiled(rank, size, Path(os.fspath(source)), md[_INDEX_KEY], select, outs)
        global_names: list[str] = []
        private: dict[int, list[str]] = {}
        for name in reader.names():
            r = _rank_of(name) if name.startswith(PRIVATE + "/") else -1
            if r >= 0:
                private.setdefault(r, []).append(name.split("/", 2)[2])
            else:
                global_names.append(name)
        want = _wanted(select, global_names, private, rank, size)
        unknown = sorted(set(outs) - set(want))
        if unknown:
            raise InvalidArgumentError(f"out: {unknown} are not among the arrays this rank loads")
        res = {name: reader.read(stored, out=outs.get(name), region=region) for name, (stored, region) in want.items()}
    return nest(res)


def _load_subfiled(rank: int, size: int, path: Path, desc: Any, select: Any, outs: dict[str, Any]) -> dict[str, Any]:
    foreign = foreign_subfiles({INDEX_KEY: desc}, None)
    if foreign:
        # The index is read from the file: a name outside the writer's form could point
        # anywhere (``../x``, an absolute path), so nothing it names is opened.
        raise FormatError(
            f"{str(path)!r}: the subfile index lists {foreign[0]!r}, not a subfile name of the form "
            "<name>.<token>.sub<k> in the index's directory"
        )
    try:
        files = [path.parent / str(n) for n in desc["files"]]
        nranks = int(desc["nranks"])
        rank_file = [int(k) for k in desc["rank_file"]]
        private_names = [str(n) for n in desc["private"]]
        glob = {
            "/".join(g["path"]): (
                decode_dtype(g["dtype"]),
                tuple(int(n) for n in g["shape"]),
                [(tuple(b[0]), tuple(b[1]), int(b[2])) for b in g["blocks"]],
            )
            for g in desc["global"]
        }
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise FormatError(f"{str(path)!r}: malformed subfile index ({type(e).__name__}: {e})") from None
    readers: dict[int, Any] = {}

    def reader(k: int) -> Any:
        if k not in readers:
            readers[k] = open_checkpoint(files[k])
        return readers[k]

    try:
        private = dict.fromkeys(range(nranks), private_names) if private_names else {}
        want = _wanted(select, sorted(glob), private, rank, size)
        unknown = sorted(set(outs) - set(want))
        if unknown:
            raise InvalidArgumentError(f"out: {unknown} are not among the arrays this rank loads")
        res: dict[str, Any] = {}
        for name, (stored, region) in want.items():
            if name not in glob:
                res[name] = reader(rank_file[_rank_of(stored)]).read(stored, out=outs.get(name), region=region)
                continue
            dtype, shape, blocks = glob[name]
            box = normalise_region(region if region is not None else (), shape, name)
            rshape = tuple(hi - lo for lo, hi in box)
            dst = outs.get(name)
            if dst is None:
                dst = np.empty(rshape, dtype)
            elif not isinstance(dst, np.ndarray) or dst.dtype != dtype or dst.shape != rshape:
                raise InvalidArgumentError(f"out[{name!r}]: expected dtype {dtype} and shape {rshape}")
            for st, sh, r in blocks:
                inter = [(max(lo, s), min(hi, s + n)) for (lo, hi), s, n in zip(box, st, sh, strict=True)]
                if any(lo >= hi for lo, hi in inter):
                    continue
                local = tuple(slice(lo - s, hi - s) for (lo, hi), s in zip(inter, st, strict=True))
                where = tuple(slice(lo - blo, hi - blo) for (lo, hi), (blo, _) in zip(inter, box, strict=True))
                piece = reader(rank_file[r]).read(f"{_BLOCKS}/{r}/{name}", region=local)
                void = np.dtype((np.void, dtype.itemsize))  # whole items: structured padding bytes too
                dst.view(void)[where] = piece.view(void)
            res[name] = dst
    finally:
        for rd in readers.values():
            rd.close()
    return nest(res)


def load(
    comm: MPI.Intracomm,
    source: str | os.PathLike[str],
    *,
    select: Mapping[str, Any] | None = None,
    out: Mapping[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Read a checkpoint on every rank of ``comm``, each rank reading only what it asks for (collective).

    Parameters
    ----------
    comm
        An mpi4py intracommunicator; its size need not be the writer's.
    source
        Path of a checkpoint written by :func:`save` (one file or a subfile
        index) or by :func:`ndckpt.save` (its arrays count as global arrays).
    select
        None: every global array whole, plus this rank's private arrays
        (then the checkpoint must have been written by as many ranks, if it
        has private arrays). Otherwise a mapping from names to the region
        this rank wants: a tuple of slices (step 1), or None for the whole
        array. Names are global array names, this rank's private array names,
        or ``"ranks/<r>/<name>"`` for rank r's private array. Each rank reads
        only the frames that overlap its regions.
    out
        Optional mapping of names to arrays to fill (dtype and the region's shape).
    timeout
        Seconds the final exchange may wait before the job is aborted.

    Returns
    -------
    dict
        Nested by name, like :func:`ndckpt.load`. Whole RAW arrays that are
        one contiguous run in the file come back as read-only zero-copy views
        of the mapped file; regions of global arrays are new arrays.

    Raises
    ------
    InvalidArgumentError, FormatError, CheckptIOError, CompressionError
        On every rank, when any rank fails (the message names the ranks).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
    rank, size = comm.Get_rank(), comm.Get_size()
    err: BaseException | None = None
    res: dict[str, Any] = {}
    try:
        res = _load_local(rank, size, source, select, out)
    except Exception as e:
        err = e
    _agree(comm, err, float(timeout), "load", "load")
    return res


# ----------------------------------------------------------------------------------------------
# For CheckpointManager(comm=...)
# ----------------------------------------------------------------------------------------------


def agree_save(
    comm: MPI.Intracomm, step: int, preempt: bool, force: bool, timeout: float = DEFAULT_TIMEOUT
) -> tuple[bool, bool]:
    """For ``CheckpointManager.save``: whether any rank has a pending preemption signal, and whether
    any rank forces a save (collective). Raises InvalidArgumentError on every rank when the ranks pass
    different steps.
    """
    mine = np.array([int(preempt), int(force), step, -step], np.int64)
    agg = np.empty_like(mine)
    _wait(comm, comm.Iallreduce(mine, agg, MPI.MAX), timeout, "CheckpointManager.save")
    if agg[2] != -agg[3]:
        raise InvalidArgumentError(
            f"CheckpointManager.save: the ranks passed different steps ({-int(agg[3])} to {int(agg[2])})"
        )
    return bool(agg[0]), bool(agg[1])


class Collective:
    """The coordinator of ``CheckpointManager(comm=...)`` (see ``ndckpt.manager._Coordinator``).

    Every operation is collective: every rank of ``comm`` makes the same calls
    in the same order, and a rank that waits longer than ``timeout`` seconds
    for the others aborts the job (see the module docstring). Constructing one
    makes no MPI call; ``comm`` is used from the first operation on.
    """

    def __init__(self, comm: MPI.Intracomm, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._comm = comm
        self._timeout = timeout

    @property
    def is_root(self) -> bool:
        """True on rank 0 (local: no MPI exchange)."""
        return bool(self._comm.Get_rank() == 0)

    def root_call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` on rank 0 only; its result on every rank, or its error (named by ``what`` elsewhere)."""
        return root_call(self._comm, fn, self._timeout, what)

    def agree_save(self, step: int, preempt: bool, force: bool) -> tuple[bool, bool]:
        """Whether any rank has a pending preemption signal and whether any rank forces (see :func:`agree_save`)."""
        return agree_save(self._comm, step, preempt, force, self._timeout)

    def save(
        self, path: Path, state: Mapping[str, Any], *, style: Any, threads: int, metadata: Mapping[str, Any] | None
    ) -> None:
        """:func:`save` of every rank's share of ``state`` to ``path``: all ranks commit or none does."""
        save(self._comm, path, state, style=style, metadata=metadata, threads=threads, timeout=self._timeout)

    def load(
        self, path: Path, *, out: Any, mmap: object, threads: int, verify: bool | None, select: Any
    ) -> dict[str, Any]:
        """:func:`load` of ``path`` with ``select`` and ``out`` (``mmap``, ``threads`` and ``verify`` are ignored)."""
        return load(self._comm, path, select=select, out=out, timeout=self._timeout)
