"""The LZ4 frame codec: fd_checkpt's chunks, their 3-byte sizes, the gather ring and the history.

One :class:`FrameEncoder` (an ``LZ4_stream_t`` and a 196608-byte gather ring) encodes LZ4
frames one after another, and one :class:`FrameDecoder` (a 256 KiB history buffer) decodes
them; both are reused across frames, so a frame costs no new stream, ring or history. They
write into a :class:`~ndckpt._backend.Sink` and read from a :class:`~ndckpt._backend.Source`,
which only move bytes; everything about the LZ4 frame format (docs/fd_checkpt.md sections
3, 5 and 6) is here.

Two ways to begin a frame, because a fresh LZ4 stream encodes differently from a reused
one (docs/fd_checkpt.md section 5.5):

- ``start(frame_off, fresh=False)``: ``LZ4_resetStream_fast``, what fd_checkpt does at each
  LZ4 frame open. :class:`~ndckpt.engine.Checkpt` does this: one Checkpt is one stream, so
  its bytes are upstream's.
- ``start(frame_off, fresh=True)``: ``LZ4_initStream``, which leaves the stream exactly as
  if just created. The frame's bytes are then those of a brand-new writer's first frame,
  whatever the encoder encoded before: the container's frames are defined that way (each
  frame written by its own fresh writer), so they do not depend on which thread, or which
  encoder, writes them.

Either way the ring cursor goes back to 0, where a new writer starts. A decoder needs no such
choice: every frame starts with empty history.

:func:`take_encoder` / :func:`give_back_encoder` (and the decoder pair) lend each thread
one spare codec, so that the container's per-frame work (``encode_frame``, ``decode_lz4``)
reuses it across the frames of a call. A pool thread's spare goes when the thread ends (the
container's pools end with the call); the calling thread keeps its spare (about 470 KiB for
both) for its next call.

Neither class is thread-safe: one object per thread.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Final

from . import _lz4
from ._backend import MmioSource, Sink, Source
from ._memory import aligned_empty, buffer_address
from .errors import CheckptIOError, CompressionError, UnsupportedError
from .format import CHUNK_USZ_MAX, CSZ_HDR, CSZ_LIMIT, GBUF_SZ, chunk_csz_max

__all__ = [
    "HIST_SZ",
    "SMALL_COPY",
    "FrameDecoder",
    "FrameEncoder",
    "give_back_decoder",
    "give_back_encoder",
    "take_decoder",
    "take_encoder",
]

#: Chunks up to this size are copied with a memoryview slice: no address lookup and no ctypes
#: call, whose fixed cost dominates small copies (``benchmarks/bench_micro.py --case copy``).
SMALL_COPY: Final = 4096
#: The decoder's history buffer. Buffers of at most one chunk decode into it (right after the
#: frame's previous output, so liblz4 takes its prefix path) and are copied out; when it
#: fills, its last 64 KiB move to the front.
HIST_SZ: Final = 4 * CHUNK_USZ_MAX
_memmove = ctypes.memmove


def _unavailable(who: str) -> UnsupportedError:
    return UnsupportedError(f"{who}: LZ4 frames are unsupported: no LZ4 library found")


class FrameEncoder:
    """Encodes LZ4 frames: one ``LZ4_stream_t`` and one 196608-byte gather ring, reused.

    ``label`` prefixes error messages (``"Checkpt.buf: "``). Owns the stream (freed by
    :meth:`free`, or when collected) and the ring. Raises UnsupportedError when no LZ4
    library is available, MemoryError when liblz4 cannot allocate the stream.
    """

    __slots__ = ("_cursor", "_ring", "_ring_addr", "_ring_mv", "_stream", "frame_off", "label")

    def __init__(self, label: str = "") -> None:
        if not _lz4.available():
            raise _unavailable(label.rstrip(": ") or "FrameEncoder")
        self.label = label
        self.frame_off = 0
        self._stream = _lz4.LZ4Stream()
        self._ring = aligned_empty(GBUF_SZ)
        self._ring_mv: memoryview = self._ring.data
        self._ring_addr = buffer_address(self._ring_mv)
        self._cursor = 0

    def start(self, frame_off: int, *, fresh: bool) -> None:
        """Begin an LZ4 frame (see the module docstring for ``fresh``).

        ``frame_off`` is the frame's offset, for error messages only. The bytes of a
        frame do not depend on anything encoded before it (with ``fresh``, not even on
        whether anything was).
        """
        if fresh:
            self._stream.reset_full()
        else:
            self._stream.reset_fast()
        self._cursor = 0
        self.frame_off = frame_off

    def write(self, sink: Sink, mv: memoryview, n: int) -> None:
        """Append the ``n = mv.nbytes > 0`` bytes of ``mv`` (a flat byte view) to the frame.

        Cuts them into chunks of at most 64 KiB, copies each into the ring, compresses it
        there (acceleration 1) and emits its 3-byte size and LZ4 block into ``sink``
        (docs/fd_checkpt.md section 5.2). ``mv`` is consumed before the call returns.

        Raises CompressionError when the sink has no room for a chunk (a memory sink: fewer
        than 4 bytes left, or too few for liblz4's block) or liblz4 fails, and whatever the
        sink raises (CheckptIOError); the chunks before the failing one are then in the sink
        and the frame is unusable (the encoder is fine for the next :meth:`start`).
        """
        if n > SMALL_COPY:
            self._write_chunks(sink, mv, n)
            return
        # One small chunk: only what it needs is looked up (buffers of a few bytes are common).
        cur = self._cursor
        if GBUF_SZ - cur < n:
            cur = 0
        self._ring_mv[cur : cur + n] = mv
        pos, cap = sink.window(n + n // 255 + 19)  # chunk_csz_max(n)
        self._cursor = cur + n
        if cap < CSZ_HDR + 1:
            raise self._no_room(sink, 0, cap)
        stream = self._stream
        a_src, a_dst = stream.src, stream.dst
        a_src.value = self._ring_addr + cur
        a_dst.value = sink.base + pos + CSZ_HDR
        csz = stream.compress_fn(stream.handle, a_src, a_dst, n, min(cap - CSZ_HDR, CSZ_LIMIT), 1)
        if csz <= 0:
            raise self._failed(sink, 0, n, cap)
        sbuf = sink.buf
        sbuf[pos] = csz & 0xFF
        sbuf[pos + 1] = (csz >> 8) & 0xFF
        sbuf[pos + 2] = csz >> 16
        sink.commit(csz + CSZ_HDR)

    def _write_chunks(self, sink: Sink, mv: memoryview, n: int) -> None:
        # The per-chunk loop of write(): everything it touches is bound to a local first, and
        # the LZ4 call goes through the stream's preallocated c_void_p slots (see _lz4).
        stream, ring_mv, cur = self._stream, self._ring_mv, self._cursor
        compress, handle, a_src, a_dst = stream.compress_fn, stream.handle, stream.src, stream.dst
        sbuf, sbase = sink.buf, sink.base
        ring, window, commit = self._ring_addr, sink.window, sink.commit
        src = buffer_address(mv)
        off, chunk = 0, 0
        while off < n:
            usz = n - off if n - off < CHUNK_USZ_MAX else CHUNK_USZ_MAX
            if GBUF_SZ - cur < usz:
                cur = 0
            if usz > SMALL_COPY:
                _memmove(ring + cur, src + off, usz)
            else:
                ring_mv[cur : cur + usz] = mv[off : off + usz]
            pos, cap = window(usz + usz // 255 + 19)  # chunk_csz_max(usz)
            if cap < CSZ_HDR + 1:
                self._cursor = cur + usz
                raise self._no_room(sink, chunk, cap)
            a_src.value = ring + cur
            a_dst.value = sbase + pos + CSZ_HDR
            csz = compress(handle, a_src, a_dst, usz, min(cap - CSZ_HDR, CSZ_LIMIT), 1)
            cur += usz
            if csz <= 0:
                self._cursor = cur
                raise self._failed(sink, chunk, usz, cap)
            sbuf[pos] = csz & 0xFF
            sbuf[pos + 1] = (csz >> 8) & 0xFF
            sbuf[pos + 2] = csz >> 16
            commit(csz + CSZ_HDR)
            off += usz
            chunk += 1
        self._cursor = cur

    def _no_room(self, sink: Sink, chunk: int, cap: int) -> CompressionError:
        return CompressionError(
            f"{self.label}LZ4 frame at offset {self.frame_off}, chunk {chunk}: "
            f"mmio region too small ({cap} bytes left at offset {sink.offset})"
        )

    def _failed(self, sink: Sink, chunk: int, usz: int, cap: int) -> CompressionError:
        return CompressionError(
            f"{self.label}LZ4 frame at offset {self.frame_off}, chunk {chunk}: compression of "
            f"{usz} bytes failed (region too small: {cap} bytes left at offset {sink.offset})"
        )

    def free(self) -> None:
        """Release the LZ4 stream now (idempotent); the encoder is unusable afterwards."""
        self._stream.free()


class FrameDecoder:
    """Decodes LZ4 frames: a 256 KiB history buffer and liblz4's call slots, reused.

    Decodes straight into the caller's buffer, with the frame's last 64 KiB of output as
    the dictionary (docs/fd_checkpt.md section 6). Stricter than fd_restore: every block
    must decode to exactly its chunk's size. ``label`` prefixes error messages
    (``"Restore.buf: "``). Raises UnsupportedError when no LZ4 library is available.
    """

    __slots__ = ("_dec", "_hist", "_hist_addr", "_hist_len", "_hist_mv", "frame_off", "label")

    def __init__(self, label: str = "") -> None:
        if not _lz4.available():
            raise _unavailable(label.rstrip(": ") or "FrameDecoder")
        self.label = label
        self.frame_off = 0
        self._dec = _lz4.Decoder()
        self._hist = aligned_empty(HIST_SZ)
        self._hist_mv: memoryview = self._hist.data
        self._hist_addr = buffer_address(self._hist_mv)
        self._hist_len = 0  # bytes of this frame's output at the start of _hist

    def start(self, frame_off: int) -> None:
        """Begin an LZ4 frame: empty history. ``frame_off`` is for error messages only."""
        self._hist_len = 0
        self.frame_off = frame_off

    def read(self, src: Source, mv: memoryview, n: int, buf_index: int) -> None:
        """Fill ``mv`` (a flat writable byte view of ``n = mv.nbytes > 0`` bytes) with the
        frame's next buffer, consuming its chunks from ``src``.

        ``buf_index`` is the buffer's index in the frame, for error messages only. Raises
        CompressionError for a bad chunk size, a block that does not decode to exactly its
        chunk's size, or a chunk cut short by the end of a memory region; CheckptIOError for
        a chunk cut short by the end of a stream, and whatever ``src`` raises. ``mv`` may
        then be partly written and the frame is unusable (the decoder is fine for the next
        :meth:`start`).
        """
        if n > CHUNK_USZ_MAX:
            self._read_chunks(src, mv, n, buf_index)
            return
        # One chunk: decode it into the history buffer, right after the frame's previous
        # output, then copy it out (no address of ``mv`` needed).
        hist, hl = self._hist_addr, self._hist_len
        if hl + n > HIST_SZ:
            _memmove(hist, hist + hl - CHUNK_USZ_MAX, CHUNK_USZ_MAX)
            hl = CHUNK_USZ_MAX
        sbuf = src.buf
        pos, avail = src.peek()
        csz = sbuf[pos] | sbuf[pos + 1] << 8 | sbuf[pos + 2] << 16 if avail >= CSZ_HDR else 0
        if csz < 1 or csz + CSZ_HDR > n + n // 255 + 19 or csz + CSZ_HDR > avail:  # chunk_csz_max(n)
            pos, csz = self._chunk(src, n, 0, buf_index)  # reads on, or raises the precise error
        dl = hl if hl < CHUNK_USZ_MAX else CHUNK_USZ_MAX
        dec = self._dec
        a_src, a_dst, a_dict = dec.src, dec.dst, dec.dict
        a_src.value = src.base + pos + CSZ_HDR
        a_dst.value = hist + hl
        a_dict.value = hist + hl - dl
        r = dec.decompress_fn(a_src, a_dst, csz, n, a_dict, dl)
        if r != n:
            raise self._bad_block(src, 0, buf_index, r, n)
        src.consume(csz + CSZ_HDR)
        mv[:] = self._hist_mv[hl : hl + n]
        self._hist_len = hl + n

    def _read_chunks(self, src: Source, mv: memoryview, n: int, buf_index: int) -> None:
        # Several chunks: decode straight into ``mv``; after the first chunk the history is the
        # previous 64 KiB of ``mv`` itself (liblz4's prefix path).
        dec, hist, hl = self._dec, self._hist_addr, self._hist_len
        fn, a_src, a_dst, a_dict = dec.decompress_fn, dec.src, dec.dst, dec.dict
        sbuf, sbase, peek, consume = src.buf, src.base, src.peek, src.consume
        dst = buffer_address(mv)
        off, chunk = 0, 0
        while off < n:
            usz = n - off if n - off < CHUNK_USZ_MAX else CHUNK_USZ_MAX
            pos, avail = peek()
            csz = sbuf[pos] | sbuf[pos + 1] << 8 | sbuf[pos + 2] << 16 if avail >= CSZ_HDR else 0
            if csz < 1 or csz + CSZ_HDR > usz + usz // 255 + 19 or csz + CSZ_HDR > avail:  # chunk_csz_max(usz)
                pos, csz = self._chunk(src, usz, chunk, buf_index)
            if off:
                a_dict.value = dst + off - CHUNK_USZ_MAX
                dl = CHUNK_USZ_MAX
            else:
                dl = hl if hl < CHUNK_USZ_MAX else CHUNK_USZ_MAX
                a_dict.value = hist + hl - dl
            a_src.value = sbase + pos + CSZ_HDR
            a_dst.value = dst + off
            r = fn(a_src, a_dst, csz, usz, a_dict, dl)
            if r != usz:
                raise self._bad_block(src, chunk, buf_index, r, usz)
            consume(csz + CSZ_HDR)
            off += usz
            chunk += 1
        # Keep the frame's last 64 KiB of output: the next buffer may refer to it.
        _memmove(hist, dst + n - CHUNK_USZ_MAX, CHUNK_USZ_MAX)
        self._hist_len = CHUNK_USZ_MAX

    def _where(self, src: Source, chunk: int, buf_index: int) -> str:
        return (
            f"{self.label}LZ4 frame at offset {self.frame_off}, buffer {buf_index}, "
            f"chunk {chunk} at offset {src.offset}"
        )

    def _chunk(self, src: Source, usz: int, chunk: int, buf_index: int) -> tuple[int, int]:
        """The next chunk when it is not all at hand: read on, check its size, and return
        ``(pos, csz)`` with the whole chunk at ``src.buf[pos:]``; or raise why not."""
        short = CompressionError if isinstance(src, MmioSource) else CheckptIOError
        pos, got = src.window(CSZ_HDR)
        if got < CSZ_HDR:
            raise short(f"{self._where(src, chunk, buf_index)}: truncated chunk header ({got} of 3 bytes)")
        sbuf = src.buf
        csz = sbuf[pos] | sbuf[pos + 1] << 8 | sbuf[pos + 2] << 16
        if csz < 1 or csz + CSZ_HDR > chunk_csz_max(usz):
            raise CompressionError(
                f"{self._where(src, chunk, buf_index)}: bad chunk header: compressed size {csz} for a "
                f"{usz}-byte chunk (expected 1..{chunk_csz_max(usz) - CSZ_HDR})"
            )
        pos, got = src.window(csz + CSZ_HDR)
        if got < csz + CSZ_HDR:
            raise short(f"{self._where(src, chunk, buf_index)}: truncated chunk: {got} of {csz + CSZ_HDR} bytes")
        return pos, csz

    def _bad_block(self, src: Source, chunk: int, buf_index: int, r: int, usz: int) -> CompressionError:
        what = "is malformed" if r < 0 else f"decoded to {r} bytes"
        return CompressionError(f"{self._where(src, chunk, buf_index)}: LZ4 block {what}, expected {usz} bytes")


class _Spares(threading.local):
    """Each thread's spare codecs (None while lent out, or before the first use)."""

    def __init__(self) -> None:
        self.encoder: FrameEncoder | None = None
        self.decoder: FrameDecoder | None = None


_spares = _Spares()


def take_encoder() -> FrameEncoder:
    """This thread's spare encoder, or a new one if it has none (or lent it out already).

    The caller owns it until :func:`give_back_encoder`; it must :meth:`FrameEncoder.start`
    every frame (the state left by earlier frames is unspecified). Raises as
    :class:`FrameEncoder` does.
    """
    enc = _spares.encoder
    if enc is None:
        return FrameEncoder()
    _spares.encoder = None
    return enc


def give_back_encoder(enc: FrameEncoder) -> None:
    """Return an encoder from :func:`take_encoder` (on success or failure); the caller must
    not use it afterwards. Kept as this thread's spare if it has none, else dropped."""
    if _spares.encoder is None:
        _spares.encoder = enc


def take_decoder() -> FrameDecoder:
    """This thread's spare decoder, or a new one; as :func:`take_encoder`."""
    dec = _spares.decoder
    if dec is None:
        return FrameDecoder()
    _spares.decoder = None
    return dec


def give_back_decoder(dec: FrameDecoder) -> None:
    """Return a decoder from :func:`take_decoder`; as :func:`give_back_encoder`."""
    if _spares.decoder is None:
        _spares.decoder = dec
