"""The frame engine: :class:`Checkpt` writes and :class:`Restore` reads fd_checkpt frames.

Concepts
--------
A Checkpt or Restore is made once, in one of two I/O modes, and then driven
through frames:

    ck = Checkpt.stream(f)            # or Checkpt.mmio(region)
    off0 = ck.frame_open(FrameStyle.LZ4)
    ck.buf(header_bytes)              # any C-contiguous buffer, numpy arrays included
    ck.buf(array)
    off1 = ck.frame_close()           # [off0, off1) is the frame
    ck.fini()

A Restore replays the *same* sequence of styles and buffer sizes; nothing in the
bytes says what they are. Both objects have three states: idle, in a frame,
and failed. **Any error moves the object to failed, and then only fini()
works** (failure is sticky, as in fd_checkpt); the checkpoint being written or
read must then be discarded. Neither object is thread-safe: parallel use means
one object per thread, each on its own frames.

Offsets: a Checkpt counts from the first byte it wrote. A Restore counts from
the region's start (mmio), from the file's start (a seekable file) or from the
position at construction (a pipe). Stream and mmio modes write the same bytes.

IMPORTANT SAFETY TIP! ``Restore.view`` returns a read-only view *into the
region*: it aliases the caller's buffer or mapping and is valid only while that
stays alive and unchanged.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any, Final

from . import _lz4
from ._backend import (
    MmioSink,
    MmioSource,
    Sink,
    Source,
    StreamSink,
    StreamSource,
    as_bytes,
)
from ._codec import FrameDecoder, FrameEncoder
from .errors import (
    CheckptError,
    InvalidArgumentError,
    UnsupportedError,
)
from .format import (
    META_MAX,
    RBUF_MIN,
    WBUF_MIN,
    FrameStyle,
    parse_style,
)

__all__ = ["DEFAULT_RBUF_SIZE", "DEFAULT_WBUF_SIZE", "Checkpt", "Restore"]

#: Default stream buffer sizes. Any size >= 69632 gives the same bytes.
DEFAULT_WBUF_SIZE: Final = 1 << 20
DEFAULT_RBUF_SIZE: Final = 1 << 20

_IDLE: Final = 0
# Plain-int frame styles for the per-call paths (buf runs once per array): a module
# constant compares without the enum's class-attribute lookup and __eq__
# (``benchmarks/bench_micro.py --case enum``).
_RAW: Final = int(FrameStyle.RAW)
_LZ4: Final = int(FrameStyle.LZ4)
_STYLES: Final[dict[object, FrameStyle]] = {0: FrameStyle.RAW, 1: FrameStyle.RAW, 2: FrameStyle.LZ4}
_FAILED: Final = -1
_DONE: Final = -2  # after fini


def _check_stream_args(call: str, f: Any, methods: tuple[str, ...], size_name: str, size: Any, size_min: int) -> None:
    """``f`` must be a non-negative int fd or a binary (not text) file object with one of ``methods``."""
    if isinstance(f, bool | io.TextIOBase) or not (isinstance(f, int) or any(hasattr(f, m) for m in methods)):
        raise InvalidArgumentError(f"{call}: expected an int fd or a binary file object, got {type(f).__name__}")
    if isinstance(f, int) and f < 0:
        raise InvalidArgumentError(f"{call}: bad file descriptor {f}")
    if isinstance(size, bool) or not isinstance(size, int) or size < size_min:
        raise InvalidArgumentError(f"{call}: {size_name} must be an int >= {size_min}, got {size!r}")


def _meta_too_large(n: int, call: str) -> InvalidArgumentError:
    """The error for a ``meta=True`` buffer of ``n > META_MAX`` bytes (the caller tests and raises)."""
    return InvalidArgumentError(f"{call}: meta buffer of {n} bytes exceeds META_MAX ({META_MAX})")


class _FrameStateMachine:
    """The state machine Checkpt and Restore share: idle, in a frame, failed, finished.

    Subclasses do the I/O; this class only checks which calls the state allows and moves
    between states (module docstring).
    """

    _name = "object"

    def __init__(self, mode: str) -> None:
        self._state = _IDLE  # 0 idle, >0 the open frame's style, -1 failed, -2 finished
        self._mode = mode
        self._frame_off = 0

    @property
    def mode(self) -> str:
        """``"stream"`` or ``"mmio"``."""
        return self._mode

    @property
    def in_frame(self) -> bool:
        """True between frame_open and frame_close."""
        return self._state > 0

    @property
    def can_open(self) -> bool:
        """True when idle: not in a frame, not failed, not finished."""
        return self._state == _IDLE

    @property
    def failed(self) -> bool:
        """True after any error; only fini() works then."""
        return self._state == _FAILED

    @property
    def frame_style(self) -> FrameStyle | None:
        """Style of the open frame, or None when not in a frame."""
        return FrameStyle(self._state) if self._state > 0 else None

    def _fail(self) -> None:
        """Move to failed (sticky: only fini() works then), unless already finished.

        Callers re-raise the error that caused it; the object does not keep it.
        """
        if self._state != _DONE:
            self._state = _FAILED

    def _usable(self, call: str) -> None:
        if self._state == _FAILED:
            raise InvalidArgumentError(f"{self._name}.{call}: object has failed; only fini() is allowed")
        if self._state == _DONE:
            raise InvalidArgumentError(f"{self._name}.{call}: object is finished (fini was called)")

    def _need_frame(self, call: str) -> int:
        self._usable(call)
        if self._state == _IDLE:
            raise InvalidArgumentError(f"{self._name}.{call}: not in a frame")
        return self._state

    def _open_style(self, style: object, call: str) -> FrameStyle:
        self._usable(call)
        if self._state > 0:
            raise InvalidArgumentError(
                f"{self._name}.{call}: already in a frame (opened at offset {self._frame_off})"
            )
        # Fast path for the usual 0/1/2 or FrameStyle argument: one dict lookup instead of
        # parse_style's general validation, once per frame (``benchmarks/bench_micro.py --case
        # style``). type() checks keep bools (and int subclasses) on parse_style's strict path.
        fast = _STYLES.get(style) if type(style) is int or type(style) is FrameStyle else None
        st = fast if fast is not None else parse_style(style)
        if st == _LZ4 and not _lz4.available():
            raise UnsupportedError(f"{self._name}.{call}: LZ4 frames are unsupported: no LZ4 library found")
        return st

    def _release(self) -> None:
        return None

    def fini(self) -> None:
        """Finish the object and release its resources.

        Raises InvalidArgumentError, and moves the object to failed, when
        called inside a frame; a second fini() then succeeds. Calling fini()
        again after success is a no-op. Writes nothing.
        """
        if self._state > 0:
            self._state = _FAILED
            raise InvalidArgumentError(
                f"{self._name}.fini: called inside the frame opened at offset {self._frame_off}; "
                "the object is now failed"
            )
        self._state = _DONE
        self._release()


class Checkpt(_FrameStateMachine):
    """Writes fd_checkpt frames to a stream or into a memory region.

    Make one with :meth:`stream` or :meth:`mmio`. See the module docstring for
    the state machine. A Checkpt owns one LZ4 frame encoder, made at its first LZ4
    frame open: one LZ4 stream (created fresh, reset with ``LZ4_resetStream_fast`` at
    every LZ4 frame open) and a 196608-byte gather ring, exactly as fd_checkpt, so
    its bytes equal fd_checkpt's.
    """

    _name = "Checkpt"

    def __init__(self, sink: Sink, mode: str) -> None:
        super().__init__(mode)
        self._sink = sink
        self._enc: FrameEncoder | None = None

    @classmethod
    def stream(cls, f: Any, *, wbuf_size: int = DEFAULT_WBUF_SIZE) -> Checkpt:
        """A writer to ``f``: an int file descriptor or a binary file object with ``write``.

        The writer never seeks, so pipes, sockets and stdout work, and offsets
        count from the first byte this object writes. ``wbuf_size`` (at least
        69632) sizes the write buffer; it never changes the bytes. Bytes reach
        ``f`` at the latest when a frame closes. ``f`` stays owned by the
        caller and is not closed.

        Raises InvalidArgumentError for a negative fd, an object without
        ``write``, or a too-small ``wbuf_size``.
        """
        _check_stream_args("Checkpt.stream", f, ("write",), "wbuf_size", wbuf_size, WBUF_MIN)
        return cls(StreamSink(f, wbuf_size), "stream")

    @classmethod
    def mmio(cls, region: Any) -> Checkpt:
        """A writer into ``region``, any writable C-contiguous buffer (bytearray, mmap, numpy, memmap).

        Offsets count from the region's start; nothing is written past its end:
        a RAW buffer that does not fit raises CheckptIOError (nothing of it is
        written), an LZ4 chunk that does not fit raises CompressionError.
        The caller keeps ownership of ``region`` and must keep it alive.
        """
        return cls(MmioSink(region), "mmio")

    @property
    def offset(self) -> int:
        """Bytes this object has written so far (buffered bytes included)."""
        return self._sink.offset

    def frame_open(self, style: object = 0) -> int:
        """Open a frame of ``style`` (0 or RAW, LZ4, "raw", "lz4") and return its offset.

        Raises InvalidArgumentError when in a frame, failed or finished, and
        UnsupportedError for an unknown style or LZ4 without a library; the
        object is failed afterwards.
        """
        try:
            st = self._open_style(style, "frame_open")
            if st == _LZ4:
                if self._enc is None:
                    self._enc = FrameEncoder("Checkpt.buf: ")
                self._enc.start(self._sink.offset, fresh=False)
        except BaseException:
            self._fail()
            raise
        self._state = int(st)
        self._frame_off = self._sink.offset
        return self._frame_off

    def buf(self, data: Any, *, meta: bool = False) -> None:
        """Append the bytes of ``data`` (any C-contiguous buffer) to the open frame.

        With ``meta=True`` the size is limited to META_MAX (65536), as
        fd_checkpt_meta. A zero-size buffer writes nothing. The bytes are
        consumed (copied or written) before the call returns.

        Raises InvalidArgumentError outside a frame (even for 0 bytes) or for
        a bad buffer; CheckptIOError on a write failure or a RAW frame that
        does not fit an mmio region; CompressionError if LZ4 fails or an LZ4
        chunk does not fit. The object is failed afterwards; in mmio mode
        some chunks of a failing LZ4 buffer may already be written.
        """
        try:
            st = self._state
            if st <= 0:
                self._need_frame("buf")  # raises
            mv = as_bytes(data, writable=False, what="Checkpt.buf data")
            n = mv.nbytes
            if meta and n > META_MAX:
                raise _meta_too_large(n, "Checkpt.buf")
            if n == 0:
                return
            if st == _RAW:
                self._sink.write(mv)
            else:
                enc = self._enc
                assert enc is not None  # made by frame_open
                enc.write(self._sink, mv, n)
        except BaseException:
            self._fail()
            raise

    def frame_close(self) -> int:
        """Close the open frame, flush stream output, and return one past the frame's last byte.

        Raises InvalidArgumentError when not in a frame, CheckptIOError when
        the flush fails; the object is failed afterwards.
        """
        try:
            self._need_frame("frame_close")
            self._sink.flush()
        except BaseException:
            self._fail()
            raise
        self._state = _IDLE
        return self._sink.offset

    @contextlib.contextmanager
    def frame(self, style: object = 0) -> Iterator[Checkpt]:
        """``with ck.frame(style):`` opens a frame and closes it on normal exit.

        On an exception inside the block the frame is not closed and the
        object is marked failed (its output is incomplete).
        """
        self.frame_open(style)
        try:
            yield self
        except BaseException:
            self._fail()
            raise
        self.frame_close()

    def _release(self) -> None:
        if self._enc is not None:
            self._enc.free()
            self._enc = None
        if isinstance(self._sink, MmioSink):
            self._sink.release()  # let the caller close or resize its region (an mmap, say)

    def __enter__(self) -> Checkpt:
        return self

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        if et is not None:
            self._fail()
            with contextlib.suppress(CheckptError):
                self.fini()
            return
        self.fini()


class Restore(_FrameStateMachine):
    """Reads fd_checkpt frames from a stream or a memory region.

    Make one with :meth:`stream` or :meth:`mmio`, then replay the writer's
    sequence of frame styles and buffer sizes. Stricter than fd_restore: every
    LZ4 block must decode to exactly its chunk's size.
    """

    _name = "Restore"

    def __init__(self, src: Source, mode: str) -> None:
        super().__init__(mode)
        self._src = src
        self._dec: FrameDecoder | None = None
        self._buf_index = 0

    def _release(self) -> None:
        self._dec = None
        if isinstance(self._src, MmioSource):
            # Views returned by view() keep the region alive on their own; this object no longer does.
            self._src.release()

    @classmethod
    def stream(cls, f: Any, *, rbuf_size: int = DEFAULT_RBUF_SIZE) -> Restore:
        """A reader from ``f``: an int file descriptor or a binary file object with ``readinto``/``read``.

        Offsets count from the file's start when ``f`` is seekable, else from
        where it was at construction. It reads ahead by up to ``rbuf_size``
        (at least 69632) bytes, so it may consume bytes past the checkpoint's
        end. ``f`` stays owned by the caller.

        Raises InvalidArgumentError for a bad fd, object or ``rbuf_size``.
        """
        _check_stream_args("Restore.stream", f, ("read", "readinto"), "rbuf_size", rbuf_size, RBUF_MIN)
        return cls(StreamSource(f, rbuf_size), "stream")

    @classmethod
    def mmio(cls, region: Any) -> Restore:
        """A reader of ``region``, any C-contiguous buffer (bytes, mmap, numpy array, np.memmap).

        The caller keeps ownership; it must stay alive and unchanged while
        this object or any view it returned is in use.
        """
        return cls(MmioSource(region), "mmio")

    @property
    def offset(self) -> int:
        """Offset of the next byte to be restored."""
        return self._src.offset

    @property
    def size(self) -> int | None:
        """Size of the region or file; None for an unseekable stream (fd_restore_sz)."""
        return self._src.size

    def frame_open(self, style: object = 0) -> int:
        """Open a frame of ``style`` at the current offset and return that offset.

        The style must be the one the writer used; nothing in the bytes says
        it. Errors as :meth:`Checkpt.frame_open`.
        """
        try:
            st = self._open_style(style, "frame_open")
            if st == _LZ4:
                if self._dec is None:
                    self._dec = FrameDecoder("Restore.buf: ")
                self._dec.start(self._src.offset)
        except BaseException:
            self._fail()
            raise
        self._buf_index = 0
        self._state = int(st)
        self._frame_off = self._src.offset
        return self._frame_off

    def buf(self, out: Any, *, meta: bool = False) -> None:
        """Fill ``out`` (a writable C-contiguous buffer) with the next ``len(out)`` bytes of the frame.

        Raises InvalidArgumentError outside a frame or for a bad buffer;
        CheckptIOError on a read failure or EOF (stream) or a RAW region
        overrun (mmio); CompressionError for a bad chunk header, a truncated
        chunk in mmio mode, or a block that does not decode to exactly its
        chunk size. On error ``out`` may be partly written and the object is
        failed.
        """
        try:
            st = self._state
            if st <= 0:
                self._need_frame("buf")  # raises
            mv = as_bytes(out, writable=True, what="Restore.buf out")
            n = mv.nbytes
            if meta and n > META_MAX:
                raise _meta_too_large(n, "Restore.buf")
            if n == 0:
                self._buf_index += 1  # zero-size calls count: messages name the call index
                return
            if st == _RAW:
                self._src.readinto(mv)
            else:
                dec = self._dec
                assert dec is not None  # made by frame_open
                dec.read(self._src, mv, n, self._buf_index)
            self._buf_index += 1
        except BaseException:
            self._fail()
            raise

    def view(self, nbytes: int) -> memoryview:
        """Return a read-only zero-copy view of the next ``nbytes`` and advance, as buf() would.

        Only in mmio mode inside a RAW frame; InvalidArgumentError otherwise
        (the object is then failed). CheckptIOError if the region ends first.
        IMPORTANT SAFETY TIP! The view aliases the region.
        """
        try:
            st = self._need_frame("view")
            if self._mode != "mmio" or st != _RAW:
                raise InvalidArgumentError(
                    f"Restore.view: only in mmio mode inside a RAW frame (mode {self._mode}, "
                    f"frame style {FrameStyle(st).name})"
                )
            if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
                raise InvalidArgumentError(f"Restore.view: nbytes must be a non-negative int, got {nbytes!r}")
            assert isinstance(self._src, MmioSource)
            v = self._src.view(nbytes)
            self._buf_index += 1
            return v
        except BaseException:
            self._fail()
            raise

    def frame_close(self) -> int:
        """Close the open frame and return the offset one past its last byte (nothing is verified)."""
        try:
            self._need_frame("frame_close")
        except BaseException:
            self._fail()
            raise
        self._state = _IDLE
        return self._src.offset

    @contextlib.contextmanager
    def frame(self, style: object = 0) -> Iterator[Restore]:
        """``with rs.frame(style):`` opens a frame and closes it on normal exit."""
        self.frame_open(style)
        try:
            yield self
        except BaseException:
            self._fail()
            raise
        self.frame_close()

    def seek(self, offset: int) -> None:
        """Position the reader so that the next frame opens at ``offset``.

        Requires idle state, a seekable input (mmio or a regular file) and
        ``0 <= offset <= size``; InvalidArgumentError otherwise, CheckptIOError
        if the seek fails. The object is failed after any error.
        """
        try:
            self._usable("seek")
            if self._state > 0:
                raise InvalidArgumentError(f"Restore.seek: in the frame opened at offset {self._frame_off}")
            if not getattr(self._src, "seekable", False):
                raise InvalidArgumentError("Restore.seek: the input is not seekable")
            size = self._src.size
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or (
                size is not None and offset > size
            ):
                raise InvalidArgumentError(f"Restore.seek: offset {offset!r} is outside [0, {size}]")
            self._src.seek(offset)
        except BaseException:
            self._fail()
            raise

    def __enter__(self) -> Restore:
        return self

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        if et is not None:
            self._fail()
            with contextlib.suppress(CheckptError):
                self.fini()
            return
        self.fini()
