"""Portable wrappers for the platform-specific calls ndckpt makes outside its atomic-write code.

Linux is the tested platform; each wrapper has a fallback for a platform (macOS,
Windows) or build where the call is missing, so ``import ndckpt`` and every
public function work there, sometimes slower. Each wrapper looks the call up
when it runs (not at import), so a test can take it away with
``monkeypatch.delattr`` and exercise the fallback on Linux.

=============================  ==============================================================
call                            fallback where it is missing
=============================  ==============================================================
``os.preadv``                   ``os.pread`` into a bounded temporary, then ``lseek`` + ``read``
                                under a process-wide lock (positioned reads stay correct
                                with many threads, but they are serialised)
``os.pread``                    ``lseek`` + ``read`` under the same lock
``os.register_at_fork``         nothing to register: there is no ``fork`` either
``signal.SIGUSR1`` etc.         the default signal set holds only the signals that exist
``os.kill(pid, 0)`` (POSIX)     no liveness probe: a process is assumed alive, so a temporary
                                file of another process is kept, never deleted
``mmap.MAP_PRIVATE``            an anonymous mapping without flags (Windows' only kind)
``os.O_CLOEXEC``/``O_BINARY``   0 (``O_BINARY`` is Windows' flag for untranslated bytes)
=============================  ==============================================================

``os.sched_getaffinity`` falls back to ``os.cpu_count()`` in
:func:`ndckpt.parallel.resolve_threads`.
"""

from __future__ import annotations

import mmap
import os
import signal
import threading
from collections.abc import Callable

__all__ = [
    "anonymous_map",
    "at_fork_in_child",
    "can_probe_pids",
    "default_preempt_signals",
    "open_flags",
    "pread",
    "preadinto",
]

#: Largest temporary one fallback read allocates: bounds the extra memory of a copy via bytes.
FALLBACK_CHUNK = 16 << 20

# Serialises the lseek + read fallback: the fd's offset is shared by every thread using it.
_seek_lock = threading.Lock()


def open_flags(flags: int) -> int:
    """``flags`` plus ``O_CLOEXEC`` and ``O_BINARY`` where the platform has them."""
    return flags | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def preadinto(fd: int, buf: memoryview, offset: int) -> int:
    """Read up to ``len(buf)`` bytes at ``offset`` of ``fd`` into ``buf``; the count read (0 at EOF).

    Does not move the fd's offset where ``preadv`` or ``pread`` exists; the
    fallback moves it (under a lock), so callers must not rely on it. Raises
    ``OSError`` as the underlying call does. Fewer bytes than asked may be
    read: callers loop.
    """
    preadv = getattr(os, "preadv", None)
    if preadv is not None:
        return int(preadv(fd, [buf], offset))
    n = min(len(buf), FALLBACK_CHUNK)
    data = pread(fd, n, offset)
    buf[: len(data)] = data
    return len(data)


def pread(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes at ``offset`` of ``fd`` (fewer at EOF); ``os.pread`` or lseek + read."""
    fn = getattr(os, "pread", None)
    if fn is not None:
        return bytes(fn(fd, n, offset))
    with _seek_lock:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


def at_fork_in_child(fn: Callable[[], None]) -> bool:
    """Run ``fn`` in the child after every ``fork``; False (nothing to do) where there is no fork."""
    reg = getattr(os, "register_at_fork", None)
    if reg is None:
        return False
    reg(after_in_child=fn)
    return True


def default_preempt_signals() -> tuple[int, ...]:
    """SIGTERM and SIGUSR1, or those of them this platform has (Windows: SIGTERM only)."""
    return tuple(int(getattr(signal, name)) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


def can_probe_pids() -> bool:
    """True where ``os.kill(pid, 0)`` only tests that ``pid`` exists (POSIX).

    On Windows ``os.kill`` terminates the process whatever the signal number,
    so it must never be used as a probe there.
    """
    return os.name == "posix"


def anonymous_map(nbytes: int) -> mmap.mmap:
    """A private anonymous mapping of ``nbytes`` zero bytes (raises OSError/MemoryError when it cannot)."""
    flags = getattr(mmap, "MAP_PRIVATE", None)
    if flags is None:
        return mmap.mmap(-1, nbytes)
    return mmap.mmap(-1, nbytes, flags=flags)
