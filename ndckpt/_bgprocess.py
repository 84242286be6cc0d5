"""The writer process of an ``async_save="process"`` :class:`ndckpt.CheckpointManager`: parent side.

A background save written by a thread of the caller's process needs the GIL
for its Python work between the codec's ctypes calls; beside a main loop that
holds the GIL (a simulation stepping in pure Python, or in many small numpy
calls) each of those returns waits for the loop's switch interval, and the
save crawls. The staged state is already a copy, so it can be written by
another process, which has its own GIL:

- the staging arena is an anonymous shared file (``memfd_create``): the parent
  copies the state into it (:mod:`ndckpt._staging`), and the writer maps the
  same pages (the file descriptor goes over a Unix socket once per arena);
- a job is a pickled skeleton of the staged tree, each arena-backed array
  replaced by its place in the arena (:class:`ArenaRef`); the writer
  (:mod:`ndckpt._bgworker`) rebuilds the tree, calls :func:`ndckpt.save` and
  rotates, and replies ``None`` or the error;
- the writer is one ``python -c`` child per manager, started by the
  manager's own thread (:meth:`WriterProcess.ensure_started`: at
  construction, and again by a save after the writer died or the manager
  was closed), so the user's ``__main__`` is never re-imported and no
  threaded process is forked; its startup (about half a second: importing
  numpy and ndckpt) is paid once per manager, beside the caller.

Crash safety is :func:`ndckpt.save`'s: a temporary file renamed into place
after fsync. The writer dies with its parent (``PR_SET_PDEATHSIG``), as a
writer thread would: a SIGKILL of either leaves at most the writer's
temporary file (removed later as stale: its pid is dead) and the previous
checkpoint the latest; the parent raises :class:`WriterDiedError` for a
save whose writer died.

Linux only (:func:`available`). Stdlib and numpy only; the socket protocol is
private to this module and :mod:`ndckpt._bgworker` (length-prefixed pickles).
"""

from __future__ import annotations

import errno
import mmap
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import CheckptIOError

__all__ = ["ArenaRef", "WriterDiedError", "WriterProcess", "available", "recv_message", "send_message"]

_HEADER = struct.Struct("<Q")


def available() -> bool:
    """True where a writer process can be used (anonymous shared files and fd passing: Linux)."""
    return hasattr(os, "memfd_create") and hasattr(socket, "send_fds") and sys.platform.startswith("linux")


class WriterDiedError(CheckptIOError):
    """The writer process of a background save ended before it answered (the save did not complete)."""


@dataclass(frozen=True)
class ArenaRef:
    """An array of the staged tree, by its place in the arena: what the writer maps back."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: Literal["C", "F"]
    offset: int


def send_message(sock: socket.socket, obj: Any, fds: list[int] | None = None) -> None:
    """Send ``obj`` pickled, with ``fds`` (passed with its first bytes). OSError if the peer is gone."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = _HEADER.pack(len(payload)) + payload
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def recv_message(sock: socket.socket) -> tuple[Any, list[int]]:
    """Receive one message of :func:`send_message`: the object and the fds that came with it.

    EOFError if the peer closed the socket (or died) before a whole message came.
    """
    head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 4)
    while len(head) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(head))
        if not more:
            raise EOFError("peer closed the socket")
        head += more
    (n,) = _HEADER.unpack(head)
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("peer closed the socket")
        got += k
    return pickle.loads(buf), list(fds)


class _Arena:
    """One anonymous shared file, mapped here; its fd is kept until the writer has it."""

    def __init__(self, nbytes: int, ident: int) -> None:
        self.ident = ident
        self.fd: int | None = os.memfd_create(f"ndckpt-staging-{ident}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, nbytes)
            self.map = mmap.mmap(self.fd, nbytes)
        except BaseException:
            os.close(self.fd)
            raise
        self.array: np.ndarray[Any, np.dtype[np.uint8]] = np.frombuffer(self.map, np.uint8)
        self.base = int(self.array.ctypes.data)
        self.nbytes = nbytes

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _worker_command() -> list[str]:
    """The writer's command line: this interpreter, with this ndckpt first on ``sys.path``."""
    root = str(Path(__file__).resolve().parents[1])
    code = f"import sys; sys.path.insert(0, {root!r}); from ndckpt._bgworker import main; main()"
    return [sys.executable, "-c", code]


class WriterProcess:
    """The writer child of one manager, and the shared arenas the manager stages into.

    Not thread-safe, with one exception: :meth:`run` is called by the
    manager's writer thread while the manager's thread is idle or staging
    (never both run at once: the manager waits for the save in flight before
    it stages again). :meth:`allocate` is the staging arena's allocator.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._arena: _Arena | None = None
        self._sent_arena: int | None = None  # the arena the current child has mapped
        self._next_ident = 0

    @property
    def pid(self) -> int | None:
        """The writer's process id (None while none runs)."""
        return None if self._proc is None else self._proc.pid

    def allocate(self, nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """A new page-aligned uint8 array of ``nbytes`` in a new shared arena (replacing the previous one).

        The previous arena's memory is freed once its arrays are gone here and
        the writer has mapped the new one. OSError if the system refuses it.
        """
        old, self._arena = self._arena, None
        if old is not None:
            old.close_fd()
        self._next_ident += 1
        self._arena = _Arena(max(nbytes, 1), self._next_ident)
        return self._arena.array[:nbytes]

    def skeleton(self, tree: Any) -> Any:
        """``tree`` (nested dicts of staged leaves) with every arena-backed array replaced by its ArenaRef."""
        if isinstance(tree, dict):
            return {k: self.skeleton(v) for k, v in tree.items()}
        arena = self._arena
        if isinstance(tree, np.ndarray) and arena is not None and tree.nbytes > 0:
            addr = int(tree.ctypes.data)
            if arena.base <= addr < arena.base + arena.nbytes:
                order: Literal["C", "F"] = "C" if tree.flags.c_contiguous else "F"
                return ArenaRef(tree.dtype, tuple(int(n) for n in tree.shape), order, addr - arena.base)
        return tree

    def ensure_started(self) -> None:
        """Start the writer unless one runs (reaping one that died idle: nothing was lost then).

        Call from the manager's thread (the writer dies with the thread that
        started it). OSError if the process cannot be started.
        """
        if self._proc is not None and self._proc.poll() is not None:
            self._died(-1)  # reap it and close its socket
        if self._proc is None:
            self._start()

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = dict(os.environ, NDCKPT_WRITER_FD=str(child.fileno()), NDCKPT_WRITER_PARENT=str(os.getpid()))
            self._proc = subprocess.Popen(
                _worker_command(), pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=env, close_fds=True
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._sock = parent
        self._sent_arena = None

    def _died(self, step: int) -> WriterDiedError:
        """The error for a writer gone mid-save (its process reaped; the next job starts a new one)."""
        proc, self._proc = self._proc, None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        how = "ended"
        if proc is not None:
            try:
                rc = proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            if rc < 0:
                try:
                    how = f"was killed by {signal.Signals(-rc).name}"
                except ValueError:
                    how = f"was killed by signal {-rc}"
            else:
                how = f"exited with status {rc}"
        pid = "?" if proc is None else proc.pid
        return WriterDiedError(
            errno.EPIPE,
            f"the background writer process (pid {pid}) {how} before it finished the save of step {step}; "
            "that checkpoint was not written and the previous one stays the latest",
        )

    def run(self, step: int, job: dict[str, Any]) -> None:
        """Have the writer save ``job`` (the manager's fields plus ``tree``, a :meth:`skeleton`); block until done.

        Precondition: :meth:`ensure_started` was called since the last
        :meth:`shutdown`. Raises the save's own error as the writer raised it,
        or :class:`WriterDiedError` if the writer died before it answered (the
        next :meth:`ensure_started` starts a new one).
        """
        if self._proc is None:
            raise self._died(step)
        arena = self._arena
        assert self._sock is not None
        assert arena is not None
        fds: list[int] = []
        if self._sent_arena != arena.ident:
            assert arena.fd is not None
            fds = [arena.fd]
        msg = dict(job, arena=(arena.ident, arena.nbytes))
        try:
            send_message(self._sock, msg, fds)
            reply, _ = recv_message(self._sock)
        except (OSError, EOFError):
            raise self._died(step) from None
        self._sent_arena = arena.ident
        if reply is not None:
            raise reply

    def __del__(self) -> None:
        # Unreachable means idle (a save in flight holds this object): the writer exits at end of file.
        try:
            self.shutdown()
        except Exception:  # interpreter teardown: nothing left to report to
            pass

    def shutdown(self) -> None:
        """Stop the writer (it finishes nothing: call only with no save in flight) and free the arena."""
        proc, sock = self._proc, self._sock
        self._proc = self._sock = None
        if sock is not None:
            sock.close()  # the writer exits at end of file
        if proc is not None:
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._arena is not None:
            self._arena.close_fd()
            self._arena = None
        self._sent_arena = None
