"""A checkpoint's bytes for the random-access readers: a read-only mapping (or buffer) and an fd."""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from typing import Any

import numpy as np

from .. import _lz4, _platform
from .._memory import buffer_view
from ..errors import CheckptIOError, FormatError, InvalidArgumentError
from ..parallel import ScratchPool

__all__ = ["FileRegion", "map_path"]

#: Pieces in which :meth:`FileRegion.hash` reads what it hashes.
_HASH_PIECE = 1 << 18


class FileRegion:
    """A checkpoint's bytes: a read-only mapping (or the caller's buffer) and, for files, an fd.

    Copies and LZ4 input are read with ``pread`` when an fd is there: the bytes go
    straight into the destination, and mapped pages never inflate the process's
    RSS. Where ``preadv`` is missing the read falls back as :mod:`ndckpt._platform`
    says.
    """

    #: Whether frames must be fetched (:meth:`want`) before they are read.
    fetches = False

    def __init__(self, region: memoryview, fd: int | None = None) -> None:
        self.region, self.fd = region, fd

    def read(self, dst: np.ndarray[Any, np.dtype[np.uint8]], off: int) -> None:
        """Fill ``dst`` with the bytes at ``off``; CheckptIOError if the file ends first."""
        n = dst.nbytes
        if self.fd is None:
            np.copyto(dst, np.frombuffer(self.region, np.uint8, n, off))
            return
        done = 0
        mv = buffer_view(dst)
        while done < n:
            try:
                r = _platform.preadinto(self.fd, mv[done:], off + done)
            except OSError as e:
                raise CheckptIOError(e.errno, f"read of {n} bytes at offset {off} failed: {e.strerror}") from e
            if r <= 0:
                raise CheckptIOError(f"unexpected end of file at offset {off + done} (the file shrank?)")
            done += r

    def hash(self, off: int, n: int) -> int:
        """XXH64 of the ``n`` bytes at ``off``.

        With an fd the bytes are read (``pread``, in pieces of ``_HASH_PIECE``),
        never touched through the mapping: a file that shrinks meanwhile raises
        CheckptIOError instead of killing the process with SIGBUS. A caller's
        buffer is hashed in place.
        """
        if self.fd is None:
            return _lz4.xxh64(self.region[off : off + n])
        h = _lz4.XXH64()
        buf = ScratchPool.get(min(n, _HASH_PIECE))
        try:
            for a in range(0, n, _HASH_PIECE):
                piece = buf[: min(_HASH_PIECE, n - a)]
                self.read(piece, off + a)
                h.update(piece)
        finally:
            ScratchPool.put(buf)
        return h.digest()

    def private_map(self, lo: int, hi: int) -> tuple[memoryview, int]:
        """A new copy-on-write (``MAP_PRIVATE``) mapping of file bytes ``[lo, hi)`` and its file offset.

        The mapping starts at ``lo`` rounded down to the allocation granularity;
        the returned offset is that start. Writes through it stay in private
        pages and never reach the file. It is owned by whatever holds the
        memoryview (the arrays viewing it) and unmapped with the last of them;
        until then it also holds a duplicate of the fd (Python's mmap keeps one).
        CheckptIOError if the file cannot be mapped (it shrank, say).
        """
        assert self.fd is not None
        assert hi > lo
        base = lo - lo % mmap.ALLOCATIONGRANULARITY
        try:
            m = mmap.mmap(self.fd, hi - base, access=mmap.ACCESS_COPY, offset=base)
        except (OSError, ValueError) as e:
            code = getattr(e, "errno", None)
            raise CheckptIOError(code, f"cannot map bytes [{lo}, {hi}) copy-on-write: {e}") from e
        return memoryview(m), base

    def want(self, layout: Any, frames: list[int]) -> None:
        """Make these frames of ``layout`` (a :class:`~ndckpt.container.layout.Layout`) readable
        before a reader reads them: a mapped file or buffer has them all (a
        :class:`~ndckpt.container.ranged.RangedFile` fetches them)."""

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def map_path(path: str | os.PathLike[str]) -> FileRegion:
    """The regular file at ``path``, opened and mapped read-only; the result owns the fd (``close()``).

    Raises CheckptIOError if it cannot be opened or mapped, InvalidArgumentError
    for a directory or a file that is not regular (a FIFO or device is never
    read: pass an open file object to stream it), FormatError for an empty
    file. Nothing stays open after a failure.
    """
    p = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        fd = os.open(p, _platform.open_flags(os.O_RDONLY) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as e:
        raise CheckptIOError(e.errno, f"no such file: {p!r}") from e
    except OSError as e:
        raise CheckptIOError(e.errno, f"cannot open {p!r}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgumentError(f"{p!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgumentError(f"{p!r} is not a regular file; pass an open file object to stream it")
        if st.st_size == 0:
            raise FormatError(f"not an ndckpt file: {p!r} is empty")
        m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except BaseException:
        os.close(fd)
        raise
    return FileRegion(memoryview(m), fd)
