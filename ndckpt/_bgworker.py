"""The writer process of an ``async_save="process"`` manager: child side (see :mod:`ndckpt._bgprocess`).

Run as ``python -c "...; from ndckpt._bgworker import main; main()"`` with
the socket's fd in ``NDCKPT_WRITER_FD`` and the parent's pid in
``NDCKPT_WRITER_PARENT``. Serves one job at a time until end of file on the
socket (the parent closed it), then exits 0. It is SIGKILLed when its parent
dies (``PR_SET_PDEATHSIG``), like a writer thread; its checkpoint is then
absent (a temporary file with its dead pid is left), never partial.

Each job maps the arena it names (the fd of a new arena comes with the job),
rebuilds the staged tree from its skeleton, then does what the manager's
thread writer does: trim (first job only), :func:`ndckpt.save`, rotate. The
reply is ``None`` or the exception (a picklable stand-in if it is not).

SIGINT, SIGTERM and SIGUSR1 are ignored here: a Ctrl-C or a scheduler's
preemption signal is the parent's to handle, and the save in progress must
not die of it (SIGKILL still ends the process).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import socket
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from ._bgprocess import ArenaRef, recv_message, send_message
from ._ckptdir import CheckpointDirectory, rotation_victims
from .api import save

__all__ = ["main", "rebuild", "run_job"]


def rebuild(skeleton: Any, arena: mmap.mmap) -> Any:
    """The staged tree of ``skeleton``: each :class:`ArenaRef` as a view of ``arena``."""
    if isinstance(skeleton, dict):
        return {k: rebuild(v, arena) for k, v in skeleton.items()}
    if isinstance(skeleton, ArenaRef):
        return np.ndarray(skeleton.shape, skeleton.dtype, buffer=arena, offset=skeleton.offset, order=skeleton.order)
    return skeleton


def run_job(job: dict[str, Any], arena: mmap.mmap) -> None:
    """Write one job's checkpoint and rotate, as the manager's thread writer would."""
    directory = CheckpointDirectory(Path(job["directory"]))
    keep, keep_every = job["keep"], job["keep_every"]
    if job["trim"] and keep is not None:
        directory.delete(rotation_victims(directory.scan(), keep, keep_every, -1), -1)
    tree = rebuild(job["tree"], arena)
    save(Path(job["path"]), tree, style=job["style"], threads=job["threads"], metadata=job["metadata"])
    if keep is not None:
        step = job["step"]
        directory.delete(rotation_victims(directory.scan(), keep, keep_every, step), step)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its type, message and traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"{type(exc).__name__}: {exc} (in the writer process)\n{text}")


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Be SIGKILLed when the parent dies; exit now if it already has (reparented before the prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the writer still exits at end of file
        pass
    if os.getppid() != parent:
        os._exit(0)


def main() -> None:
    """Serve jobs on the socket ``NDCKPT_WRITER_FD`` until end of file."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    _die_with_parent(int(os.environ.pop("NDCKPT_WRITER_PARENT")))
    sock = socket.socket(fileno=int(os.environ.pop("NDCKPT_WRITER_FD")))
    arena: mmap.mmap | None = None
    ident: int | None = None
    while True:
        try:
            job, fds = recv_message(sock)
        except (EOFError, OSError):
            return
        want, nbytes = job["arena"]
        if fds:
            arena = mmap.mmap(fds[0], nbytes)  # the previous map is freed once its last view is
            ident = want
            for fd in fds:
                os.close(fd)
        reply: BaseException | None = None
        try:
            if arena is None or ident != want:
                raise RuntimeError(f"ndckpt writer process: arena {want} was never sent")
            run_job(job, arena)
        except BaseException as e:  # every failure goes back to the parent, which raises it once
            reply = _picklable(e)
        try:
            send_message(sock, reply)
        except OSError:
            return
