"""One-pass loading of an ndckpt file from a stream (pipe, socket, unseekable or not).

The head says how every frame decodes; LZ4 records give each frame's stored
size and checksum before its bytes; pads follow from the offset. The index
and trailer at the end are checked against what was read, and arrays are
returned only after every check has passed.

A stream cannot be measured before it is read, so memory follows the bytes
that arrived, never the sizes the head claims: buffers grow a step at a time
(at most doubling what has arrived), and arrays are anonymous mappings grown
in place (``mremap``, no copy) as their frames arrive. A stream that claims a
terabyte and sends a kilobyte costs about a kilobyte.
"""

from __future__ import annotations

import errno
import functools
import mmap
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _lz4, _platform
from .._memory import aligned_empty, buffer_view
from ..engine import DEFAULT_RBUF_SIZE, Restore
from ..errors import CheckptError, CheckptIOError, FormatError
from ..format import FrameStyle
from ..parallel import Progress, ProgressCallback
from .head import Head
from .layout import Layout, check_frame_sizes, data_offset, parse_head, parse_index, parse_superblock, parse_trailer
from .read import Where, check_out, decode_lz4, flatten_out, nest, new_array, scatter_blocks, verify_hash, where_text
from .spec import INDEX_DTYPE, RAW_ALIGN, RECORD, STORED_VERBATIM, SUPERBLOCK, TRAILER

__all__ = ["load_stream"]

#: Largest read made before the bytes before it have arrived: buffers grow by at most this
#: much (or by doubling) beyond what was received.
_STEP = 64 << 20


def _read(rs: Restore, buf: Any, what: Where) -> None:
    try:
        rs.frame_open(FrameStyle.RAW)
        rs.buf(buf)
        rs.frame_close()
    except CheckptError as e:
        if isinstance(e, OSError) and e.errno is not None:  # keep the errno (ENOSPC, EIO, ...)
            raise type(e)(e.errno, f"{where_text(what)}: {e.strerror}") from e
        raise type(e)(f"{where_text(what)}: {e}") from e


class _ReadBuffer:
    """The stream reader's reusable input buffer: it grows only with bytes that actually arrived."""

    def __init__(self) -> None:
        self.buf = aligned_empty(RAW_ALIGN)

    def read(self, rs: Restore, n: int, what: Where, *, fresh: bool = False) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """The next ``n`` bytes, in this buffer (or, with ``fresh``, in a new one kept by the caller)."""
        buf = aligned_empty(min(n, _STEP)) if fresh else self.buf
        got = 0
        while got < n:
            if got == buf.nbytes or (got == 0 and buf.nbytes < min(n, _STEP)):
                grown = aligned_empty(min(n, max(2 * got, got + _STEP)))
                grown[:got] = buf[:got]
                buf = grown
            m = min(n, buf.nbytes) - got
            _read(rs, buf[got : got + m], what)
            got += m
        if not fresh:
            self.buf = buf
        return buf[:n]


class _Dest:
    """Where one array's bytes go: the caller's ``out`` array, or an anonymous mapping that is
    grown in place (no copy) as the array's frames arrive, so that its size never runs more
    than one step ahead of, or twice, the bytes received."""

    def __init__(self, nbytes: int, out: np.ndarray[Any, np.dtype[np.uint8]] | None = None) -> None:
        self.nbytes, self.out = nbytes, out
        self.map: mmap.mmap | None = None
        self.cap = nbytes if out is not None else 0

    def view(self, start: int, n: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """Bytes ``[start, start + n)``; drop the view before asking for a later one."""
        if self.out is not None:
            return self.out[start : start + n]
        end = start + n
        if end > self.cap:
            self._grow(min(self.nbytes, max(end, 2 * self.cap)))
        assert self.map is not None
        return np.frombuffer(self.map, np.uint8, n, start)

    def _grow(self, cap: int) -> None:
        try:
            if self.map is None:
                self.map = _platform.anonymous_map(cap)
            else:
                try:
                    self.map.resize(cap)  # mremap: pages move, bytes are not copied
                except (SystemError, OSError):  # no mremap on this platform: copy
                    new = _platform.anonymous_map(cap)
                    new[: self.cap] = self.map[: self.cap]
                    self.map.close()
                    self.map = new
        except (OSError, MemoryError) as e:
            raise CheckptIOError(errno.ENOMEM, f"cannot allocate {cap} bytes for an array: {e}") from e
        if cap >= 1 << 22 and hasattr(mmap, "MADV_HUGEPAGE"):
            self.map.madvise(mmap.MADV_HUGEPAGE)  # fewer page faults while a large array arrives
        self.cap = cap

    def array(self, spec: Any) -> np.ndarray[Any, Any]:
        """The finished array (all of its bytes have arrived)."""
        assert self.map is not None
        assert self.cap == self.nbytes
        return np.ndarray(spec.shape, spec.dtype, buffer=self.map, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]


def load_stream(
    f: Any,
    *,
    out: Any,
    verify: bool | None,
    progress: ProgressCallback | None = None,
    check_pads: bool = False,
    check_head: Callable[[Head], None] | None = None,
) -> dict[str, Any]:
    """Read a whole checkpoint from ``f`` sequentially (see :func:`ndckpt.load`), in this thread.

    Decoding stays in the calling thread: arrays grow with the bytes received
    (so a hostile stream cannot make us allocate what it claims), and a worker
    must not hold a view of a mapping that may still move when it grows.

    ``check_pads`` (for :func:`ndckpt.verify`) also requires the zero pads before RAW frames
    to be zero; loads ignore them, as the format says. ``check_head`` (also for verify) is
    called with the parsed head before any frame is read; what it raises propagates.
    """
    rs = Restore.stream(f, rbuf_size=DEFAULT_RBUF_SIZE)
    base = rs.offset
    sb = bytearray(SUPERBLOCK.size)
    _read(rs, sb, "superblock")
    hn, hx = parse_superblock(sb)
    inbuf = _ReadBuffer()
    head = parse_head(buffer_view(inbuf.read(rs, hn, f"head at offset {SUPERBLOCK.size}")), hx)
    if check_head is not None:
        check_head(head)
    nfr = len(head.frames)
    layout = Layout(head, [0] * nfr, [0] * nfr, [0] * nfr, SUPERBLOCK.size + hn)
    outs = flatten_out(out, layout)
    arrays: dict[int, np.ndarray[Any, Any]] = {}
    dest: dict[int, _Dest] = {}
    for ai, spec in enumerate(head.arrays):
        if ai in outs:
            dest[ai], arrays[ai] = _Dest(spec.nbytes, check_out(spec, outs[ai])), outs[ai]
        elif spec.nbytes == 0:
            # not np.empty: it turns a big-endian generic timedelta (">m8") native
            arrays[ai] = np.ndarray(spec.shape, spec.dtype, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
    hashes: list[int | None] = []
    prog = Progress(progress, sum(fr.nbytes for fr in head.frames))
    for fi, fr in enumerate(head.frames):
        pos = rs.offset - base
        where: Where = f"frame {fi} at offset {pos}"
        if fr.style == FrameStyle.LZ4:
            rec = bytearray(RECORD.size)
            _read(rs, rec, f"{where}: record")
            stored, x = RECORD.unpack(rec)
            check_frame_sizes(head, fi, stored)
            data_at = data_offset(pos, FrameStyle.LZ4, stored)
            if stored & STORED_VERBATIM:  # stored verbatim: a pad, then the frame as RAW, checked as LZ4
                _skip_pad(rs, inbuf, pos + RECORD.size, data_at, f"{where}: padding", check_pads)
                layout.offsets[fi], layout.xxh[fi] = data_at, x
                layout.set_stored(fi, stored)
                h = _read_plain(rs, inbuf, layout, fi, dest, arrays, hash_it=verify is not False)
                if h is not None and h != x:
                    raise FormatError(f"{layout.where(fi)}: checksum mismatch (the stream is corrupt)")
                hashes.append(x)  # the record's, compared with the index's at the end
            else:
                layout.offsets[fi], layout.xxh[fi] = data_at, x
                layout.set_stored(fi, stored)
                where = functools.partial(layout.where, fi)  # with the data offset and the arrays' names
                data = inbuf.read(rs, stored, where)
                if verify is not False:
                    verify_hash(buffer_view(data), x, where)
                hashes.append(x)
                _place(head, fi, fr, data, dest, arrays, where, lz4=True)
        else:
            data_at = data_offset(pos, FrameStyle.RAW, fr.nbytes)
            _skip_pad(rs, inbuf, pos, data_at, f"{where}: padding", check_pads)
            layout.offsets[fi] = data_at
            layout.set_stored(fi, fr.nbytes)
            hashes.append(_read_plain(rs, inbuf, layout, fi, dest, arrays, hash_it=bool(verify), prog=prog))
            continue  # _read_plain reported the frame's bytes
        prog.advance(fr.nbytes)
    pos = rs.offset - base
    ib = bytearray(nfr * INDEX_DTYPE.itemsize)
    _read(rs, ib, f"index at offset {pos}")
    tr = bytearray(TRAILER.size)
    _read(rs, tr, f"trailer at offset {pos + len(ib)}")
    io, nframes, ix, total = parse_trailer(tr, pos + len(ib))
    if io != pos or nframes != nfr or total != rs.offset - base:
        raise FormatError(f"trailer at offset {pos + len(ib)}: index position, frame count or size disagree")
    idx = parse_index(ib, ix, pos)
    for fi in range(nfr):
        o, s, x = (int(v) for v in idx[fi])
        if (o, s) != (layout.offsets[fi], layout.index_value(fi)):
            raise FormatError(
                f"frame {fi}: index says offset {o} and stored_nbytes {s:#x}, the stream had "
                f"{layout.offsets[fi]} and {layout.index_value(fi):#x}"
            )
        h = hashes[fi]
        if h is not None and h != x:
            raise FormatError(f"{layout.where(fi)}: checksum mismatch (the stream is corrupt)")
    rs.fini()
    for ai, d in dest.items():
        if d.out is None:
            arrays[ai] = d.array(head.arrays[ai])
    for ai, spec in enumerate(head.arrays):
        if spec.blocks is not None and spec.nbytes:
            # Global arrays stored as blocks arrived as their stored bytes: put each block in place.
            stored = np.ascontiguousarray(arrays[ai]).reshape(-1).view(np.uint8)
            if ai in outs:
                stored = stored.copy()  # the blocks' bytes were read into the caller's array itself
                glob = outs[ai]
            else:
                glob = new_array(spec)[0]  # exact dtype (np.empty turns '>m8' into '<m8')
            scatter_blocks(spec, stored, glob)
            arrays[ai] = glob
    return nest(head, arrays)


def _skip_pad(rs: Restore, inbuf: _ReadBuffer, lo: int, hi: int, where: str, check_pads: bool) -> None:
    """Read the zero pad at stream offsets ``[lo, hi)`` (:func:`.layout.data_offset` places it)."""
    pad = hi - lo
    if pad:
        zeros = inbuf.read(rs, pad, where)
        if check_pads and zeros.any():
            raise FormatError(f"{where}: non-zero padding before the frame (the stream is corrupt)")


def _read_plain(
    rs: Restore,
    inbuf: _ReadBuffer,
    layout: Layout,
    fi: int,
    dest: dict[int, _Dest],
    arrays: dict[int, np.ndarray[Any, Any]],
    *,
    hash_it: bool,
    prog: Progress | None = None,
) -> int | None:
    """Read frame ``fi``'s verbatim bytes into its arrays; return their XXH64 if ``hash_it``.

    With ``prog``, the frame's bytes are reported to it as they arrive (in pieces no larger
    than its step); without, the caller reports them.
    """
    head, fr = layout.head, layout.head.frames[fi]
    where = functools.partial(layout.where, fi)  # described only if something is wrong
    p0 = fr.parts[0]
    if len(fr.parts) == 1 and p0.at == 0 and p0.nbytes == fr.nbytes:
        d = dest.setdefault(p0.array, _Dest(head.arrays[p0.array].nbytes))
        step = min(_STEP, prog.step) if prog is not None and prog.step else _STEP
        for s in range(0, p0.nbytes, step):  # a step at a time: memory follows the data
            n = min(step, p0.nbytes - s)
            _read(rs, d.view(p0.start + s, n), where)
            if prog is not None:
                prog.advance(n)
        return _lz4.xxh64(d.view(p0.start, p0.nbytes)) if hash_it else None
    data = inbuf.read(rs, fr.nbytes, where, fresh=True)
    _place(head, fi, fr, data, dest, arrays, where, lz4=False)
    if prog is not None:
        prog.advance(fr.nbytes)
    return _lz4.xxh64(data) if hash_it else None


def _place(
    head: Head,
    fi: int,
    fr: Any,
    data: np.ndarray[Any, np.dtype[np.uint8]],
    dest: dict[int, _Dest],
    arrays: dict[int, np.ndarray[Any, Any]],
    where: Where,
    *,
    lz4: bool,
) -> None:
    """Put a frame's bytes (stored bytes for LZ4, plain bytes for RAW) into its arrays."""
    p0 = fr.parts[0]
    if lz4 and len(fr.parts) == 1 and p0.at == 0 and p0.nbytes == fr.nbytes:
        # The frame's size was checked against its stored bytes, which have arrived.
        d = dest.setdefault(p0.array, _Dest(head.arrays[p0.array].nbytes))
        decode_lz4(buffer_view(data), d.view(p0.start, p0.nbytes), where, fr.filter)
        return
    if lz4:
        plain = aligned_empty(fr.nbytes)
        decode_lz4(buffer_view(data), plain, where, fr.filter)
    else:
        plain = data
    for p in fr.parts:
        spec = head.arrays[p.array]
        if p.array not in dest and p.start == 0 and p.nbytes == spec.nbytes:
            arrays[p.array] = np.ndarray(spec.shape, spec.dtype, buffer=plain, offset=p.at, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
        else:
            d = dest.setdefault(p.array, _Dest(spec.nbytes))
            d.view(p.start, p.nbytes)[:] = plain[p.at : p.at + p.nbytes]
