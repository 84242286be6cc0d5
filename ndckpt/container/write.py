"""A plan in, bytes out: the one writer of the container's byte layout (docs/format.md §2).

What goes where is decided here once, for two kinds of writer:

- *positional* writers place each piece at its offset (:mod:`ndckpt.mpi`, through MPI-IO
  ``Write_at``): :func:`place` gives every frame's start and data offset from the stored sizes,
  and :func:`write_head`, :func:`write_record` and :func:`write_tail` write the superblock and
  head, an LZ4 frame's record, and the index and trailer through a :data:`WriteAt`. Pads are
  never written: a positional writer writes into a new file, whose holes read as zeros.
- the *sequential* writer, :func:`write_checkpoint`, emits a :class:`~ndckpt.container.plan.Prepared`
  checkpoint through a sink in file order, never seeking, with the same functions through a
  :class:`SequentialAt`, which writes the gap before each write (a pad) as zeros.

:func:`encode_frame` and :func:`frame_input` produce one frame's stored bytes for both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
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
from ..parallel import Progress, ProgressCallback, ScratchPool
from .filtering import write_filtered
from .head import FrameSpec, stored_bound
from .layout import data_offset, frame_offsets
from .plan import Prepared, StoredBytes, StridedBytes
from .spec import (
    END_MAGIC,
    INDEX_DTYPE,
    MAGIC,
    RAW_ALIGN,
    RECORD,
    STORED_VERBATIM,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    stored_raw,
)

__all__ = [
    "EncodedFrame",
    "Placement",
    "SequentialAt",
    "WriteAt",
    "encode_frame",
    "frame_input",
    "index_table",
    "place",
    "record",
    "superblock",
    "write_checkpoint",
    "write_head",
    "write_record",
    "write_tail",
]

_ZEROS = memoryview(bytes(RAW_ALIGN))

#: A positional write: all of the buffer at the file offset, or an exception (CheckptIOError
#: for the writer's I/O errors; the functions below pass it on, having written what came
#: before it). Writes of one file never overlap, and the gaps between them are the pads:
#: positional writers leave them holes of a new file (zeros), SequentialAt writes zeros.
WriteAt = Callable[[int, memoryview], None]


# ----------------------------------------------------------------------------------------------
# The byte layout: what each piece's bytes are and where it goes
# ----------------------------------------------------------------------------------------------


def superblock(head_json: bytes) -> bytes:
    """The 32-byte superblock (format §2.1) of a file whose head is ``head_json``."""
    return SUPERBLOCK.pack(MAGIC, VERSION, 0, len(head_json), _lz4.xxh64(head_json))


def record(stored: int, xxh: int) -> bytes:
    """An LZ4 frame's 16-byte record (format §2.3): its stored_nbytes (bit 63 set when stored
    verbatim) and the XXH64 of its stored bytes."""
    return RECORD.pack(stored, xxh)


def index_table(offsets: list[int], stored: list[int], xxh: list[int]) -> np.ndarray[Any, np.dtype[Any]]:
    """The index (format §2.6) as an INDEX_DTYPE array: one row per frame, in frame order."""
    index = np.zeros(len(offsets), INDEX_DTYPE)
    index["offset"] = offsets
    index["stored"] = stored
    index["xxh64"] = xxh
    return index


@dataclass(frozen=True)
class Placement:
    """Where every frame of a file goes, given every frame's stored size (format §2).

    Frame ``fi`` *starts* at ``starts[fi]``, the end of what precedes it (the head, or frame
    ``fi - 1``'s data): its record (LZ4) is there, then its pad (RAW, and LZ4 stored verbatim),
    and its data at ``offsets[fi]``. The index follows the last frame, at ``index_offset``.
    """

    starts: list[int]
    offsets: list[int]
    index_offset: int


def place(head_nbytes: int, frames: list[FrameSpec], stored: list[int]) -> Placement:
    """The placement of ``frames`` after a head of ``head_nbytes`` bytes; ``stored`` holds the
    index's values (bit 63 marks an LZ4 frame stored verbatim)."""
    head_end = SUPERBLOCK.size + head_nbytes
    offsets, index_offset = frame_offsets(head_end, frames, stored)
    ends = [o + (n & ~STORED_VERBATIM) for o, n in zip(offsets, stored, strict=True)]
    return Placement([head_end, *ends[:-1]] if frames else [], offsets, index_offset)


def write_head(write_at: WriteAt, head_json: bytes) -> int:
    """Write the superblock and the head at offset 0; return the offset just past the head."""
    write_at(0, memoryview(superblock(head_json)))
    write_at(SUPERBLOCK.size, memoryview(head_json))
    return SUPERBLOCK.size + len(head_json)


def write_record(write_at: WriteAt, start: int, style: FrameStyle, stored: int, xxh: int) -> int:
    """Write what precedes a frame's data, for a frame that starts at ``start``: an LZ4 frame's
    record (RAW frames have none; the pad is not written, see :data:`WriteAt`). Returns the
    offset of the frame's data. ``stored`` and ``xxh`` are its index values."""
    if style == FrameStyle.LZ4:
        write_at(start, memoryview(record(stored, xxh)))
    return data_offset(start, style, stored)


def write_tail(write_at: WriteAt, index: np.ndarray[Any, np.dtype[Any]], index_offset: int) -> int:
    """Write the index (an INDEX_DTYPE array) at ``index_offset``, then the trailer (format §2.7);
    return the file's size."""
    ib = index.tobytes()
    total = index_offset + len(ib) + TRAILER.size
    trailer = TRAILER.pack(index_offset, len(index), _lz4.xxh64(ib), total, VERSION, 0, END_MAGIC)
    write_at(index_offset, memoryview(ib + trailer))
    return total


class SequentialAt:
    """A :data:`WriteAt` over a sink, for writes in file order: the gap before a write is a pad
    and is written as zeros; a write behind the sink's offset, or past a pad's length, is a
    writer bug (ValueError, nothing written)."""

    __slots__ = ("sink",)

    def __init__(self, sink: StreamSink) -> None:
        self.sink = sink

    def __call__(self, offset: int, buf: memoryview) -> None:
        sink = self.sink
        gap = offset - sink.offset
        if gap:
            if not 0 < gap < RAW_ALIGN:
                raise ValueError(f"sequential write at offset {offset}, the sink is at {sink.offset}")
            sink.write(_ZEROS[:gap])
        sink.write(buf)


# ----------------------------------------------------------------------------------------------
# Frames: stored bytes
# ----------------------------------------------------------------------------------------------


def frame_input(
    f: FrameSpec, sources: list[StoredBytes]
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.uint8]] | None]:
    """The frame's single buffer: a slice of one array (no copy), or a gathered scratch buffer."""
    p0 = f.parts[0]
    src0 = sources[p0.array]
    if len(f.parts) == 1 and p0.at == 0 and p0.nbytes == f.nbytes and not isinstance(src0, StridedBytes):
        return src0[p0.start : p0.start + p0.nbytes], None
    g = ScratchPool.get(f.nbytes)
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
    hold: list[np.ndarray[Any, np.dtype[np.uint8]]]  # scratch buffers to give back after writing
    raw: bool = False  # an LZ4 frame stored verbatim (LZ4 did not pay): pad, then ``data``

    @property
    def stored(self) -> int:
        """The record's and index's stored_nbytes: the size, with bit 63 when stored verbatim."""
        return self.data.nbytes | STORED_VERBATIM if self.raw else self.data.nbytes


def encode_frame(f: FrameSpec, fi: int, sources: list[StoredBytes]) -> EncodedFrame:
    """Compress an LZ4 frame (or hash a RAW one) into its stored bytes.

    An LZ4 frame that compression does not shrink by 1/32 comes back as its
    input, ``raw`` set (format §2.3). The returned buffers stay valid until
    ``hold`` is given back to ScratchPool.

    The frame is encoded by this thread's spare encoder (:func:`ndckpt._codec.take_encoder`),
    started fresh: its bytes are those of a brand-new fd_checkpt writer's only frame, so they
    depend neither on the thread nor on the frames encoded before (docs/format.md §2.5).

    A frame with a ``filter`` (format §2.8; never "auto" here) is filtered
    :data:`.filtering.STEP` bytes at a time into a small scratch buffer, each batch
    written to the encoder as it is made: a frame costs one batch of memory beyond an
    unfiltered frame's, and the LZ4 bytes are those of the whole filtered buffer written at
    once (batches are whole 64 KiB chunks). Stored verbatim, it holds its *unfiltered* bytes.
    """
    src, gathered = frame_input(f, sources)
    if f.style == FrameStyle.RAW:
        return EncodedFrame(src, _lz4.xxh64(src), [gathered] if gathered is not None else [])
    out = ScratchPool.get(stored_bound(f))
    enc = None
    try:
        enc = take_encoder()
        sink = MmioSink(out)
        enc.start(0, fresh=True)
        if f.filter is not None:
            write_filtered(enc, sink, src, f.filter)
        elif src.nbytes:
            enc.write(sink, buffer_view(src), src.nbytes)
        end = sink.offset
    except CheckptError as e:
        ScratchPool.put(out)
        if gathered is not None:
            ScratchPool.put(gathered)
        raise type(e)(f"frame {fi}: {e}") from e
    finally:
        if enc is not None:
            give_back_encoder(enc)
    if stored_raw(f.nbytes, end):
        ScratchPool.put(out)
        return EncodedFrame(src, _lz4.xxh64(src), [gathered] if gathered is not None else [], raw=True)
    if gathered is not None:
        ScratchPool.put(gathered)
    data = out[:end]
    return EncodedFrame(data, _lz4.xxh64(data), [out])


def write_checkpoint(sink: StreamSink, prep: Prepared, threads: int, progress: ProgressCallback | None) -> None:
    """Emit a planned checkpoint through ``sink`` in file order, never seeking.

    With ``threads > 1`` a pool encodes LZ4 frames up to ``threads + 1`` frames
    ahead of the writer, and hashes each RAW frame while the calling thread
    writes it (a RAW frame's checksum is only needed for the index at the end).
    """
    head = prep.head
    at = SequentialAt(sink)
    write_head(at, prep.head_json)
    frames, sources = head.frames, prep.array_bytes
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
                    data_at = write_record(at, sink.offset, f.style, enc.stored, enc.xxh)
                    index[fi] = (data_at, enc.stored, enc.xxh)
                    at(data_at, buffer_view(enc.data))
                finally:
                    for buf in enc.hold:
                        ScratchPool.put(buf)
            else:
                src, gathered = frame_input(f, sources)
                h: Future[int] | int = _lz4.xxh64(src) if pool is None else pool.submit(_lz4.xxh64, src)
                raw_hashes.append((fi, h, gathered))
                data_at = write_record(at, sink.offset, f.style, f.nbytes, 0)
                index[fi] = (data_at, f.nbytes, 0)
                mv = buffer_view(src)
                cuts = prog.pieces(f.nbytes)
                if len(cuts) > 1:  # a large RAW frame: written and reported in pieces (views, no copies)
                    for a in cuts[:-1]:
                        at(data_at + a, mv[a : a + cuts.step])
                        prog.advance(cuts.step)
                    a = cuts[-1]
                    at(data_at + a, mv[a:])
                    prog.advance(f.nbytes - a)
                    continue
                at(data_at, mv)
            prog.advance(f.nbytes)
        for fi, h, gathered in raw_hashes:
            index[fi]["xxh64"] = h if isinstance(h, int) else h.result()
            if gathered is not None:
                ScratchPool.put(gathered)
        raw_hashes.clear()
    finally:
        for fut in ahead:
            fut.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    write_tail(at, index, sink.offset)
    sink.flush()
