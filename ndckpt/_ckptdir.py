"""A manager's checkpoint directory: file names, discovery of complete checkpoints, rotation.

:class:`ndckpt.CheckpointManager` owns one directory; this module owns what is
true of its files whatever the manager does with them:

Naming
    Checkpoint ``step`` is ``ckpt-{step:012d}.ndckpt`` (:func:`checkpoint_name`;
    zero-padded, so name order is step order). A name the same digits would
    spell differently (``ckpt-0000000000001.ndckpt``, 13 digits for step 1) is
    not a checkpoint: only the canonical spelling of a step is.
Discovery
    :meth:`CheckpointDirectory.scan` lists the steps whose file is a regular file
    that looks completely written (magic and trailer,
    :func:`ndckpt.container.layout.looks_complete`), judged once per file version
    (inode, size, mtime) and cached.
Rotation
    :func:`rotation_victims` is the policy (pure): which steps go, given the
    steps present, ``keep``, ``keep_every`` and the step just written;
    :meth:`CheckpointDirectory.delete` carries it out.

Stale temporary files of dead writers (:meth:`CheckpointDirectory.remove_stale_temporaries`)
are judged by :mod:`ndckpt._files`' naming, for checkpoint names only.
"""

from __future__ import annotations

import operator
import os
import re
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _files, _platform
from .container import MAGIC, SUPERBLOCK, TRAILER
from .container.layout import looks_complete
from .errors import CheckptIOError, InvalidArgumentError

__all__ = ["NAME_RE", "CheckpointDirectory", "check_step", "checkpoint_name", "file_looks_complete", "rotation_victims"]

#: Checkpoint file names: ``ckpt-`` + the step, zero-padded to 12 digits (more if needed).
NAME_RE = re.compile(r"ckpt-([0-9]{12,})\.ndckpt")


def checkpoint_name(step: int) -> str:
    """The file name of checkpoint ``step`` (a non-negative int, not checked here)."""
    return f"ckpt-{step:012d}.ndckpt"


def check_step(step: Any) -> int:
    """``step`` as an int if it is a non-negative integer (not a bool); else InvalidArgumentError."""
    if isinstance(step, bool):
        raise InvalidArgumentError(f"step must be a non-negative int, got {step!r}")
    try:
        s = operator.index(step)
    except TypeError:
        raise InvalidArgumentError(f"step must be a non-negative int, got {step!r}") from None
    if s < 0:
        raise InvalidArgumentError(f"step must be a non-negative int, got {s}")
    return s


def file_looks_complete(path: str, size: int) -> bool:
    """Whether the file at ``path`` of ``size`` bytes looks completely written
    (:func:`ndckpt.container.layout.looks_complete`); False if it cannot be read. Never raises."""
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


def rotation_victims(have: Iterable[int], keep: int, keep_every: int | None, just_written: int) -> list[int]:
    """The steps of ``have`` that rotation deletes, ascending.

    Kept: the newest ``keep`` of ``have``, every step that is a multiple of
    ``keep_every`` (when given), and ``just_written`` (pass a negative number
    when nothing was just written). Pure; ``keep`` is a positive int.
    """
    steps = sorted(set(have))
    kept = set(steps[-keep:])
    if keep_every is not None:
        kept.update(s for s in steps if s % keep_every == 0)
    kept.add(just_written)
    return [s for s in steps if s not in kept]


class CheckpointDirectory:
    """The checkpoint files of one directory, and a cache of which of them look complete.

    The cache is guarded by a lock: :meth:`scan` may run in the manager's
    thread and in its background writer at once. The directory itself is
    neither created nor locked here.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._complete: dict[str, tuple[tuple[int, int, int], bool]] = {}  # name -> (file version, verdict)

    def file(self, step: int) -> Path:
        """The path of checkpoint ``step``'s file (whether or not it exists)."""
        return self.path / checkpoint_name(step)

    def scan(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (see the module docstring).

        Files that vanish or cannot be examined meanwhile are left out.
        CheckptIOError if the directory cannot be listed.
        """
        found: list[int] = []
        seen: set[str] = set()
        try:
            with os.scandir(self.path) as it:
                entries = list(it)
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot list {str(self.path)!r}: {e.strerror}") from e
        for entry in entries:
            m = NAME_RE.fullmatch(entry.name)
            if m is None:
                continue
            step = int(m.group(1))
            if checkpoint_name(step) != entry.name:
                continue
            try:
                st = entry.stat()
            except OSError:
                continue  # deleted meanwhile
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(entry.name)
            version = (st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                cached = self._complete.get(entry.name)
            if cached is None or cached[0] != version:
                ok = file_looks_complete(entry.path, st.st_size)
                with self._lock:
                    self._complete[entry.name] = (version, ok)
            else:
                ok = cached[1]
            if ok:
                found.append(step)
        with self._lock:
            for name in [n for n in self._complete if n not in seen]:
                del self._complete[name]
        found.sort()
        return found

    def delete(self, steps: Iterable[int], just_written: int) -> None:
        """Delete the files of ``steps`` (one already gone is fine).

        CheckptIOError on the first deletion that fails, saying that step
        ``just_written`` was written; the steps before it are gone, the rest stay.
        """
        for s in steps:
            p = self.file(s)
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

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files of checkpoint saves whose writer is gone; return them.

        As :func:`ndckpt._files.remove_stale_temps`, for temporary files of
        checkpoint names only. CheckptIOError if the directory cannot be listed.
        """
        try:
            return _files.remove_stale_temps(self.path, lambda stem: NAME_RE.fullmatch(stem) is not None)
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot list {str(self.path)!r}: {e.strerror}") from e
