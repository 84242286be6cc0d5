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
    freed by :meth:`~CheckpointManager.close`) and returns; the staged copy is
    written in the background, by a writer process that maps the staging
    memory (``"process"``, the default on Linux: it needs no GIL of the
    caller's, so a main loop in Python neither slows it nor is slowed by it)
    or by a thread of this process (``"thread"``, the default elsewhere).
    The caller may modify its arrays as soon as ``save`` returns. At most one
    save is in flight: a save that comes while one is in flight first waits
    for it.
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

The parts: :mod:`ndckpt._ckptdir` (file names, discovery, the rotation policy),
:mod:`ndckpt._staging` (the staging copy of an asynchronous save),
:mod:`ndckpt._background` (the writer thread, its errors, the exit hooks),
:mod:`ndckpt._bgprocess` and :mod:`ndckpt._bgworker` (the writer process); this
module holds the schedule, the preemption signals and the manager itself.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Union

from . import _bgprocess, _platform
from ._background import BackgroundWriter
from ._ckptdir import CheckpointDirectory, check_step, rotation_victims
from ._coordination import Coordinator, Local
from ._incrcheck import check_unchanged, make_store
from ._incremental import is_manifest_metadata
from ._incrload import load_manifest
from ._staging import StagingArena, capture
from .api import MmapMode, check_mmap
from .api import open as open_checkpoint
from .container.plan import check_metadata, parse_style_arg
from .errors import CheckptIOError, InvalidArgumentError, UnsupportedError
from .parallel import resolve_threads

__all__ = ["CheckpointManager", "CorruptCheckpointWarning"]

PathLike = Union[str, "os.PathLike[str]"]


class CorruptCheckpointWarning(RuntimeWarning):
    """:meth:`CheckpointManager.restore` skipped an unreadable checkpoint and fell back to an older one."""


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
        ``"lz4"``, ``"lz4+shuffle"``, ``"lz4+delta"``, ``"auto"``, a
        FrameStyle or a per-name mapping).
    threads
        Worker threads for writing and reading, as in :func:`ndckpt.save`
        and :func:`ndckpt.load` (None: all cores). Asynchronous saves copy
        the state with ``min(2, threads)`` threads.
    async_save
        Write in the background; see :meth:`save`. ``True`` picks the
        writer: ``"process"`` where available (Linux), else ``"thread"``;
        either may be named. ``"process"`` starts one writer child
        (``python -c``, the user's ``__main__`` is not imported) on the first
        save and keeps it until :meth:`close`; it writes with ``threads``
        threads, and is restarted by the next save if it dies (that save's
        error is then WriterDiedError, a CheckptIOError). ``False``: synchronous.
    comm
        An mpi4py communicator (``pip install -e '.[mpi]'`` from a checkout): every rank of
        it makes the same calls, ``state`` may hold :class:`ndckpt.mpi.Block`
        and each checkpoint is one file written by all ranks with
        :func:`ndckpt.mpi.save`. :meth:`save`, :meth:`steps`, :meth:`latest`,
        :meth:`restore` (through :func:`ndckpt.mpi.load`) and rotation are then
        collective and agree on all ranks (rank 0 lists and deletes); a
        preemption signal on any rank makes every rank save the same step.
        Not combinable with ``async_save`` (UnsupportedError).
    incremental, full_every
        Write only the ~1 MiB pieces no retained checkpoint holds, plus a manifest
        referencing the rest (:mod:`ndckpt._incremental`, ``docs/incremental.md``;
        not with ``comm``: UnsupportedError). Every ``full_every``-th save rewrites all.

    Raises
    ------
    UnsupportedError
        ``async_save="process"`` where no writer process can be used.

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
        async_save: bool | str = False,
        comm: Any = None,
        incremental: bool = False,
        full_every: int | None = None,
    ) -> None:
        if incremental is True and comm is not None:
            raise UnsupportedError("incremental=True cannot be combined with comm (MPI checkpoints are written whole)")
        self._every = _check_positive(every, "every")
        self._keep = _check_optional_positive(keep, "keep")
        self._keep_every = _check_optional_positive(keep_every, "keep_every")
        self._trimmed = False  # checkpoints beyond keep left by an interrupted run removed yet
        if not isinstance(style, Mapping):
            parse_style_arg(style, "style")
        self._style = style
        self._threads = resolve_threads(threads)
        if async_save is True:  # (incremental saves run in this process: they consult its piece store)
            async_save = "process" if _bgprocess.available() and incremental is not True else "thread"
        if not (async_save is False or (isinstance(async_save, str) and async_save in ("thread", "process"))):
            raise InvalidArgumentError(f"async_save must be a bool, 'thread' or 'process', got {async_save!r}")
        if async_save == "process" and not _bgprocess.available():
            raise UnsupportedError("async_save='process' needs Linux (memfd_create and fd passing); use 'thread'")
        if async_save == "process" and incremental is True:
            raise UnsupportedError("incremental=True saves in the background with async_save='thread' (or True)")
        self._async = async_save is not False
        self._async_mode: str | bool = async_save
        self._coord: Coordinator
        if comm is None:
            self._coord = Local()
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
        self._files = CheckpointDirectory(self._dir)
        self._incr = make_store(self._dir, incremental, full_every)
        self.last_save_bytes: dict[str, int] | None = None
        self._writer = BackgroundWriter()
        self._process = _bgprocess.WriterProcess() if async_save == "process" else None
        self._staging = StagingArena() if self._process is None else StagingArena(self._process.allocate)
        if self._process is not None:
            self._process.ensure_started()  # its startup overlaps the caller's own
        self._signals_seen = 0  # preemption signals received (only the handler increments it)
        self._signals_saved = 0  # ... of which a completed save has accounted for
        self._preempted = False
        self._saved_handlers: dict[int, _SignalHandler] = {}
        self._restored_step: int | None = None
        if self._coord.is_root:  # temporary names carry rank 0's pid
            self.remove_stale_temporaries()

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
        return self._files.file(check_step(step))

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({str(self._dir)!r}, every={self._every}, keep={self._keep}, "
            f"keep_every={self._keep_every}, style={self._style!r}, async_save={self._async_mode!r})"
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
        return self._coord.root_call(self._files.scan, "CheckpointManager.steps")

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
        unchanged: Sequence[str] | None = None,
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
        unchanged
            ``incremental`` only: names of arrays promised equal to the previous
            checkpoint's: referenced without hashing (a false promise keeps the old
            data, and ``ndckpt verify`` reports it from a sample taken at save time).

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
        s = check_step(step)
        hint = check_unchanged(unchanged, self._incr is not None)
        self._writer.raise_finished()
        signals = self._signals_seen
        preempt = signals > self._signals_saved
        preempt, force = self._coord.agree_save(s, preempt, force)  # a signal on any rank: every rank saves
        if not (force or preempt or s % self._every == 0):
            return False
        if not self._async or preempt:
            self.wait()
            self._trim_once()
            self._save_file(self.path(s), state, metadata, hint)
            if preempt:
                self._signals_saved = signals
                self._preempted = True
            self._rotate(s)
            return True
        self.wait()
        meta = check_metadata(metadata)
        helper = self._writer.start_helper if self._threads >= 2 else None
        staged = capture(state, self._style, self._staging, helper)
        path = self.path(s)
        proc = self._process
        if proc is None:
            self._writer.submit(s, path, lambda: self._write(s, path, staged, meta, hint))
            return True
        job = {
            "tree": proc.skeleton(staged),
            "path": str(path),
            "directory": str(self._dir),
            "style": self._style,
            "threads": self._threads,
            "metadata": meta,
            "keep": self._keep,
            "keep_every": self._keep_every,
            "step": s,
            "trim": not self._trimmed,
        }
        self._trimmed = True
        proc.ensure_started()
        self._writer.submit(s, path, lambda: proc.run(s, job))
        return True

    def _write(self, step: int, path: Path, staged: dict[str, Any], metadata: Any, hint: tuple[str, ...] = ()) -> None:
        """Background job: write the staged state, then rotate."""
        self._trim_once()
        self._save_file(path, staged, metadata, hint)
        self._rotate(step)

    def _save_file(self, path: Path, state: Mapping[str, Any], metadata: Any, hint: tuple[str, ...]) -> None:
        """Write one checkpoint file: whole (the coordinator's save) or incremental (the piece store)."""
        if self._incr is None:
            self._coord.save(path, state, style=self._style, threads=self._threads, metadata=metadata)
        else:
            self.last_save_bytes = self._incr.save(
                path, state, style=self._style, threads=self._threads, metadata=metadata, unchanged=hint
            )

    def _trim_once(self) -> None:
        """Before this manager's first write: rotate away what an interrupted run left beyond ``keep``."""
        if not self._trimmed:
            self._trimmed = True
            self._rotate(-1)  # -1 is no step: only the rotation rules decide

    def _rotate(self, just_written: int) -> None:
        if self._keep is None:
            if self._incr is not None:
                self._incr.collect()
            return

        def rotate() -> None:
            assert self._keep is not None
            victims = rotation_victims(self._files.scan(), self._keep, self._keep_every, just_written)
            self._files.delete(victims, just_written)
            if self._incr is not None:  # after the manifests: only packs nothing references go
                self._incr.collect()

        self._coord.root_call(rotate, "CheckpointManager rotation")  # the root deletes; everyone learns how it went

    def wait(self) -> None:
        """Block until the save in flight (if any) is written; raise its error if it failed.

        Each background error is raised once, here or by the next :meth:`save`.
        After a failed save no file of it remains and the previous checkpoint
        is still the latest. Does nothing with ``async_save=False``.
        """
        self._writer.wait()

    def close(self) -> None:
        """Wait for the save in flight, stop the writer (thread or process), free staging, restore signal handlers.

        Raises the error of the save in flight, as :meth:`wait` (the rest is
        still done). The manager stays usable: a later asynchronous save
        starts a new writer and allocates staging memory again.
        """
        try:
            self.wait()
        finally:
            self._writer.shutdown()
            if self._process is not None:
                self._process.shutdown()
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
            s = check_step(step)
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
        if self._incr is not None:
            man = self._incr.manifest(self.path(s))
            if man is not None:
                return load_manifest(self.path(s), out=out, mmap=mmap, verify=verify, man=man, threads=self._threads)
        return self._coord.load(self.path(s), out=out, mmap=mmap, threads=self._threads, verify=verify, select=select)

    def metadata(self, step: int | None = None) -> Any:
        """The metadata dict saved with checkpoint ``step`` (None: the latest); None if none was given.

        Raises CheckptIOError if there is no such checkpoint and FormatError if
        its structure is corrupt.
        """
        s = self.latest() if step is None else check_step(step)
        if s is None:
            raise CheckptIOError(errno.ENOENT, f"no complete checkpoint in {str(self._dir)!r}")
        with open_checkpoint(self.path(s)) as r:
            md = r.metadata
        return md["user"] if is_manifest_metadata(md) else md

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
        gone = self._files.remove_stale_temporaries()
        if self._incr is not None:
            gone += self._incr.remove_stale_temporaries()
        return gone

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
