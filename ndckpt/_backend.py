"""I/O modes: where frame bytes go (sinks) and come from (sources).

Two backends, chosen once when a Checkpt/Restore is made:

- *stream*: an int file descriptor or a binary file object (file, pipe,
  socket, stdout). The sink never seeks. Small writes are gathered in a write
  buffer; large RAW writes go straight from the caller's memory to the file.
  The source reads ahead into a read buffer for LZ4 chunks and small reads,
  and reads large RAW buffers straight into the caller's memory.
- *mmio*: any contiguous buffer (bytearray, mmap, numpy array, np.memmap).
  Bounds are checked on every call and nothing is written past the region.

Backends know nothing about LZ4: the engine asks a sink for a writable window
(address and capacity) and commits what it wrote, and asks a source for a
readable window. Errors are raised as :class:`~ndckpt.errors.CheckptIOError`;
the engine turns them into a failed state.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Protocol

import numpy as np

from ._memory import aligned_empty
from .errors import CheckptIOError, InvalidArgumentError

__all__ = ["MmioSink", "MmioSource", "Sink", "Source", "StreamSink", "StreamSource", "as_bytes"]

#: RAW writes/reads at least this large bypass the stream buffer (one syscall, no copy).
DIRECT_MIN = 1 << 16
_memmove = ctypes.memmove
_addressof = ctypes.addressof
_c_char = ctypes.c_char


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


def buffer_address(mv: memoryview) -> int:
    """Address of the first byte of a contiguous memoryview (0 when empty).

    Writable buffers go through ``ctypes.c_char.from_buffer``, the cheaper
    path; read-only ones, which ctypes refuses to wrap, through numpy's
    ``ndarray.ctypes``, which builds a helper object per call
    (``benchmarks/bench_micro.py --case address`` times both).
    """
    if not mv.nbytes:
        return 0
    if not mv.readonly:
        return _addressof(_c_char.from_buffer(mv))
    return int(np.frombuffer(mv, dtype=np.uint8).ctypes.data)


class Sink(Protocol):
    """Where a Checkpt's bytes go. ``offset`` counts bytes accepted so far."""

    offset: int

    def write(self, mv: memoryview) -> None: ...
    def window(self, need: int) -> tuple[int, int]: ...
    def commit_chunk(self, csz: int) -> None: ...
    def flush(self) -> None: ...


class Source(Protocol):
    """Where a Restore's bytes come from. ``offset`` counts from the start of the checkpoint."""

    offset: int
    size: int | None

    def readinto(self, mv: memoryview) -> None: ...
    def window(self, need: int) -> tuple[int, int]: ...
    def consume(self, n: int) -> None: ...
    def header3(self) -> int: ...
    def block(self, max_stored: int) -> tuple[int, int]: ...
    def seek(self, off: int) -> None: ...


class StreamSink:
    """Buffered, never-seeking writer to an fd or a binary file object."""

    def __init__(self, f: Any, wbuf_size: int) -> None:
        self._fd: int | None = f if isinstance(f, int) else None
        self._f = None if isinstance(f, int) else f
        self._buf = aligned_empty(wbuf_size)
        self._base = buffer_address(self._buf.data)
        self._mv = self._buf.data
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
            self._write_all(self._mv[:used])
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
        self._mv[self._used : self._used + n] = mv
        self._used += n
        self.offset += n

    def window(self, need: int) -> tuple[int, int]:
        if self._cap - self._used < need:
            self.flush()
        return self._base + self._used, self._cap - self._used

    def commit_chunk(self, csz: int) -> None:
        """Store ``csz`` as the 3-byte little-endian header at the window start, then
        commit the header and the ``csz`` block bytes written after it."""
        u, mv = self._used, self._mv
        mv[u] = csz & 0xFF
        mv[u + 1] = (csz >> 8) & 0xFF
        mv[u + 2] = csz >> 16
        self._used = u + csz + 3
        self.offset += csz + 3


class MmioSink:
    """Writer into a caller's contiguous writable region; never writes past its end."""

    def __init__(self, region: Any) -> None:
        self._mv = as_bytes(region, writable=True, what="Checkpt.mmio region")
        self._base = buffer_address(self._mv)
        self.size = self._mv.nbytes
        self.offset = 0

    def write(self, mv: memoryview) -> None:
        n = mv.nbytes
        if self.size - self.offset < n:
            raise CheckptIOError(
                f"mmio region too small: {n} bytes at offset {self.offset} do not fit in {self.size}"
            )
        if n >= DIRECT_MIN:
            _memmove(self._base + self.offset, buffer_address(mv), n)  # releases the GIL
        else:
            self._mv[self.offset : self.offset + n] = mv
        self.offset += n

    def window(self, need: int) -> tuple[int, int]:
        return self._base + self.offset, self.size - self.offset

    def commit_chunk(self, csz: int) -> None:
        """As :meth:`StreamSink.commit_chunk`."""
        o, mv = self.offset, self._mv
        mv[o] = csz & 0xFF
        mv[o + 1] = (csz >> 8) & 0xFF
        mv[o + 2] = csz >> 16
        self.offset = o + csz + 3

    def flush(self) -> None:
        return None


class StreamSource:
    """Read-ahead reader from an fd or a binary file object.

    Offsets count from the file start for a seekable input, else from the
    position at construction. May read past the checkpoint's end (read-ahead).
    """

    def __init__(self, f: Any, rbuf_size: int) -> None:
        self._fd: int | None = f if isinstance(f, int) else None
        self._f = None if isinstance(f, int) else f
        self._buf = aligned_empty(rbuf_size)
        self._base = buffer_address(self._buf.data)
        self._mv = self._buf.data
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

    def window(self, need: int) -> tuple[int, int]:
        """Make up to ``need`` bytes contiguous in the buffer; fewer only at EOF."""
        avail = self._hi - self._lo
        if avail < need:
            if self._lo:
                self._mv[: avail] = self._mv[self._lo : self._hi]
                self._lo, self._hi = 0, avail
            while self._hi - self._lo < need:
                r = self._read(self._mv[self._hi : self._cap])
                if r == 0:
                    break
                self._hi += r
        return self._base + self._lo, min(self._hi - self._lo, need)

    def header3(self) -> int:
        """The 3-byte little-endian value at the current position, without consuming it.

        Returns ``-1 - available`` when fewer than 3 bytes remain before EOF.
        """
        lo = self._lo
        if self._hi - lo < 3:
            _, got = self.window(3)
            if got < 3:
                return -1 - got
            lo = self._lo
        mv = self._mv
        return mv[lo] | mv[lo + 1] << 8 | mv[lo + 2] << 16

    def block(self, max_stored: int) -> tuple[int, int]:
        """Locate the next LZ4 chunk without consuming it: (address of its block, csz).

        The chunk is a 3-byte little-endian csz, then csz block bytes; it is
        accepted when ``1 <= csz`` and ``csz + 3 <= max_stored`` and all of it
        is available, and (0, 0) is returned otherwise (the caller then finds
        out why with :meth:`header3` and :meth:`window`).
        """
        lo = self._lo
        if self._hi - lo < 3:
            _, got = self.window(3)
            if got < 3:
                return 0, 0
            lo = self._lo
        mv = self._mv
        csz = mv[lo] | mv[lo + 1] << 8 | mv[lo + 2] << 16
        if csz < 1 or csz + 3 > max_stored:
            return 0, 0
        if self._hi - lo < csz + 3:
            addr, got = self.window(csz + 3)
            return (addr + 3, csz) if got == csz + 3 else (0, 0)
        return self._base + lo + 3, csz

    def consume(self, n: int) -> None:
        self._lo += n
        self.offset += n

    def readinto(self, mv: memoryview) -> None:
        n = mv.nbytes
        take = min(n, self._hi - self._lo)
        if take:
            mv[:take] = self._mv[self._lo : self._lo + take]
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
                mv[done:n] = self._mv[self._lo : self._lo + n - done]
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
        self._base = buffer_address(mv)  # before toreadonly(): writable buffers take the fast path
        self.mv = mv if mv.readonly else mv.toreadonly()
        self.size: int | None = self.mv.nbytes
        self.seekable = True
        self.offset = 0

    def window(self, need: int) -> tuple[int, int]:
        return self._base + self.offset, min(need, self.mv.nbytes - self.offset)

    def header3(self) -> int:
        """As :meth:`StreamSource.header3`."""
        o, mv = self.offset, self.mv
        if mv.nbytes - o < 3:
            return -1 - (mv.nbytes - o)
        return mv[o] | mv[o + 1] << 8 | mv[o + 2] << 16

    def block(self, max_stored: int) -> tuple[int, int]:
        """As :meth:`StreamSource.block`."""
        o, mv = self.offset, self.mv
        avail = mv.nbytes - o
        if avail >= 3:
            csz = mv[o] | mv[o + 1] << 8 | mv[o + 2] << 16
            if csz > 0 and csz + 3 <= max_stored and csz + 3 <= avail:
                return self._base + o + 3, csz
        return 0, 0

    def consume(self, n: int) -> None:
        self.offset += n

    def readinto(self, mv: memoryview) -> None:
        n = mv.nbytes
        if self.mv.nbytes - self.offset < n:
            raise CheckptIOError(
                f"mmio region too small: {n} bytes at offset {self.offset} "
                f"but the region ends at {self.mv.nbytes}"
            )
        if n >= DIRECT_MIN:
            _memmove(buffer_address(mv), self._base + self.offset, n)  # no GIL
        else:
            mv[:] = self.mv[self.offset : self.offset + n]
        self.offset += n

    def view(self, n: int) -> memoryview:
        if self.mv.nbytes - self.offset < n:
            raise CheckptIOError(
                f"mmio region too small: {n} bytes at offset {self.offset} "
                f"but the region ends at {self.mv.nbytes}"
            )
        v = self.mv[self.offset : self.offset + n]
        self.offset += n
        return v

    def seek(self, off: int) -> None:
        self.offset = off
