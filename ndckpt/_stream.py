"""One-pass loading of an ndckpt file from a stream (pipe, socket, unseekable or not).

The head says how every frame decodes; LZ4 records give each frame's stored
size and checksum before its bytes; pads follow from the offset. The index
and trailer at the end are checked against what was read, and arrays are
returned only after every check has passed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _lz4
from .api import (
    _check_frame_sizes,
    _check_out,
    _decode_lz4,
    _flatten_out,
    _Layout,
    _mv,
    _nest,
    _new_array,
    _parse_superblock,
    _verify_hash,
)
from .container import (
    END_MAGIC,
    INDEX_DTYPE,
    RAW_ALIGN,
    RECORD,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    Head,
    align_up,
    stored_bound,
)
from .engine import DEFAULT_RBUF_SIZE, Restore
from .errors import CheckptError, FormatError
from .format import FrameStyle
from .parallel import Progress, ProgressCallback, aligned_empty

__all__ = ["load_stream"]


def _read(rs: Restore, buf: Any, what: str) -> None:
    try:
        rs.frame_open(FrameStyle.RAW)
        rs.buf(buf)
        rs.frame_close()
    except CheckptError as e:
        raise type(e)(f"{what}: {e}") from e


def load_stream(
    f: Any, *, out: Any, threads: int, verify: bool | None, progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Read a whole checkpoint from ``f`` sequentially (see :func:`ndckpt.load`)."""
    rs = Restore.stream(f, rbuf_size=DEFAULT_RBUF_SIZE)
    base = rs.offset
    sb = bytearray(SUPERBLOCK.size)
    _read(rs, sb, "superblock")
    hn, hx = _parse_superblock(sb)
    head_raw = bytearray(hn)
    _read(rs, head_raw, f"head at offset {SUPERBLOCK.size}")
    if _lz4.xxh64(head_raw) != hx:
        raise FormatError(f"head at offset {SUPERBLOCK.size}: checksum mismatch")
    head = Head.from_json(head_raw)
    nfr = len(head.frames)
    layout = _Layout(head, [0] * nfr, [0] * nfr, [0] * nfr)
    outs = _flatten_out(out, layout)
    arrays: dict[int, np.ndarray[Any, Any]] = {}
    dest: dict[int, np.ndarray[Any, np.dtype[np.uint8]]] = {}
    for ai, spec in enumerate(head.arrays):
        if ai in outs:
            dest[ai], arrays[ai] = _check_out(spec, outs[ai]), outs[ai]
        elif spec.nbytes == 0:
            arrays[ai] = np.empty(spec.shape, spec.dtype, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
    # Holds one LZ4 frame's stored bytes, or a RAW frame's padding (up to RAW_ALIGN - 1 bytes).
    scratch = aligned_empty(max([RAW_ALIGN, *(stored_bound(fr) for fr in head.frames)]))
    hashes: list[int | None] = []
    prog = Progress(progress, sum(fr.nbytes for fr in head.frames))
    for fi, fr in enumerate(head.frames):
        pos = rs.offset - base
        where = f"frame {fi} at offset {pos}"
        if fr.style == FrameStyle.LZ4:
            rec = bytearray(RECORD.size)
            _read(rs, rec, f"{where}: record")
            stored, x = RECORD.unpack(rec)
            _check_frame_sizes(head, fi, stored)
            layout.offsets[fi], layout.stored[fi], layout.xxh[fi] = pos + RECORD.size, stored, x
            where = layout.where(fi)  # now with the data offset and the arrays' names
            data = scratch[:stored]
            _read(rs, data, where)
            if verify is not False:
                _verify_hash(_mv(data), x, where)
            hashes.append(x)
            _place(head, fi, fr, data, dest, arrays, where, lz4=True)
        else:
            pad = align_up(pos, RAW_ALIGN) - pos
            if pad:
                _read(rs, scratch[:pad], f"{where}: padding")
            layout.offsets[fi], layout.stored[fi] = pos + pad, fr.nbytes
            where = layout.where(fi)  # now with the data offset and the arrays' names
            p0 = fr.parts[0]
            if len(fr.parts) == 1 and p0.at == 0 and p0.nbytes == fr.nbytes:
                if p0.array not in dest:
                    arrays[p0.array], dest[p0.array] = _new_array(head.arrays[p0.array])
                data = dest[p0.array][p0.start : p0.start + p0.nbytes]
                _read(rs, data, where)
            else:
                data = aligned_empty(fr.nbytes)
                _read(rs, data, where)
                _place(head, fi, fr, data, dest, arrays, where, lz4=False)
            hashes.append(_lz4.xxh64(data) if verify else None)
        prog.advance(fr.nbytes)
    pos = rs.offset - base
    ib = bytearray(nfr * INDEX_DTYPE.itemsize)
    _read(rs, ib, f"index at offset {pos}")
    tr = bytearray(TRAILER.size)
    _read(rs, tr, f"trailer at offset {pos + len(ib)}")
    io, nframes, ix, total, version, flags, end_magic = TRAILER.unpack(tr)
    if end_magic != END_MAGIC:
        raise FormatError(f"trailer at offset {pos + len(ib)}: bad end magic")
    if version != VERSION or flags:
        raise FormatError(f"trailer: version {version} / flags {flags:#x} do not match the superblock")
    if io != pos or nframes != nfr or total != rs.offset - base:
        raise FormatError(f"trailer at offset {pos + len(ib)}: index position, frame count or size disagree")
    if _lz4.xxh64(ib) != ix:
        raise FormatError(f"index at offset {pos}: checksum mismatch")
    idx = np.frombuffer(ib, INDEX_DTYPE)
    for fi in range(nfr):
        o, s, x = (int(v) for v in idx[fi])
        if (o, s) != (layout.offsets[fi], layout.stored[fi]):
            raise FormatError(
                f"frame {fi}: index says offset {o} and {s} bytes, the stream had "
                f"{layout.offsets[fi]} and {layout.stored[fi]}"
            )
        h = hashes[fi]
        if h is not None and h != x:
            raise FormatError(f"{layout.where(fi)}: checksum mismatch (the stream is corrupt)")
    rs.fini()
    return _nest(head, arrays)


def _place(
    head: Head,
    fi: int,
    fr: Any,
    data: np.ndarray[Any, np.dtype[np.uint8]],
    dest: dict[int, np.ndarray[Any, np.dtype[np.uint8]]],
    arrays: dict[int, np.ndarray[Any, Any]],
    where: str,
    *,
    lz4: bool,
) -> None:
    """Put a frame's bytes (stored bytes for LZ4, plain bytes for RAW) into its arrays."""
    p0 = fr.parts[0]
    if lz4 and len(fr.parts) == 1 and p0.at == 0 and p0.nbytes == fr.nbytes:
        if p0.array not in dest:
            arrays[p0.array], dest[p0.array] = _new_array(head.arrays[p0.array])
        _decode_lz4(_mv(data), dest[p0.array][p0.start : p0.start + p0.nbytes], where)
        return
    if lz4:
        plain = aligned_empty(fr.nbytes)
        _decode_lz4(_mv(data), plain, where)
    else:
        plain = data
    for p in fr.parts:
        spec = head.arrays[p.array]
        if p.array in dest:
            dest[p.array][p.start : p.start + p.nbytes] = plain[p.at : p.at + p.nbytes]
        elif p.start == 0 and p.nbytes == spec.nbytes:
            arrays[p.array] = np.ndarray(spec.shape, spec.dtype, buffer=plain, offset=p.at, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
        else:
            arrays[p.array], dest[p.array] = _new_array(spec)
            dest[p.array][p.start : p.start + p.nbytes] = plain[p.at : p.at + p.nbytes]
