"""The background writer of an asynchronous :class:`ndckpt.CheckpointManager`, and its exit hooks.

Each manager with ``async_save=True`` owns one :class:`BackgroundWriter`: two
threads (the writer, and a helper for the staging copy: never busy at once)
and at most one save in flight. An error of that save is kept until it is
collected (:meth:`BackgroundWriter.wait`, :meth:`BackgroundWriter.raise_finished`),
and raised exactly once.

At interpreter exit every writer's save in flight is finished before thread
pools refuse work, and an error that nobody collected is printed to stderr
(:func:`register_exit_hooks`). Importing this module registers nothing.

Stdlib only.
"""

from __future__ import annotations

import atexit
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackgroundWriter", "InFlight", "register_exit_hooks"]


@dataclass
class InFlight:
    """The save a writer has started: its future, and the step and file it writes (for messages)."""

    future: Future[None]
    step: int
    path: Path


_WRITERS: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()


class BackgroundWriter:
    """One writer thread (plus a helper), at most one save in flight, its error raised once.

    Not thread-safe: one thread (the manager's caller) submits, waits and
    closes. Threads are started on first use and stopped by :meth:`shutdown`;
    the writer stays usable after it (a later use starts new threads).
    """

    def __init__(self) -> None:
        self.inflight: InFlight | None = None
        self._pool: ThreadPoolExecutor | None = None
        _WRITERS.add(self)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ndckpt-manager")
        return self._pool

    def start_helper(self, task: Callable[[], None]) -> Future[None]:
        """Run ``task`` on the writer's second thread (only while no save is in flight: it is then idle)."""
        return self._executor().submit(task)

    def submit(self, step: int, path: Path, write: Callable[[], None]) -> None:
        """Start ``write()`` in the background as the save of ``step`` to ``path``.

        Precondition: nothing is in flight (call :meth:`wait` first). Registers
        the exit hooks first (:func:`register_exit_hooks`). RuntimeError if the
        interpreter is shutting down (no thread pool accepts work then).
        """
        assert self.inflight is None
        register_exit_hooks()  # before a save can be in flight
        self.inflight = InFlight(self._executor().submit(write), step, path)

    def raise_finished(self) -> None:
        """Raise the error of a save in flight that has finished (it is then collected); never blocks."""
        inflight = self.inflight
        if inflight is not None and inflight.future.done():
            self._collect(inflight)

    def wait(self) -> None:
        """Block until the save in flight (if any) is done; raise its error, with a note naming the step."""
        inflight = self.inflight
        if inflight is not None:
            self._collect(inflight)

    def _collect(self, inflight: InFlight) -> None:
        exc = inflight.future.exception()  # blocks until the save is done
        self.inflight = None
        if exc is not None:
            exc.add_note(f"(background save of step {inflight.step} to {str(inflight.path)!r})")
            raise exc

    def shutdown(self) -> None:
        """Stop the threads, after the work they have (call :meth:`wait` first to collect its error)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _report_unwaited() -> None:
    """At exit: print errors of background saves that nobody waited for (never lose them)."""
    for writer in list(_WRITERS):
        inflight = writer.inflight
        if inflight is None or not inflight.future.done() or inflight.future.cancelled():
            continue
        exc = inflight.future.exception()
        if exc is not None:
            print(
                f"ndckpt: the background save of step {inflight.step} to {str(inflight.path)!r} failed "
                "and was never waited for:",
                file=sys.stderr,
            )
            traceback.print_exception(exc, file=sys.stderr)


def _finish_in_flight() -> None:
    """At exit, before thread pools refuse work: let every save in flight finish writing."""
    for writer in list(_WRITERS):
        inflight = writer.inflight
        if inflight is not None:
            futures_wait([inflight.future])


_exit_hooks_lock = threading.Lock()
_exit_hooks_registered = False


def register_exit_hooks() -> None:
    """Register :func:`_finish_in_flight` and :func:`_report_unwaited` for interpreter exit, once per process.

    Called before a background save is submitted (the only way a save can be
    in flight), so importing ndckpt registers nothing. Contract on ordering:
    at interpreter exit, threading calls its own exit hooks (concurrent.futures'
    among them: from then on, no pool accepts work, and ndckpt.save uses pools)
    before it joins threads and before atexit callbacks run; its hooks run
    last-registered first. concurrent.futures registers its hook when
    ``concurrent.futures.thread`` is imported, which this module's import of
    ThreadPoolExecutor does, so any registration made here comes after it and
    the saves in flight are finished before pools refuse work; their errors are
    then reported from atexit. ``threading._register_atexit`` is what
    concurrent.futures itself uses (Python >= 3.9).

    Once the interpreter is shutting down, threading refuses new hooks
    (RuntimeError); that is swallowed and registration is retried by the next
    background save, whose submission to the writer pool is refused then too.
    """
    global _exit_hooks_registered
    with _exit_hooks_lock:
        if _exit_hooks_registered:
            return
        register_threading_atexit = getattr(threading, "_register_atexit", None)
        if register_threading_atexit is not None:
            try:
                register_threading_atexit(_finish_in_flight)
            except RuntimeError:  # "can't register atexit after shutdown"
                return
        atexit.register(_report_unwaited)
        _exit_hooks_registered = True
