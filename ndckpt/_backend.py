"""I/O modes: where frame bytes go (sinks) and come from (sources).

Two backends, chosen once when a Checkpt/Restore is made:

- *stream*: an int file descriptor or a binary file object (file, pipe,
  socket, stdout). The sink never seeks. Small writes are gathered in a write
  buffer; large RAW writes go straight from the caller's memory to the file.
  The source reads ahead into a read buffer for LZ4 chunks and small reads,
  and reads large RAW buffers straight into the caller's memory.
- *mmio*: any contiguous buffer (bytearray, mmap, numpy array, np.memmap).
  Bounds are checked on every call and nothing is written past the region.

Backends know nothing about LZ4 (chunks and their 3-byte sizes are
:mod:`ndckpt._codec`'s): a sink offers a writable *window* of its buffer and
takes back how many bytes were written into it; a source offers a readable
window of its buffer and is told how many bytes were used. Errors are raised as
:class:`~ndckpt.errors.CheckptIOError`; the engine turns them into a failed
state.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Protocol

import numpy as np

from ._memory import aligned_empty, buffer_address
from .errors import CheckptIOError, InvalidArgumentError

__all__ = ["MmioSink", "MmioSource", "Sink", "Source", "StreamSink", "StreamSource", "as_bytes"]

#: RAW writes/reads at least this large bypass the stream buffer (one syscall, no copy).
DIRECT_MIN = 1 << 16
_memmove = ctypes.memmove


def as_bytes(obj: Any, *, writable: bool, what: str) -> memoryview:
    """A flat unsigned-byte memoryview of a C-contiguous buffer-protocol object.

    Raises InvalidArgumentError naming ``what`` for non-buffers, non-contiguous
    or (when ``writable``) read-only buffers.
    """
    try:
        mv = memoryview(obj)
    except TypeError:
        raise InvalidArgumentError(
            f"{what}: expected a buffer-protocol object (bytes, bytearray, memoryview, "
            f"numpy array), got {type(obj).__name__}"
        ) from None
    if not mv.c_contiguous:
        raise InvalidArgumentError(f"{what}: buffer must be C-contiguous")
    if writable and mv.readonly:
        raise InvalidArgumentError(f"{what}: buffer must be writable")
    if mv.format != "B" or mv.ndim != 1:
        try:
            mv = mv.cast("B")
        except TypeError:
            # Formats memoryview cannot cast (e.g. numpy structured dtypes): go through numpy.
            # (memoryview cannot cast views with zeros in their shape either, e.g. (0, 3).)
            mv = np.frombuffer(mv, dtype=np.uint8).data if mv.nbytes else memoryview(bytearray())
            if writable and mv.readonly:
                raise InvalidArgumentError(f"{what}: buffer must be writable") from None
    return mv


class Sink(Protocol):
    """Where a Checkpt's bytes go. ``offset`` counts bytes accepted so far.

    ``buf`` is the writable memory windows are cut from and ``base`` its address; both stay
    the same for the sink's life. ``window(need)`` returns ``(pos, cap)``: the next output
    bytes go to ``buf[pos : pos + cap]`` (a stream sink flushes first when fewer than
    ``need`` bytes are free; a memory sink's ``cap`` is whatever is left, possibly less).
    ``commit(n)`` makes the first ``n <= cap`` bytes written there part of the output; the
    window is void after any other call.
    """

    offset: int
    buf: memoryview
    base: int

    def write(self, mv: memoryview) -> None: ...
    def window(self, need: int) -> tuple[int, int]: ...
    def commit(self, n: int) -> None: ...
    def flush(self) -> None: ...


class Source(Protocol):
    """Where a Restore's bytes come from. ``offset`` counts from the start of the checkpoint.

    ``buf`` is the memory windows are cut from and ``base`` its address; both stay the same
    for the source's life. ``peek()`` returns ``(pos, avail)``: the unconsumed bytes at hand,
    ``buf[pos : pos + avail]``, without any I/O. ``window(need)`` makes up to ``need`` bytes
    contiguous and returns ``(pos, got)``, ``got < need`` only at the end of the input (a
    stream source reads only as much as that takes). ``consume(n)`` moves past ``n`` bytes
    of the window; positions are void after ``window``, ``readinto`` or ``seek``.
    """

    offset: int
    size: int | None
    buf: memoryview
    base: int

    def readinto(self, mv: memoryview) -> None: ...
    def peek(self) -> tuple[int, int]: ...
    def window(self, need: int) -> tuple[int, int]: ...
    def consume(self, n: int) -> None: ...
    def seek(self, off: int) -> None: ...


class StreamSink:
    """Buffered, never-seeking writer to an fd or a binary file object."""

    def __init__(self, f: Any, wbuf_size: int) -> None:
        self._fd: int | None = f if isinstance(f, int) else None
        self._f = None if isinstance(f, int) else f
        self._arr = aligned_empty(wbuf_size)
        self.buf: memoryview = self._arr.data
        self.base = buffer_address(self.buf)
        self._cap = wbuf_size
        self._used = 0
        self.offset = 0

    def _write_all(self, mv: memoryview) -> None:
        done, n = 0, mv.nbytes
        while done < n:
            try:
                w = os.write(self._fd, mv[done:]) if self._fd is not None else self._f.write(mv[done:])  # type: ignore[union-attr]
            except OSError as e:
                raise CheckptIOError(e.errno, f"write failed after {self.offset} bytes: {e.strerror or e}") from e
            except ValueError as e:  # closed file objects raise ValueError
                raise CheckptIOError(f"write failed after {self.offset} bytes: {e}") from e
            if w is None:
                raise CheckptIOError(f"write would block after {self.offset} bytes (non-blocking file)")
            if w <= 0:
                raise CheckptIOError(f"write returned {w} after {self.offset} bytes")
            done += w
            self.offset += w

    def flush(self) -> None:
        if self._used:
            used, self._used = self._used, 0
            self.offset -= used  # _write_all counts flushed bytes back in
            self._write_all(self.buf[:used])
        if self._f is not None and hasattr(self._f, "flush"):
            try:
                self._f.flush()
            except (OSError, ValueError) as e:
                raise CheckptIOError(f"flush failed after {self.offset} bytes: {e}") from e

    def write(self, mv: memoryview) -> None:
        n = mv.nbytes
        if n >= DIRECT_MIN:
            self.flush()
            self._write_all(mv)
            return
        if self._cap - self._used < n:
            self.flush()
        self.buf[self._used : self._used + n] = mv
        self._used += n
        self.offset += n

    def window(self, need: int) -> tuple[int, int]:
        """The free part of the write buffer, flushed first when less than ``need`` is free.

        ``need`` must not exceed the buffer size.
        """
        if self._cap - self._used < need:
            self.flush()
        return self._used, self._cap - self._used

    def commit(self, n: int) -> None:
        self._used += n
        self.offset += n


class MmioSink:
    """Writer into a caller's contiguous writable region; never writes past its end."""

    def __init__(self, region: Any) -> None:
        self.buf = as_bytes(region, writable=True, what="Checkpt.mmio region")
        self.base = buffer_address(self.buf)
        self.size = self.buf.nbytes
        self.offset = 0

    def write(self, mv: memoryview) -> None:
        n = mv.nbytes
        if self.size - self.offset < n:
            raise CheckptIOError(
                f"mmio region too small: {n} bytes at offset {self.offset} do not fit in {self.size}"
            )
        if n >= DIRECT_MIN:
            _memmove(self.base + self.offset, buffer_address(mv), n)  # releases the GIL
        else:
            self.buf[self.offset : self.offset + n] = mv
        self.offset += n

    def window(self, need: int) -> tuple[int, int]:
        """The rest of the region, whatever ``need`` is (the caller checks the capacity)."""
        return self.offset, self.size - self.offset

    def commit(self, n: int) -> None:
        self.offset += n

    def flush(self) -> None:
        return None

    def release(self) -> None:
        """Drop this sink's export of the region, so that the caller may close or resize it.

        The sink is unusable afterwards.
        """
        self.buf.release()


class StreamSource:
    """Read-ahead reader from an fd or a binary file object.

    Offsets count from the file start for a seekable input, else from the
    position at construction. May read past the checkpoint's end (read-ahead).
    """

    def __init__(self, f: Any, rbuf_size: int) -> None:
        self._fd: int | None = f if isinstance(f, int) else None
        self._f = None if isinstance(f, int) else f
        self._arr = aligned_empty(rbuf_size)
        self.buf: memoryview = self._arr.data
        self.base = buffer_address(self.buf)
        self._cap = rbuf_size
        self._lo = 0  # first unconsumed byte in the buffer
        self._hi = 0  # one past the last valid byte
        self.size: int | None = None
        self.seekable = False
        self.offset = 0
        try:
            if self._fd is not None:
                pos = os.lseek(self._fd, 0, os.SEEK_CUR)
                end = os.fstat(self._fd).st_size
                import stat

                if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                    raise OSError("not a regular file")
            else:
                if not (hasattr(self._f, "seekable") and self._f.seekable()):  # type: ignore[union-attr]
                    raise OSError("not seekable")
                pos = self._f.tell()  # type: ignore[union-attr]
                end = self._f.seek(0, os.SEEK_END)  # type: ignore[union-attr]
                self._f.seek(pos)  # type: ignore[union-attr]
            if pos > end:
                raise InvalidArgumentError(f"Restore.stream: position {pos} is past the end of the file ({end})")
            self.offset, self.size, self.seekable = pos, end, True
        except (OSError, AttributeError, ValueError) as e:
            if isinstance(e, InvalidArgumentError):
                raise
            self.offset, self.size, self.seekable = 0, None, False

    def _read(self, mv: memoryview) -> int:
        try:
            if self._fd is not None:
                return os.readv(self._fd, [mv])
            if hasattr(self._f, "readinto"):
                r = self._f.readinto(mv)  # type: ignore[union-attr]
            else:
                data = self._f.read(mv.nbytes)  # type: ignore[union-attr]
                r = len(data)
                mv[:r] = data
        except OSError as e:
            raise CheckptIOError(e.errno, f"read failed at offset {self.offset}: {e.strerror or e}") from e
        except ValueError as e:
            raise CheckptIOError(f"read failed at offset {self.offset}: {e}") from e
        if r is None:
            raise CheckptIOError(f"read would block at offset {self.offset} (non-blocking file)")
        return int(r)

    def peek(self) -> tuple[int, int]:
        """The bytes already read ahead and not consumed: ``(pos, avail)``; no I/O."""
        return self._lo, self._hi - self._lo

    def window(self, need: int) -> tuple[int, int]:
        """Make up to ``need`` bytes contiguous in the buffer; fewer only at EOF.

        Reads (blocking) only while fewer than ``need`` bytes are at hand. ``need`` must
        not exceed the buffer size.
        """
        avail = self._hi - self._lo
        if avail < need:
            if self._lo:
                self.buf[:avail] = self.buf[self._lo : self._hi]
                self._lo, self._hi = 0, avail
            while self._hi - self._lo < need:
                r = self._read(self.buf[self._hi : self._cap])
                if r == 0:
                    break
                self._hi += r
        return self._lo, min(self._hi - self._lo, need)

    def consume(self, n: int) -> None:
        self._lo += n
        self.offset += n

    def readinto(self, mv: memoryview) -> None:
        n = mv.nbytes
        take = min(n, self._hi - self._lo)
        if take:
            mv[:take] = self.buf[self._lo : self._lo + take]
            self.consume(take)
        done = take
        while done < n:
            if n - done >= DIRECT_MIN:
                r = self._read(mv[done:])
                if r == 0:
                    raise CheckptIOError(f"unexpected EOF at offset {self.offset}: {n - done} more bytes expected")
                done += r
                self.offset += r
            else:
                _, got = self.window(n - done)
                if got < n - done:
                    raise CheckptIOError(
                        f"unexpected EOF at offset {self.offset + got}: {n - done - got} more bytes expected"
                    )
                mv[done:n] = self.buf[self._lo : self._lo + n - done]
                self.consume(n - done)
                done = n

    def seek(self, off: int) -> None:
        try:
            if self._fd is not None:
                os.lseek(self._fd, off, os.SEEK_SET)
            else:
                self._f.seek(off)  # type: ignore[union-attr]
        except (OSError, ValueError) as e:
            raise CheckptIOError(f"seek to {off} failed: {e}") from e
        self._lo = self._hi = 0
        self.offset = off


class MmioSource:
    """Reader of a caller's contiguous region; offsets count from the region's start."""

    def __init__(self, region: Any) -> None:
        mv = as_bytes(region, writable=False, what="Restore.mmio region")
        self.base = buffer_address(mv)  # before toreadonly(): writable buffers take the fast path
        self.buf = mv if mv.readonly else mv.toreadonly()
        self.size: int | None = self.buf.nbytes
        self.seekable = True
        self.offset = 0

    def peek(self) -> tuple[int, int]:
        """The rest of the region: ``(pos, avail)``."""
        return self.offset, self.buf.nbytes - self.offset

    def window(self, need: int) -> tuple[int, int]:
        return self.offset, min(need, self.buf.nbytes - self.offset)

    def consume(self, n: int) -> None:
        self.offset += n

    def readinto(self, mv: memoryview) -> None:
        n = mv.nbytes
        if self.buf.nbytes - self.offset < n:
            raise CheckptIOError(
                f"mmio region too small: {n} bytes at offset {self.offset} "
                f"but the region ends at {self.buf.nbytes}"
            )
        if n >= DIRECT_MIN:
            _memmove(buffer_address(mv), self.base + self.offset, n)  # no GIL
        else:
            mv[:] = self.buf[self.offset : self.offset + n]
        self.offset += n

    def view(self, n: int) -> memoryview:
        if self.buf.nbytes - self.offset < n:
            raise CheckptIOError(
                f"mmio region too small: {n} bytes at offset {self.offset} "
                f"but the region ends at {self.buf.nbytes}"
            )
        v = self.buf[self.offset : self.offset + n]
        self.offset += n
        return v

    def seek(self, off: int) -> None:
        self.offset = off

    def release(self) -> None:
        """Drop this source's export of the region (views returned by :meth:`view` keep it alive
        on their own). The source is unusable afterwards."""
        self.buf.release()
