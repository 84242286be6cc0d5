"""CheckpointManager: periodic, rotating, crash-safe checkpoints of a running simulation.

Concepts
--------
Directory
    One manager owns one directory. Checkpoint ``step`` is the ndckpt file
    ``ckpt-{step:012d}.ndckpt`` (zero-padded, so name order is step order);
    the manager ignores every other name. Files are written by
    :func:`ndckpt.save` to a path, i.e. to a temporary file that is fsynced
    and renamed into place: a checkpoint name only ever points at a complete
    file. :meth:`CheckpointManager.steps` also checks each file's superblock
    and trailer once (cached by inode, size and mtime), so a file truncated
    by some other means never shows up.
Schedule
    :meth:`~CheckpointManager.save` writes when ``step % every == 0``, when
    ``force=True``, or when a preemption signal is pending (one arrived and
    no save has been written since); otherwise it returns False at once, so
    a loop can call it every step.
Rotation
    After a checkpoint is complete, older ones are deleted so that the newest
    ``keep`` remain, plus every checkpoint whose step is a multiple of
    ``keep_every``. The checkpoint just written is never deleted by its own
    rotation. Nothing is deleted before a newer checkpoint is complete, with
    one exception: the first save of a manager first removes checkpoints
    beyond ``keep`` that a run killed between a save and its rotation left,
    so that at most ``keep`` + 1 rotated checkpoints exist at any moment.
Asynchronous saves
    With ``async_save=True``, ``save`` copies the state into staging memory
    (page-aligned, allocated once, reused while the state's layout fits, and
    freed by :meth:`~CheckpointManager.close`) and returns; one background
    thread writes the staged copy. The caller may modify its arrays as soon
    as ``save`` returns. At most one save is in flight: a save that comes
    while one is in flight first waits for it.
Errors
    An error of a background save is raised by :meth:`~CheckpointManager.wait`
    or by the next :meth:`~CheckpointManager.save` call (whichever comes
    first; each error is raised once). An error nobody waited for is printed
    to stderr at interpreter exit. A failed save leaves no file behind and
    the previous checkpoint stays the latest.
Preemption
    :meth:`~CheckpointManager.install_signal_handlers` makes SIGTERM and
    SIGUSR1 (by default) only count the signal: the next ``save`` writes
    whatever ``every`` says (synchronously, even with ``async_save=True``);
    once it is written, :attr:`~CheckpointManager.preempted` is True, so the
    loop ``save(step, state); if mgr.preempted: break`` exits with a final
    checkpoint before a batch scheduler kills the job.

IMPORTANT SAFETY TIP! A manager is not thread-safe: call it from one thread.
Point one manager (one process) at a directory: stale temporary files of dead
writers are removed at construction, judged by the process id in their name,
and only for names that carry this host's tag (a pid only means something on
the host, and in the pid namespace, that wrote it).
"""

from __future__ import annotations

import atexit
import errno
import operator
import os
import re
import signal
import stat
import sys
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol, TypeVar, Union

import numpy as np

from . import _files, _platform
from ._memory import aligned_empty
from .api import MmapMode, check_mmap, load, save
from .api import open as open_checkpoint
from .container import MAGIC, SUPERBLOCK, TRAILER
from .container.layout import looks_complete
from .container.plan import as_array, bytes_of, check_metadata, flatten_tree, parse_style_arg, resolve_styles
from .container.values import decode as _decode_value
from .container.values import encode as _encode_value
from .container.values import is_value as _is_value
from .errors import CheckptIOError, InvalidArgumentError, UnsupportedError
from .parallel import resolve_threads

__all__ = ["CheckpointManager", "CorruptCheckpointWarning"]

PathLike = Union[str, "os.PathLike[str]"]

#: Checkpoint file names: ``ckpt-`` + the step, zero-padded to 12 digits (more if needed).
_NAME_RE = re.compile(r"ckpt-([0-9]{12,})\.ndckpt")
#: A staged array of at least this many bytes starts on a page boundary of the staging
#: arena; a smaller one starts on a ``_SMALL_ALIGN``-byte boundary. Alignment never changes
#: what is written, only where the staged copy lives.
_PAGE_ALIGN_MIN = 4096
_SMALL_ALIGN = 64
#: An asynchronous save of a state with fewer array bytes than this is copied into staging by
#: the calling thread alone; a larger one is split between it and the manager's helper thread
#: (when ``threads >= 2``).
_PARALLEL_COPY_MIN = 8 << 20


class CorruptCheckpointWarning(RuntimeWarning):
    """:meth:`CheckpointManager.restore` skipped an unreadable checkpoint and fell back to an older one."""


def _name(step: int) -> str:
    return f"ckpt-{step:012d}.ndckpt"


def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise InvalidArgumentError(f"step must be a non-negative int, got {step!r}")
    try:
        s = operator.index(step)
    except TypeError:
        raise InvalidArgumentError(f"step must be a non-negative int, got {step!r}") from None
    if s < 0:
        raise InvalidArgumentError(f"step must be a non-negative int, got {s}")
    return s


def _check_positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{what} must be a positive int, got {value!r}")
    return value


def _check_optional_positive(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{what} must be None or a positive int, got {value!r}")
    return value


def _looks_complete(path: str, size: int) -> bool:
    """Whether the file at ``path`` of ``size`` bytes looks completely written
    (:func:`ndckpt.container.layout.looks_complete`); False if it cannot be read."""
    if size < SUPERBLOCK.size + TRAILER.size:
        return False
    try:
        fd = os.open(path, _platform.open_flags(os.O_RDONLY))
    except OSError:
        return False
    try:
        start = _platform.pread(fd, len(MAGIC), 0)
        tail = _platform.pread(fd, TRAILER.size, size - TRAILER.size)
    except OSError:
        return False
    finally:
        os.close(fd)
    return looks_complete(start, tail, size)


# ----------------------------------------------------------------------------------------------
# Staging: the reusable copy of the state that a background save writes
# ----------------------------------------------------------------------------------------------

_Order = Literal["C", "F"]
_Spec = tuple[np.dtype[Any], tuple[int, ...], _Order]  # dtype, shape, storage order


class _Staging:
    """Page-aligned memory for one in-flight save, reused across saves.

    The arena is reallocated only when a state needs more bytes than it
    holds; array views are rebuilt only when the layout (dtypes, shapes,
    orders) changes. Memory is therefore bounded by the largest state saved.
    """

    def __init__(self) -> None:
        self.arena: np.ndarray[Any, np.dtype[np.uint8]] | None = None
        self._key: tuple[_Spec, ...] | None = None
        self._views: list[np.ndarray[Any, Any]] = []
        self.allocations = 0  # arenas allocated so far (tests check reuse)

    @property
    def nbytes(self) -> int:
        return 0 if self.arena is None else int(self.arena.nbytes)

    def views(self, specs: list[_Spec]) -> list[np.ndarray[Any, Any]]:
        key = tuple(specs)
        if key == self._key:
            return self._views
        offsets: list[int] = []
        pos = 0
        for dtype, shape, _ in specs:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            align = _PAGE_ALIGN_MIN if nbytes >= _PAGE_ALIGN_MIN else _SMALL_ALIGN
            off = -(-pos // align) * align
            offsets.append(off)
            pos = off + nbytes
        if self.arena is None or self.arena.nbytes < pos:
            self.arena = None  # let the old arena go before the new one is touched
            self._key, self._views = None, []
            self.arena = aligned_empty(max(pos, 1))
            self.allocations += 1
        views: list[np.ndarray[Any, Any]] = []
        for (dtype, shape, order), off in zip(specs, offsets, strict=True):
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize == 0:
                views.append(np.empty(shape, dtype, order=order))
            else:
                views.append(np.ndarray(shape, dtype, buffer=self.arena, offset=off, order=order))
        self._key, self._views = key, views
        return views

    def release(self) -> None:
        self.arena, self._key, self._views = None, None, []


def _order_of(a: np.ndarray[Any, Any]) -> _Order:
    """The order ``ndckpt.save`` stores ``a`` in: C if C-contiguous, else F if F-contiguous, else C."""
    if a.flags.c_contiguous:
        return "C"
    return "F" if a.flags.f_contiguous else "C"


_Piece = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]  # (dst, src), copied with np.copyto


def _copy_pieces(
    pairs: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], _Order]], nparts: int
) -> list[list[_Piece]]:
    """Split the copies of ``(staged, source, order)`` into ``nparts`` lists of about equal bytes.

    Contiguous sources are copied as flat bytes (whole items, padding included,
    exactly as ``ndckpt.save`` writes them) and may be cut at page multiples;
    non-contiguous ones are copied item by item as opaque bytes, whole, in part 0.
    """
    parts: list[list[_Piece]] = [[] for _ in range(nparts)]
    flat: list[_Piece] = []
    for dst, src, order in pairs:
        if src.nbytes == 0:
            continue
        if src.flags.c_contiguous or src.flags.f_contiguous:
            flat.append((bytes_of(dst, order), bytes_of(src, order)))
        else:
            void = np.dtype((np.void, src.dtype.itemsize))
            parts[0].append((dst.view(void), src.view(void)))
    total = sum(d.nbytes for d, _ in flat)
    share = -(-total // nparts) if nparts else total
    k, room = 0, share
    for dst, src in flat:
        lo, n = 0, dst.nbytes
        while lo < n:
            take = n - lo
            if k < nparts - 1 and take > room:
                take = max(room // 4096 * 4096, 0)
                if take == 0:
                    k, room = k + 1, share
                    continue
            parts[k].append((dst[lo : lo + take], src[lo : lo + take]))
            lo += take
            room -= take
            if k < nparts - 1 and room <= 0:
                k, room = k + 1, share
    return parts


def _run_copies(pieces: list[_Piece]) -> None:
    for dst, src in pieces:
        np.copyto(dst, src)


def _nest(items: list[tuple[tuple[str, ...], Any]], groups: list[tuple[str, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in items:
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = value
    for path in groups:
        d = out
        for k in path:
            d = d.setdefault(k, {})
    return out


# ----------------------------------------------------------------------------------------------
# The manager
# ----------------------------------------------------------------------------------------------


@dataclass
class _InFlight:
    future: Future[None]
    step: int
    path: Path


_MANAGERS: weakref.WeakSet[CheckpointManager] = weakref.WeakSet()


def _report_unwaited() -> None:
    """At exit: print errors of background saves that nobody waited for (never lose them)."""
    for mgr in list(_MANAGERS):
        job = mgr._inflight
        if job is None or not job.future.done() or job.future.cancelled():
            continue
        exc = job.future.exception()
        if exc is not None:
            print(
                f"ndckpt: the background save of step {job.step} to {str(job.path)!r} failed and was never waited for:",
                file=sys.stderr,
            )
            traceback.print_exception(exc, file=sys.stderr)


def _finish_in_flight() -> None:
    """At exit, before thread pools refuse work: let every save in flight finish writing."""
    for mgr in list(_MANAGERS):
        job = mgr._inflight
        if job is not None:
            futures_wait([job.future])


_exit_hooks_lock = threading.Lock()
_exit_hooks_registered = False


def _register_exit_hooks() -> None:
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


_T = TypeVar("_T")


class _Coordinator(Protocol):
    """The steps of a manager that are collective with ``comm`` and local without.

    Chosen once at construction: :class:`_Local` (no ``comm``) or
    ``ndckpt.mpi.Collective`` (an mpi4py communicator; every rank makes the
    same calls in the same order). The manager's methods call these and never
    look at ``comm`` themselves.
    """

    @property
    def is_root(self) -> bool:
        """True in the one process that lists, deletes and removes stale temporaries (rank 0)."""
        ...

    def root_call(self, fn: Callable[[], _T], what: str) -> _T:
        """Run ``fn`` on the root only; return its result, or raise its error, everywhere.

        ``what`` names the operation in errors raised on other ranks.
        """
        ...

    def agree_save(self, step: int, preempt: bool, force: bool) -> tuple[bool, bool]:
        """``(preempt, force)`` as agreed by every participant: each is true if it is anywhere.

        Raises InvalidArgumentError everywhere when participants pass different steps.
        """
        ...

    def save(
        self, path: Path, state: Mapping[str, Any], *, style: Any, threads: int, metadata: Mapping[str, Any] | None
    ) -> None:
        """Write ``state`` as the checkpoint file ``path``; on failure no file of it is left."""
        ...

    def load(
        self, path: Path, *, out: Any, mmap: MmapMode, threads: int, verify: bool | None, select: Any
    ) -> dict[str, Any]:
        """Read the checkpoint file ``path`` (the nested state)."""
        ...


class _Local:
    """The coordinator of a manager without ``comm``: everything happens in this process."""

    @property
    def is_root(self) -> bool:
        return True

    def root_call(self, fn: Callable[[], _T], what: str) -> _T:
        """Call ``fn`` here; its exception propagates unchanged (``what`` is unused)."""
        return fn()

    def agree_save(self, step: int, preempt: bool, force: bool) -> tuple[bool, bool]:
        """Nobody to agree with: ``(preempt, force)`` unchanged."""
        return preempt, force

    def save(
        self, path: Path, state: Mapping[str, Any], *, style: Any, threads: int, metadata: Mapping[str, Any] | None
    ) -> None:
        """:func:`ndckpt.save` to ``path`` (temporary file, fsync, rename: no partial file on failure)."""
        save(path, state, style=style, threads=threads, metadata=metadata)

    def load(
        self, path: Path, *, out: Any, mmap: MmapMode, threads: int, verify: bool | None, select: Any
    ) -> dict[str, Any]:
        """:func:`ndckpt.load` of ``path``; InvalidArgumentError if ``select`` is given (it needs ``comm``)."""
        if select is not None:
            raise InvalidArgumentError("select is only for managers with comm (see ndckpt.mpi.load)")
        return load(path, out=out, mmap=mmap, threads=threads, verify=verify)


_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class CheckpointManager:
    """Periodic, rotating, crash-safe checkpoints in one directory (see the module docstring).

    Parameters
    ----------
    directory
        Where the checkpoints live; created (with parents) if missing.
        Stale temporary files left by dead writers are removed.
    every
        ``save(step, ...)`` writes when ``step % every == 0`` (positive int).
    keep
        How many of the newest checkpoints rotation keeps (positive int), or
        None to keep all.
    keep_every
        Also keep every checkpoint whose step is a multiple of this (None: no
        such permanent checkpoints).
    style
        Frame style for every save, as in :func:`ndckpt.save` (``"raw"``,
        ``"lz4"``, a FrameStyle or a per-name mapping).
    threads
        Worker threads for writing and reading, as in :func:`ndckpt.save`
        and :func:`ndckpt.load` (None: all cores). Asynchronous saves copy
        the state with ``min(2, threads)`` threads.
    async_save
        Write in the background; see :meth:`save`.
    comm
        An mpi4py communicator (``pip install -e '.[mpi]'`` from a checkout): every rank of
        it makes the same calls, ``state`` may hold :class:`ndckpt.mpi.Block`
        and each checkpoint is one file written by all ranks with
        :func:`ndckpt.mpi.save`. :meth:`save`, :meth:`steps`, :meth:`latest`,
        :meth:`restore` (through :func:`ndckpt.mpi.load`) and rotation are then
        collective and agree on all ranks (rank 0 lists and deletes); a
        preemption signal on any rank makes every rank save the same step.
        Not combinable with ``async_save`` (UnsupportedError).

    Raises
    ------
    InvalidArgumentError
        A bad argument, or ``directory`` exists and is not a directory.
    CheckptIOError
        The directory cannot be created or listed.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from ndckpt import CheckpointManager
    >>> x = np.zeros(4)
    >>> with tempfile.TemporaryDirectory() as d, CheckpointManager(d, every=10, keep=2) as mgr:
    ...     for step in range(1, 31):
    ...         x += 1
    ...         _ = mgr.save(step, {"x": x, "step": np.int64(step)}, metadata={"run": "a"})
    ...     print(mgr.steps(), mgr.restore()["x"], mgr.restored_step, mgr.metadata())
    [20, 30] [30. 30. 30. 30.] 30 {'run': 'a'}
    """

    def __init__(
        self,
        directory: PathLike,
        *,
        every: int = 1,
        keep: int | None = 3,
        keep_every: int | None = None,
        style: Any = "raw",
        threads: int | None = None,
        async_save: bool = False,
        comm: Any = None,
    ) -> None:
        self._every = _check_positive(every, "every")
        self._keep = _check_optional_positive(keep, "keep")
        self._keep_every = _check_optional_positive(keep_every, "keep_every")
        self._trimmed = False  # checkpoints beyond keep left by an interrupted run removed yet
        if not isinstance(style, Mapping):
            parse_style_arg(style, "style")
        self._style = style
        self._threads = resolve_threads(threads)
        if not isinstance(async_save, bool):
            raise InvalidArgumentError(f"async_save must be a bool, got {async_save!r}")
        self._async = async_save
        self._coord: _Coordinator
        if comm is None:
            self._coord = _Local()
        else:
            from .mpi import Collective  # ImportError naming the mpi extra when mpi4py is missing

            self._coord = Collective(comm)
            if async_save:
                raise UnsupportedError("async_save=True cannot be combined with comm (MPI saves are synchronous)")
        try:
            directory = os.fspath(directory)
        except TypeError:
            raise InvalidArgumentError(f"directory: expected a path, got {type(directory).__name__}") from None
        self._dir = Path(directory)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise InvalidArgumentError(f"directory {str(self._dir)!r} exists and is not a directory") from None
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot create directory {str(self._dir)!r}: {e.strerror}") from e
        self._lock = threading.Lock()  # guards the completeness cache (main and writer threads)
        self._complete: dict[str, tuple[tuple[int, int, int], bool]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: _InFlight | None = None
        self._staging = _Staging()
        self._signals_seen = 0  # preemption signals received (only the handler increments it)
        self._signals_saved = 0  # ... of which a completed save has accounted for
        self._preempted = False
        self._saved_handlers: dict[int, _SignalHandler] = {}
        self._restored_step: int | None = None
        if self._coord.is_root:  # temporary names carry rank 0's pid
            self.remove_stale_temporaries()
        _MANAGERS.add(self)

    # ------------------------------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The checkpoint directory."""
        return self._dir

    @property
    def preempted(self) -> bool:
        """True once a save made after a preemption signal has been written (then stays True).

        A signal from :meth:`install_signal_handlers` makes the next
        :meth:`save` write; when that save returns, the checkpoint is on disk
        and ``preempted`` is True. So ``mgr.save(step, state)`` followed by
        ``if mgr.preempted: break`` never exits without a checkpoint of the
        last step saved, wherever the signal lands.
        """
        return self._preempted

    @property
    def restored_step(self) -> int | None:
        """The step the last successful :meth:`restore` returned (None before any)."""
        return self._restored_step

    @property
    def staging_nbytes(self) -> int:
        """Bytes of staging memory held for asynchronous saves (0 until the first one; 0 after close)."""
        return self._staging.nbytes

    def path(self, step: int) -> Path:
        """The file of checkpoint ``step`` (whether or not it exists)."""
        return self._dir / _name(_check_step(step))

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({str(self._dir)!r}, every={self._every}, keep={self._keep}, "
            f"keep_every={self._keep_every}, style={self._style!r}, async_save={self._async})"
        )

    # ------------------------------------------------------------------------------------------
    # Listing
    # ------------------------------------------------------------------------------------------

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints in the directory, ascending.

        Lists only names ``ckpt-{step:012d}.ndckpt`` that are regular files
        with a valid superblock magic and trailer (checked once per file
        version, then cached); temporary files of saves in progress are never
        listed. Does not wait for a save in flight. Frame contents are not
        checked here (see :meth:`restore`).

        With ``comm``: collective; rank 0 lists and every rank gets its answer.

        Raises
        ------
        CheckptIOError
            The directory cannot be listed.
        """
        return self._coord.root_call(self._scan, "CheckpointManager.steps")

    def _scan(self) -> list[int]:
        """This process's listing of the complete checkpoints (what :meth:`steps` returns)."""
        found: list[int] = []
        seen: set[str] = set()
        try:
            with os.scandir(self._dir) as it:
                entries = list(it)
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot list {str(self._dir)!r}: {e.strerror}") from e
        for entry in entries:
            m = _NAME_RE.fullmatch(entry.name)
            if m is None:
                continue
            step = int(m.group(1))
            if _name(step) != entry.name:
                continue
            try:
                st = entry.stat()
            except OSError:
                continue  # deleted meanwhile
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(entry.name)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                cached = self._complete.get(entry.name)
            if cached is None or cached[0] != key:
                ok = _looks_complete(entry.path, st.st_size)
                with self._lock:
                    self._complete[entry.name] = (key, ok)
            else:
                ok = cached[1]
            if ok:
                found.append(step)
        with self._lock:
            for name in [n for n in self._complete if n not in seen]:
                del self._complete[name]
        found.sort()
        return found

    def latest(self) -> int | None:
        """The newest complete checkpoint's step, or None if there is none (see :meth:`steps`)."""
        s = self.steps()
        return s[-1] if s else None

    # ------------------------------------------------------------------------------------------
    # Saving
    # ------------------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        state: Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Write checkpoint ``step`` if it is due; return whether it was written (or started).

        It is due when ``step % every == 0``, when ``force`` is true, or when a
        signal from :meth:`install_signal_handlers` has arrived since the last
        save. Otherwise nothing happens and False is returned, at the cost of
        a modulo: call it every step.

        Parameters
        ----------
        step
            Non-negative int; names the file. Saving an existing step replaces it.
        state
            A (nested) mapping of names to numpy arrays or scalars, as for
            :func:`ndckpt.save`.
        metadata
            A JSON-compatible dict stored with the checkpoint (:meth:`metadata`).
        force
            Save even when ``every`` says no.

        Returns
        -------
        bool
            True if the checkpoint was written (synchronous) or captured and
            handed to the background writer (``async_save=True``).

        Raises
        ------
        CheckptIOError, CheckptError
            The error of an earlier background save that failed (raised once;
            this call then saves nothing). Synchronously: the write failed;
            no file is left and the previous checkpoint stays the latest.
        InvalidArgumentError
            A bad step, state, style or metadata (also with ``async_save``:
            the state is validated before ``save`` returns).

        Warnings
        --------
        With ``async_save=True``, ``save`` returns once the state is copied
        into staging memory; the caller may then modify its arrays at once.
        If a save is still in flight, this call first waits for it (its time
        is part of what ``save`` blocks). A save triggered by a preemption
        signal is written synchronously, even with ``async_save=True``, so
        the checkpoint is on disk when ``save`` returns.
        """
        s = _check_step(step)
        self._raise_finished()
        signals = self._signals_seen
        preempt = signals > self._signals_saved
        preempt, force = self._coord.agree_save(s, preempt, force)  # a signal on any rank: every rank saves
        if not (force or preempt or s % self._every == 0):
            return False
        if not self._async or preempt:
            self.wait()
            self._trim_once()
            self._coord.save(self.path(s), state, style=self._style, threads=self._threads, metadata=metadata)
            if preempt:
                self._signals_saved = signals
                self._preempted = True
            self._rotate(s)
            return True
        self.wait()
        meta = check_metadata(metadata)
        staged = self._capture(state)
        path = self.path(s)
        _register_exit_hooks()  # before a save can be in flight
        fut = self._executor().submit(self._write, s, path, staged, meta)
        self._inflight = _InFlight(fut, s, path)
        return True

    def _executor(self) -> ThreadPoolExecutor:
        """The manager's two threads: the background writer, and a helper for copies (never busy at once)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ndckpt-manager")
        return self._pool

    def _capture(self, state: Any) -> dict[str, Any]:
        """Copy ``state`` into staging memory; return the staged tree (validated like ndckpt.save)."""
        items, groups = flatten_tree(state)
        # Python values and numpy scalars are snapshotted by encoding them now (a list the caller
        # mutates after save returns must not change what is written) and decoding a fresh copy.
        values = [(p, _decode_value(_encode_value(v, f"value {'/'.join(p)!r}"), "")) for p, v in items if _is_value(v)]
        arrays = [(path, as_array(path, v)) for path, v in items if not _is_value(v)]
        resolve_styles(self._style, ["/".join(p) for p, _ in arrays], {"/".join(p) for p, _ in values})
        specs: list[_Spec] = [(a.dtype, tuple(int(n) for n in a.shape), _order_of(a)) for _, a in arrays]
        views = self._staging.views(specs)
        pairs = [(v, a, spec[2]) for v, (_, a), spec in zip(views, arrays, specs, strict=True)]
        total = sum(a.nbytes for _, a in arrays)
        nparts = 2 if self._threads >= 2 and total >= _PARALLEL_COPY_MIN else 1
        parts = _copy_pieces(pairs, nparts)
        if nparts == 1:
            _run_copies(parts[0])
        else:
            helper = self._executor().submit(_run_copies, parts[1])
            try:
                _run_copies(parts[0])
            finally:
                helper.result()
        return _nest([(path, v) for (path, _), v in zip(arrays, views, strict=True)] + values, groups)

    def _write(self, step: int, path: Path, staged: dict[str, Any], metadata: Any) -> None:
        """Background job: write the staged state, then rotate."""
        self._trim_once()
        self._coord.save(path, staged, style=self._style, threads=self._threads, metadata=metadata)
        self._rotate(step)

    def _trim_once(self) -> None:
        """Before this manager's first write: rotate away what an interrupted run left beyond ``keep``."""
        if not self._trimmed:
            self._trimmed = True
            self._rotate(-1)  # -1 is no step: only the rotation rules decide

    def _rotate(self, just_written: int) -> None:
        if self._keep is None:
            return

        def rotate() -> None:
            self._rotate_listed(just_written, self._scan())

        self._coord.root_call(rotate, "CheckpointManager rotation")  # the root deletes; everyone learns how it went

    def _rotate_listed(self, just_written: int, have: list[int]) -> None:
        assert self._keep is not None
        keep = set(have[-self._keep :])
        if self._keep_every is not None:
            keep.update(s for s in have if s % self._keep_every == 0)
        keep.add(just_written)
        for s in have:
            if s in keep:
                continue
            p = self._dir / _name(s)
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise CheckptIOError(
                    e.errno,
                    f"checkpoint step {just_written} was written, but deleting the old checkpoint "
                    f"{str(p)!r} failed: {e.strerror}",
                ) from e

    def _raise_finished(self) -> None:
        """Raise the error of a background save that has finished (clears it); never blocks."""
        job = self._inflight
        if job is not None and job.future.done():
            self._finish(job)

    def _finish(self, job: _InFlight) -> None:
        exc = job.future.exception()  # blocks until the job is done
        self._inflight = None
        if exc is not None:
            exc.add_note(f"(background save of step {job.step} to {str(job.path)!r})")
            raise exc

    def wait(self) -> None:
        """Block until the save in flight (if any) is written; raise its error if it failed.

        Each background error is raised once, here or by the next :meth:`save`.
        After a failed save no file of it remains and the previous checkpoint
        is still the latest. Does nothing with ``async_save=False``.
        """
        job = self._inflight
        if job is not None:
            self._finish(job)

    def close(self) -> None:
        """Wait for the save in flight, stop the writer thread, free staging memory, restore signal handlers.

        Raises the error of the save in flight, as :meth:`wait` (the rest is
        still done). The manager stays usable: a later asynchronous save
        starts a new writer thread and allocates staging memory again.
        """
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._staging.release()
            self.restore_signal_handlers()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # Restoring
    # ------------------------------------------------------------------------------------------

    def restore(
        self,
        step: int | None = None,
        *,
        out: Mapping[str, Any] | None = None,
        mmap: MmapMode = True,
        verify: bool | None = None,
        select: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Load checkpoint ``step`` (None: the latest readable one) as :func:`ndckpt.load` does.

        Parameters
        ----------
        step
            The step to load, or None for the newest checkpoint in
            :meth:`steps`. With None, a checkpoint that fails to load for
            any reason but the caller's arguments (FormatError,
            CompressionError, CheckptIOError, UnsupportedError, and any other
            exception a damaged file may cause, such as MemoryError) is
            skipped with a :class:`CorruptCheckpointWarning` and the next
            older one is tried; an InvalidArgumentError propagates at once.
        out, mmap, verify
            As in :func:`ndckpt.load`: fill existing arrays; RAW arrays as
            read-only zero-copy views of the file (True or "r"), writable
            copy-on-write views ("c") or copies (False) (views stay valid after
            the file is rotated away); which frame checksums to check (``True``
            also checks RAW frames, so the fallback catches flipped data bits).
        select
            With ``comm`` only: what this rank reads, as in :func:`ndckpt.mpi.load`
            (which is used instead of :func:`ndckpt.load`; ``mmap`` and ``verify`` are then ignored).

        Returns
        -------
        dict
            The nested state; :attr:`restored_step` says which step it is.

        Raises
        ------
        CheckptIOError
            No checkpoint for ``step`` (or none at all), or a read error.
        FormatError, CompressionError
            The requested checkpoint is corrupt; with ``step=None``, the
            newest one's error when every checkpoint failed (the others are
            in its notes; it is of whatever type that failure raised).
        InvalidArgumentError
            A mismatched ``out`` or bad arguments (no fallback then).

        Warnings
        --------
        Does not wait for a save in flight: call :meth:`wait` first to
        restore a checkpoint that is still being written.
        """
        check_mmap(mmap)  # a bad mode is refused before any file is opened
        if step is not None:
            s = _check_step(step)
            have = self.steps()
            if s not in have:
                raise CheckptIOError(
                    errno.ENOENT, f"no complete checkpoint for step {s} in {str(self._dir)!r} (have {have})"
                )
            d = self._load(s, out, mmap, verify, select)
            self._restored_step = s
            return d
        candidates = self.steps()
        if not candidates:
            raise CheckptIOError(errno.ENOENT, f"no complete checkpoint in {str(self._dir)!r}")
        errors: list[tuple[int, Exception]] = []
        for s in reversed(candidates):
            try:
                d = self._load(s, out, mmap, verify, select)
            except InvalidArgumentError:
                raise  # the caller's own arguments: no older checkpoint can fix them
            except Exception as e:  # anything else comes from the file: an older checkpoint may be fine
                errors.append((s, e))
                warnings.warn(
                    f"checkpoint step {s} in {str(self._dir)!r} cannot be restored ({e}); trying an older one",
                    CorruptCheckpointWarning,
                    stacklevel=2,
                )
                continue
            self._restored_step = s
            return d
        first = errors[0][1]
        for s, err in errors[1:]:
            first.add_note(f"step {s} failed too: {err}")
        raise first

    def _load(self, s: int, out: Any, mmap: MmapMode, verify: bool | None, select: Any) -> dict[str, Any]:
        return self._coord.load(self.path(s), out=out, mmap=mmap, threads=self._threads, verify=verify, select=select)

    def metadata(self, step: int | None = None) -> Any:
        """The metadata dict saved with checkpoint ``step`` (None: the latest); None if none was given.

        Raises CheckptIOError if there is no such checkpoint and FormatError if
        its structure is corrupt.
        """
        s = self.latest() if step is None else _check_step(step)
        if s is None:
            raise CheckptIOError(errno.ENOENT, f"no complete checkpoint in {str(self._dir)!r}")
        with open_checkpoint(self.path(s)) as r:
            return r.metadata

    # ------------------------------------------------------------------------------------------
    # Maintenance and preemption
    # ------------------------------------------------------------------------------------------

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files of checkpoint saves whose writer process is gone; return them.

        A temporary file (``.ckpt-<step>.ndckpt.ndckpt-tmp-<pid>-<host>-<hex>``,
        the naming of :func:`ndckpt.save`) is left when a writer is killed
        mid-save. It is removed only when it is a regular file, ``<host>``
        names this host (and pid namespace), and no process with that pid
        exists (this process's own files are never removed); temporary files
        of other hosts on a shared file system are left alone. Called at
        construction; each :func:`ndckpt.save` also does this for its own target.
        """
        try:
            return _files.remove_stale_temps(self._dir, lambda stem: _NAME_RE.fullmatch(stem) is not None)
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot list {str(self._dir)!r}: {e.strerror}") from e

    def install_signal_handlers(self, signals: Sequence[int] | None = None) -> None:
        """Make ``signals`` request a final checkpoint instead of killing the process.

        ``signals=None`` means SIGTERM and SIGUSR1, or those of the two the
        platform has (Windows has no SIGUSR1: SIGTERM only).

        Each handler only counts the signal: the next :meth:`save` writes
        whatever ``every`` says (synchronously) and, once it is written,
        :attr:`preempted` becomes True. A loop then sees ``preempted`` and
        exits cleanly, before the scheduler's SIGKILL (see ``docs/manager.md`` for the SLURM recipe).
        The previous handlers are kept and put back by
        :meth:`restore_signal_handlers` (or :meth:`close`).

        Raises
        ------
        InvalidArgumentError
            Not called from the main thread, or a signal that cannot be caught.
        """
        if threading.current_thread() is not threading.main_thread():
            raise InvalidArgumentError("install_signal_handlers must be called from the main thread")
        for sig in _platform.default_preempt_signals() if signals is None else signals:
            try:
                previous = signal.signal(sig, self._on_signal)
            except (ValueError, OSError, TypeError) as e:
                raise InvalidArgumentError(f"cannot install a handler for signal {sig!r}: {e}") from None
            self._saved_handlers.setdefault(int(sig), previous)

    def restore_signal_handlers(self) -> None:
        """Put back the handlers :meth:`install_signal_handlers` replaced (no-op if none)."""
        if not self._saved_handlers:
            return
        if threading.current_thread() is not threading.main_thread():
            raise InvalidArgumentError("restore_signal_handlers must be called from the main thread")
        saved, self._saved_handlers = self._saved_handlers, {}
        for sig, previous in saved.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a counter: this runs between bytecodes of the main thread, possibly inside save().
        self._signals_seen += 1
