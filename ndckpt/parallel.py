"""Parallelism across frames, and the reusable scratch memory that goes with it.

Frames are the unit of work: each task owns whole frames, never single 64 KiB
chunks, so the executor's cost per task is paid once per frame, not once per
chunk (``benchmarks/bench_micro.py --case tasks``). The LZ4 and XXH64 calls
release the GIL, so threads scale. Pools are created per
call and shut down before the call returns: no thread outlives a call, no
global pool exists, and nothing breaks across ``os.fork()``.

Scratch buffers (a frame gathered from several arrays, compressed output, a
frame read to be decoded or hashed) are page-aligned and kept in a small
process-wide free list, :class:`ScratchPool`, because the first touch of fresh
pages (a page fault each) can cost more than the copy into them
(``benchmarks/bench_micro.py --case first_touch``). The list is bounded
(``SCRATCH_KEEP`` bytes) and its lock is re-made in a forked child. (This is not
the manager's *staging* copy of an asynchronous save: :mod:`ndckpt._staging`.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import numpy as np

from . import _platform
from ._memory import aligned_empty
from .errors import InvalidArgumentError

__all__ = ["ScratchPool", "aligned_empty", "resolve_threads", "run_all"]

T = TypeVar("T")
R = TypeVar("R")

#: Bytes of free scratch buffers kept for reuse across calls.
SCRATCH_KEEP = 128 << 20


def resolve_threads(threads: int | None) -> int:
    """``None`` -> the cores this process may use; otherwise a positive int (validated)."""
    if threads is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidArgumentError(f"threads must be None or a positive int, got {threads!r}")
    return threads


class ScratchPool:
    """Process-wide free list of page-aligned byte buffers, reused across calls (thread-safe).

    A buffer from :meth:`get` is the caller's alone until it gives it back with
    :meth:`put` (or drops it); its content is undefined when handed out.
    """

    _lock = threading.Lock()
    _free: dict[int, list[np.ndarray[Any, np.dtype[np.uint8]]]] = {}  # noqa: RUF012
    _kept = 0

    @classmethod
    def get(cls, nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """A buffer of exactly ``nbytes`` (reused when one is free)."""
        with cls._lock:
            lst = cls._free.get(nbytes)
            if lst:
                cls._kept -= nbytes
                return lst.pop()
        return aligned_empty(nbytes)

    @classmethod
    def put(cls, buf: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        """Return a buffer from :meth:`get`; dropped when the free list is full."""
        with cls._lock:
            if cls._kept + buf.nbytes <= SCRATCH_KEEP:
                cls._free.setdefault(buf.nbytes, []).append(buf)
                cls._kept += buf.nbytes

    @classmethod
    def _after_fork(cls) -> None:
        cls._lock = threading.Lock()


_platform.at_fork_in_child(ScratchPool._after_fork)


def run_all(fn: Callable[[T], None], items: list[T], threads: int) -> None:
    """Run ``fn`` on every item, ``threads`` at a time; raise the first exception after all stop."""
    if threads <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="ndckpt") as ex:
        futs = [ex.submit(fn, item) for item in items]
        _, not_done = wait(futs, return_when=FIRST_EXCEPTION)
        for f in not_done:
            f.cancel()
        wait(not_done)
        for f in futs:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]


ProgressCallback = Callable[[int, int], None]

#: Fewest bytes between two progress reports inside one frame: a report comes at least every
#: ``max(PROGRESS_STEP, total // 100)`` bytes (per frame when frames are smaller than that).
PROGRESS_STEP = 16 << 20


class Progress:
    """Thread-safe progress reporting: calls ``callback(done, total)`` in bytes, serialised.

    ``total`` counts uncompressed bytes of the frames the call processes. The
    callback runs in whichever thread finished a piece of work, under a lock;
    it must be quick and must not call back into ndckpt. An exception it raises
    aborts the operation and propagates. Work longer than :attr:`step` bytes
    (a large RAW frame) is reported in pieces of at most :attr:`step` bytes.
    """

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(f"progress must be callable(done, total) or None, got {callback!r}")
        self._cb, self.total, self.done = callback, total, 0
        #: Largest number of bytes between two reports (0 without a callback: nothing to split).
        self.step = max(PROGRESS_STEP, total // 100) if callback is not None else 0
        self._lock = threading.Lock()
        if callback is not None:
            callback(0, total)

    def advance(self, n: int) -> None:
        if self._cb is None:
            return
        with self._lock:
            self.done += n
            self._cb(self.done, self.total)

    def pieces(self, nbytes: int) -> range:
        """Offsets at which to cut ``nbytes`` of work into reported pieces of at most :attr:`step`."""
        return range(0, nbytes, self.step if 0 < self.step < nbytes else max(nbytes, 1))


def progress_phase(callback: ProgressCallback | None, phase: str) -> None:
    """Tell a progress callback that a new phase begins, if it has a ``phase`` method.

    ``save`` to a path with ``durable=True`` calls ``callback.phase("fsync")``
    in the calling thread after the last ``callback(total, total)``, when the
    fsyncs of the file and its directory begin. Callbacks without a callable
    ``phase`` attribute (plain functions) are not called. An exception raised
    by ``phase`` aborts the save like one raised by the callback.
    """
    hook = getattr(callback, "phase", None) if callback is not None else None
    if callable(hook):
        hook(phase)
