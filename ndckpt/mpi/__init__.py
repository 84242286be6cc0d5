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

The package's modules, lowest first: ``_exchange`` (exchanges between ranks and agreed
errors), ``_inputs`` (Blocks, each rank's description and the agreement checks),
``_planning`` (the plan of one file, the same on every rank), ``_writing`` (writing and
committing files through :mod:`ndckpt.container.write`) and ``_loading`` (what one rank
reads); this module holds the public API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

try:
    from mpi4py import MPI
except (ImportError, RuntimeError) as _e:  # no mpi4py, or no MPI library it can load
    raise ImportError(
        "ndckpt.mpi needs mpi4py and an MPI library; install them from an ndckpt checkout with: "
        f"pip install -e '.[mpi]' ({_e})"
    ) from _e

from ..container.plan import StoredBytes
from ..errors import InvalidArgumentError
from ..parallel import resolve_threads
from ._exchange import ABORT_CODE as ABORT_CODE  # (re-exported: also importable from here, as before)
from ._exchange import DEFAULT_TIMEOUT, agree, allgather, check_timeout, raise_agreed, to_err
from ._exchange import agree_save as agree_save
from ._exchange import root_call as root_call
from ._inputs import PRIVATE, Block, RankInfo, check_agreement, describe
from ._loading import load_local
from ._loading import nest as nest
from ._writing import save_shared, save_subfiled

__all__ = ["DEFAULT_TIMEOUT", "PRIVATE", "Block", "load", "save"]

T = TypeVar("T")


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
        As in :func:`ndckpt.save`: ``"raw"``, ``"lz4"``, ``"lz4+shuffle"``,
        ``"lz4+delta"``, ``"auto"``, a FrameStyle or a mapping from names to
        styles (the same on every rank). An ``"auto"`` frame is decided by the
        rank that holds its bytes, and the decisions are exchanged before the
        head is written, so every rank writes the same head.
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
    rank = comm.Get_rank()
    timeout = check_timeout(timeout)
    err: BaseException | None = None
    info: RankInfo | None = None
    array_bytes: list[StoredBytes] = []
    th = 1
    try:
        th = resolve_threads(threads)
        info, array_bytes = describe(rank, target, arrays, style, metadata, subfiles)
    except Exception as e:
        err = e
    got = allgather(comm, ("err", to_err(err)) if err is not None else ("ok", info), timeout, "save: describe")
    errs = [(r, v) for r, (k, v) in enumerate(got) if k == "err"]
    if errs:
        raise_agreed(errs, err, "save")
    infos: list[RankInfo] = [v for _, v in got]
    try:
        check_agreement(infos)  # the same outcome on every rank
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"ndckpt.mpi.save: {e}; nothing was committed") from None
    path = Path(infos[0].target)
    (save_subfiled if infos[0].subfiles else save_shared)(comm, infos, array_bytes, path, th, timeout)


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
    seconds = check_timeout(timeout)
    rank, size = comm.Get_rank(), comm.Get_size()
    err: BaseException | None = None
    res: dict[str, Any] = {}
    try:
        res = load_local(rank, size, source, select, out)
    except Exception as e:
        err = e
    agree(comm, err, seconds, "load", "load")
    return res


# ----------------------------------------------------------------------------------------------
# For CheckpointManager(comm=...)
# ----------------------------------------------------------------------------------------------


class Collective:
    """The coordinator of ``CheckpointManager(comm=...)`` (see ``ndckpt._coordination.Coordinator``).

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
