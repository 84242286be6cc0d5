"""Exchanges between the ranks of ``ndckpt.mpi``, and how errors are agreed on.

Every exchange is a nonblocking collective waited for at most ``timeout`` seconds; a rank that
waits longer prints why and calls ``MPI_Abort`` (:func:`abort`): an MPI job cannot go on once a
rank has left a collective. Errors travel between ranks as ``(class name, message)`` pairs
(:data:`Err`) and are raised on every rank as one error naming the ranks (:func:`raise_agreed`).
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import numpy as np
from mpi4py import MPI

from ..errors import (
    CheckptError,
    CheckptIOError,
    CompressionError,
    FormatError,
    InvalidArgumentError,
    UnsupportedError,
)

__all__ = [
    "ABORT_CODE",
    "DEFAULT_TIMEOUT",
    "ERRORS",
    "POLL_MAX",
    "Err",
    "abort",
    "agree",
    "agree_save",
    "allgather",
    "bcast",
    "check_timeout",
    "errs_of",
    "raise_agreed",
    "root_call",
    "to_err",
    "wait",
]

#: Seconds any exchange between ranks may wait before the job is aborted.
DEFAULT_TIMEOUT = 600.0
#: Exit code passed to MPI_Abort when an exchange times out.
ABORT_CODE = 75
#: Longest sleep between two polls of an exchange. A nonblocking collective only progresses
#: while its ranks poll it, so this bounds the latency each exchange adds to a save (a save
#: has several; ``benchmarks/bench_mpi.py`` times whole saves against plain MPI-IO).
POLL_MAX = 5e-4

T = TypeVar("T")
Err = tuple[str, str]  # (error class name, message) as sent between ranks
#: The error classes an Err may name; any other name is raised as CheckptError.
ERRORS: dict[str, type[CheckptError]] = {
    c.__name__: c
    for c in (CheckptError, InvalidArgumentError, UnsupportedError, CheckptIOError, CompressionError, FormatError)
}


def check_timeout(timeout: Any) -> float:
    """``timeout`` as float seconds; InvalidArgumentError unless it is a positive number (local: no exchange)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def abort(comm: MPI.Intracomm, what: str, timeout: float) -> NoReturn:
    """Say on stderr which exchange (``what``) timed out, then end the whole job (MPI_Abort)."""
    sys.stderr.write(
        f"ndckpt.mpi: rank {comm.Get_rank()}: {what}: not every rank answered within {timeout:g} s "
        "(a rank died, hangs, or did not make this call); aborting the MPI job\n"
    )
    sys.stderr.flush()
    time.sleep(0.5)  # let the launcher forward the message before it tears the job down
    MPI.COMM_WORLD.Abort(ABORT_CODE)  # the whole job: a rank stuck in a collective cannot be freed


def wait(comm: MPI.Intracomm, req: MPI.Request, timeout: float, what: str) -> None:
    """Complete ``req``, polling with growing sleeps (cheap for ranks oversubscribing cores)."""
    if req.Test():
        return
    deadline = time.monotonic() + timeout
    pause = 2e-5
    while not req.Test():
        if time.monotonic() > deadline:
            abort(comm, what, timeout)
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX)


def allgather(comm: MPI.Intracomm, obj: Any, timeout: float, what: str) -> list[Any]:
    """Every rank's ``obj`` (pickled: ranks of one job trust each other), in rank order."""
    data = np.frombuffer(pickle.dumps(obj, protocol=5), np.uint8)
    sizes = np.zeros(comm.Get_size(), np.int64)
    wait(comm, comm.Iallgather(np.array([data.size], np.int64), sizes), timeout, what)
    counts = [int(n) for n in sizes]
    displs = [0, *np.cumsum(counts)[:-1].tolist()]
    recv = np.empty(max(sum(counts), 1), np.uint8)
    wait(comm, comm.Iallgatherv(data, [recv, counts, displs, MPI.BYTE]), timeout, what)
    return [pickle.loads(recv[d : d + n].tobytes()) for d, n in zip(displs, counts, strict=True)]


def bcast(comm: MPI.Intracomm, obj: Any, root: int, timeout: float, what: str) -> Any:
    """``obj`` of rank ``root`` on every rank."""
    mine = comm.Get_rank() == root
    data = np.frombuffer(pickle.dumps(obj, protocol=5), np.uint8) if mine else np.empty(0, np.uint8)
    n = np.array([data.size], np.int64)
    wait(comm, comm.Ibcast(n, root), timeout, what)
    buf = data if mine else np.empty(int(n[0]), np.uint8)
    wait(comm, comm.Ibcast(buf, root), timeout, what)
    return obj if mine else pickle.loads(buf.tobytes())


def to_err(e: BaseException) -> Err:
    if isinstance(e, CheckptError):
        return type(e).__name__, str(e)
    if isinstance(e, MPI.Exception):
        return "CheckptIOError", f"MPI error: {e.Get_error_string()}"
    if isinstance(e, OSError):
        return "CheckptIOError", str(e)
    return "CheckptError", f"{type(e).__name__}: {e}"


def raise_agreed(errs: list[tuple[int, Err]], local: BaseException | None, op: str) -> NoReturn:
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
    cls = ERRORS.get(errs[0][1][0], CheckptError)
    tail = "; nothing was committed" if op == "save" else ""
    exc = cls(f"ndckpt.mpi.{op}: {shown}{more}{tail}")
    exc.mpi_errors = errs  # type: ignore[attr-defined]
    raise exc from local


def errs_of(e: BaseException, rank: int) -> list[tuple[int, Err]]:
    """The per-rank errors behind ``e`` (an agreed error), or ``e`` itself as this rank's error."""
    inner = getattr(e, "mpi_errors", None)
    return list(inner) if inner else [(rank, to_err(e))]


def agree(comm: MPI.Intracomm, local: BaseException | None, timeout: float, what: str, op: str) -> None:
    """Exchange every rank's error (or None); raise the same error on every rank if any failed."""
    got = allgather(comm, None if local is None else to_err(local), timeout, what)
    errs = [(r, e) for r, e in enumerate(got) if e is not None]
    if errs:
        raise_agreed(errs, local, op)


def root_call(comm: MPI.Intracomm, fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` on rank 0 only and return its result (or raise its error) on every rank."""
    if comm.Get_rank() == 0:
        try:
            res: tuple[str, Any] = ("ok", fn())
        except Exception as e:
            bcast(comm, ("err", to_err(e)), 0, timeout, what)
            raise
        return bcast(comm, res, 0, timeout, what)[1]  # type: ignore[no-any-return]
    kind, val = bcast(comm, None, 0, timeout, what)
    if kind == "err":
        exc = ERRORS.get(val[0], CheckptError)(f"{what}: rank 0: {val[1]}")
        exc.mpi_errors = [(0, tuple(val))]  # type: ignore[attr-defined]
        raise exc
    return val  # type: ignore[no-any-return]


def agree_save(
    comm: MPI.Intracomm, step: int, preempt: bool, force: bool, timeout: float = DEFAULT_TIMEOUT
) -> tuple[bool, bool]:
    """For ``CheckpointManager.save``: whether any rank has a pending preemption signal, and whether
    any rank forces a save (collective). Raises InvalidArgumentError on every rank when the ranks pass
    different steps.
    """
    mine = np.array([int(preempt), int(force), step, -step], np.int64)
    agg = np.empty_like(mine)
    wait(comm, comm.Iallreduce(mine, agg, MPI.MAX), timeout, "CheckpointManager.save")
    if agg[2] != -agg[3]:
        raise InvalidArgumentError(
            f"CheckpointManager.save: the ranks passed different steps ({-int(agg[3])} to {int(agg[2])})"
        )
    return bool(agg[0]), bool(agg[1])
