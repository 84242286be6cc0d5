"""A plan in, bytes out: the one writer of the container's byte layout (docs/format.md §2).

:func:`write_checkpoint` emits a :class:`~ndckpt.container.plan.Prepared` checkpoint through
a sink in file order, never seeking: superblock, head, then per frame its record (LZ4), pad
(RAW, or LZ4 stored verbatim) and data, then the index and the trailer. :func:`encode_frame`
and :func:`frame_input` produce one frame's stored bytes, for writers that place frames
themselves (:mod:`ndckpt.mpi`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _lz4
from .._backend import MmioSink, StreamSink
from .._codec import give_back_encoder, take_encoder
from .._memory import buffer_view
from ..errors import CheckptError
from ..format import FrameStyle
from ..parallel import Progress, ProgressCallback, Staging
from .head import FrameSpec, stored_bound
from .plan import Prepared, StoredBytes, StridedBytes
from .spec import (
    END_MAGIC,
    INDEX_DTYPE,
    MAGIC,
    RAW_ALIGN,
    RECORD,
    STORED_RAW,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    align_up,
    stored_raw,
)

__all__ = ["EncodedFrame", "encode_frame", "frame_input", "write_checkpoint", "write_pad"]

_ZEROS = bytes(RAW_ALIGN)


def frame_input(
    f: FrameSpec, sources: list[StoredBytes]
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.uint8]] | None]:
    """The frame's single buffer: a slice of one array (no copy), or a gathered staging buffer."""
    p0 = f.parts[0]
    src0 = sources[p0.array]
    if len(f.parts) == 1 and p0.at == 0 and p0.nbytes == f.nbytes and not isinstance(src0, StridedBytes):
        return src0[p0.start : p0.start + p0.nbytes], None
    g = Staging.get(f.nbytes)
    if len(f.parts) > 1 or p0.nbytes != f.nbytes:
        g[:] = 0  # the padding around the parts (one memset, not one per gap)
    for ai, start, n, at in f.parts:  # per-part work stays minimal: a frame may pack 16,000 arrays
        src = sources[ai]
        if isinstance(src, StridedBytes):
            src.copy_into(g[at : at + n], start)
        elif start == 0 and n == len(src):
            g[at : at + n] = src
        else:
            g[at : at + n] = src[start : start + n]
    return g, g


@dataclass
class EncodedFrame:
    """One data frame's stored bytes and XXH64, as :func:`encode_frame` makes them."""

    data: np.ndarray[Any, np.dtype[np.uint8]]  # stored bytes of the data frame
    xxh: int
    hold: list[np.ndarray[Any, np.dtype[np.uint8]]]  # staging buffers to give back after writing
    raw: bool = False  # an LZ4 frame stored verbatim (LZ4 did not pay): pad, then ``data``

    @property
    def stored(self) -> int:
        """The record's and index's stored_nbytes: the size, with bit 63 when stored verbatim."""
        return self.data.nbytes | STORED_RAW if self.raw else self.data.nbytes


def encode_frame(f: FrameSpec, fi: int, sources: list[StoredBytes]) -> EncodedFrame:
    """Compress an LZ4 frame (or hash a RAW one) into its stored bytes.

    An LZ4 frame that compression does not shrink by 1/32 comes back as its
    input, ``raw`` set (format §2.3). The returned buffers stay valid until
    ``hold`` is given back to Staging.

    The frame is encoded by this thread's spare encoder (:func:`ndckpt._codec.take_encoder`),
    started fresh: its bytes are those of a brand-new fd_checkpt writer's only frame, so they
    depend neither on the thread nor on the frames encoded before (docs/format.md §2.5).
    """
    src, gathered = frame_input(f, sources)
    if f.style == FrameStyle.RAW:
        return EncodedFrame(src, _lz4.xxh64(src), [gathered] if gathered is not None else [])
    out = Staging.get(stored_bound(f))
    enc = None
    try:
        enc = take_encoder()
        sink = MmioSink(out)
        enc.start(0, fresh=True)
        if src.nbytes:
            enc.write(sink, buffer_view(src), src.nbytes)
        end = sink.offset
    except CheckptError as e:
        Staging.put(out)
        if gathered is not None:
            Staging.put(gathered)
        raise type(e)(f"frame {fi}: {e}") from e
    finally:
        if enc is not None:
            give_back_encoder(enc)
    if stored_raw(f.nbytes, end):
        Staging.put(out)
        return EncodedFrame(src, _lz4.xxh64(src), [gathered] if gathered is not None else [], raw=True)
    if gathered is not None:
        Staging.put(gathered)
    data = out[:end]
    return EncodedFrame(data, _lz4.xxh64(data), [out])


def write_checkpoint(sink: StreamSink, prep: Prepared, threads: int, progress: ProgressCallback | None) -> None:
    """Emit a planned checkpoint through ``sink`` in file order, never seeking.

    With ``threads > 1`` a pool encodes LZ4 frames up to ``threads + 1`` frames
    ahead of the writer, and hashes each RAW frame while the calling thread
    writes it (a RAW frame's checksum is only needed for the index at the end).
    """
    head = prep.head
    sink.write(memoryview(SUPERBLOCK.pack(MAGIC, VERSION, 0, len(prep.head_json), _lz4.xxh64(prep.head_json))))
    sink.write(memoryview(prep.head_json))
    frames, sources = head.frames, prep.sources
    index = np.zeros(len(frames), INDEX_DTYPE)
    prog = Progress(progress, sum(f.nbytes for f in frames))
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ndckpt") if threads > 1 else None
    ahead: deque[Future[EncodedFrame]] = deque()
    lz4_frames = iter([fi for fi, f in enumerate(frames) if f.style == FrameStyle.LZ4])
    raw_hashes: list[tuple[int, Future[int] | int, np.ndarray[Any, np.dtype[np.uint8]] | None]] = []

    def encode(fi: int) -> EncodedFrame:
        return encode_frame(frames[fi], fi, sources)

    try:
        for fi, f in enumerate(frames):
            if f.style == FrameStyle.LZ4:
                if pool is None:
                    enc = encode(fi)
                else:
                    for nxt in lz4_frames:
                        ahead.append(pool.submit(encode, nxt))
                        if len(ahead) > threads:
                            break
                    enc = ahead.popleft().result()
                try:
                    sink.write(memoryview(RECORD.pack(enc.stored, enc.xxh)))
                    if enc.raw:
                        write_pad(sink)
                    index[fi] = (sink.offset, enc.stored, enc.xxh)
                    sink.write(buffer_view(enc.data))
                finally:
                    for buf in enc.hold:
                        Staging.put(buf)
            else:
                src, gathered = frame_input(f, sources)
                h: Future[int] | int = _lz4.xxh64(src) if pool is None else pool.submit(_lz4.xxh64, src)
                raw_hashes.append((fi, h, gathered))
                write_pad(sink)
                index[fi] = (sink.offset, f.nbytes, 0)
                mv = buffer_view(src)
                cuts = prog.pieces(f.nbytes)
                if len(cuts) > 1:  # a large RAW frame: written and reported in pieces (views, no copies)
                    for a in cuts[:-1]:
                        sink.write(mv[a : a + cuts.step])
                        prog.advance(cuts.step)
                    a = cuts[-1]
                    sink.write(mv[a:])
                    prog.advance(f.nbytes - a)
                    continue
                sink.write(mv)
            prog.advance(f.nbytes)
        for fi, h, gathered in raw_hashes:
            index[fi]["xxh64"] = h if isinstance(h, int) else h.result()
            if gathered is not None:
                Staging.put(gathered)
        raw_hashes.clear()
    finally:
        for fut in ahead:
            fut.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    index_off = sink.offset
    ib = index.tobytes()
    sink.write(memoryview(ib))
    total = sink.offset + TRAILER.size
    sink.write(memoryview(TRAILER.pack(index_off, len(frames), _lz4.xxh64(ib), total, VERSION, 0, END_MAGIC)))
    sink.flush()


def write_pad(sink: StreamSink) -> None:
    """Zero bytes up to the next multiple of RAW_ALIGN (before a verbatim data frame)."""
    pad = align_up(sink.offset, RAW_ALIGN) - sink.offset
    if pad:
        sink.write(memoryview(_ZEROS)[:pad])
