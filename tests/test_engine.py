"""The frame engine: properties over random frame sequences, and every error path.

Properties (hypothesis): stream and mmio modes write the same bytes; restore
round-trips in both modes and across modes; offsets are consistent with the
format (RAW frames are the sum of their buffers, LZ4 frames stay within
``lz4_frame_bound``, frames are contiguous); stream buffer sizes never change
the bytes; any buffer-protocol object encodes as its raw bytes and restores
into arrays of any dtype.

Errors: too-small regions, truncated and corrupt input (checked against an
independent python-lz4 decoder), wrong arguments, ``view`` and ``seek`` rules,
the error classes' codes, bases and ``strerror`` strings.
"""

from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path
from typing import Any

import lz4.block
import numpy as np
import pytest
from fdvectors import decode_lz4_frame
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from strategies import (
    STRUCT_DTYPE,
    BufSpec,
    Content,
    FrameSpec,
    Offsets,
    buffer_sizes,
    checkpoint_bound,
    checkpoint_specs,
    checkpt_mmio,
    checkpt_stream,
    frame_specs,
    literal,
    read_frames,
)
from strategies import (
    arrays as np_arrays,
)

import ndckpt
from ndckpt import (
    Checkpt,
    CheckptError,
    CheckptIOError,
    CompressionError,
    FormatError,
    FrameStyle,
    InvalidArgumentError,
    Restore,
    UnsupportedError,
    strerror,
)
from ndckpt.errors import ERR_COMP, ERR_INVAL, ERR_IO, ERR_UNSUP, SUCCESS, error_for_code
from ndckpt.format import (
    CHUNK_USZ_MAX,
    META_MAX,
    WBUF_MIN,
    chunk_csz_max,
    chunk_sizes,
    lz4_frame_bound,
)

WBUF_SIZES = st.one_of(
    st.sampled_from([WBUF_MIN, 100000, 1 << 20, 16 << 20]), st.integers(WBUF_MIN, 1 << 21)
)


def check_layout(frames: list[FrameSpec], rec: Offsets, total: int) -> None:
    """Offsets obey the format: contiguous frames, RAW sizes exact, LZ4 sizes bounded."""
    pos = 0
    for fr, start, afters, end in zip(frames, rec.opens, rec.afters, rec.closes, strict=True):
        assert start == pos, "frames must be back to back"
        prev = start
        for b, after in zip(fr.bufs, afters, strict=True):
            if fr.kind == FrameStyle.RAW:
                assert after - prev == b.size
            else:
                n_chunks = len(chunk_sizes(b.size))
                assert 4 * n_chunks <= after - prev <= lz4_frame_bound([b.size])
            prev = after
        assert end == prev
        if fr.kind == FrameStyle.RAW:
            assert end - start == sum(fr.sizes)
        else:
            assert end - start <= lz4_frame_bound(fr.sizes)
        pos = end
    assert pos == total


def assert_failed(obj: Checkpt | Restore) -> None:
    """A failed object: every call but fini raises InvalidArgumentError; fini then works."""
    assert obj.failed
    assert not obj.in_frame
    assert not obj.can_open
    assert obj.frame_style is None
    with pytest.raises(InvalidArgumentError, match="failed"):
        obj.frame_open(FrameStyle.RAW)
    with pytest.raises(InvalidArgumentError, match="failed"):
        obj.frame_open(99)  # not UNSUP: the state is checked first
    with pytest.raises(InvalidArgumentError, match="failed"):
        obj.buf(bytearray(0))
    with pytest.raises(InvalidArgumentError, match="failed"):
        obj.frame_close()
    if isinstance(obj, Restore):
        with pytest.raises(InvalidArgumentError, match="failed"):
            obj.seek(0)
        with pytest.raises(InvalidArgumentError, match="failed"):
            obj.view(0)
    assert obj.failed
    obj.fini()
    assert not obj.failed
    assert not obj.can_open


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------


@settings(max_examples=80)
@given(frames=checkpoint_specs(), wbuf_size=WBUF_SIZES, rbuf_size=WBUF_SIZES)
@example(frames=[], wbuf_size=WBUF_MIN, rbuf_size=WBUF_MIN)
@example(
    frames=[FrameSpec(2, ()), FrameSpec(1, ()), FrameSpec(0, (literal(b""),))],
    wbuf_size=WBUF_MIN,
    rbuf_size=WBUF_MIN,
)
def test_stream_equals_mmio_and_round_trips(
    frames: list[FrameSpec], wbuf_size: int, rbuf_size: int
) -> None:
    s_bytes, s_rec = checkpt_stream(frames, wbuf_size=wbuf_size)
    m_bytes, m_rec = checkpt_mmio(frames)
    assert s_bytes == m_bytes
    assert s_rec == m_rec
    check_layout(frames, m_rec, len(m_bytes))
    d_bytes, _ = checkpt_stream(frames)  # default wbuf_size
    assert d_bytes == s_bytes

    # Restore what each mode wrote in the other mode (and so in both modes).
    rs = Restore.mmio(s_bytes)
    assert read_frames(rs, frames) == m_rec
    assert rs.offset == len(s_bytes)
    rs.fini()
    rs = Restore.stream(io.BytesIO(m_bytes), rbuf_size=rbuf_size)
    assert read_frames(rs, frames) == m_rec
    assert rs.offset == len(m_bytes)
    rs.fini()


def _int32(d: bytes) -> Any:
    return np.frombuffer(d, dtype="<i4")


IN_REPRS: dict[str, tuple[int, Any]] = {
    "bytes": (1, bytes),
    "bytearray": (1, bytearray),
    "memoryview": (1, memoryview),
    "memoryview_cast_I": (4, lambda d: memoryview(bytearray(d)).cast("I")),
    "readonly_memoryview": (1, lambda d: memoryview(bytearray(d)).toreadonly()),
    "int32": (4, _int32),
    "int32_writable": (4, lambda d: _int32(d).copy()),
    "float64": (8, lambda d: np.frombuffer(d, dtype="<f8")),
    "float64_2d": (8, lambda d: np.frombuffer(d, dtype="<f8").reshape(-1, 1)),
    "uint16_big_endian": (2, lambda d: np.frombuffer(d, dtype=">u2")),
    "structured": (16, lambda d: np.frombuffer(d, dtype=STRUCT_DTYPE)),
    "complex_3d": (16, lambda d: np.frombuffer(d, dtype="<c16").reshape(1, -1, 1)),
}
OUT_REPRS: dict[str, tuple[int, Any]] = {
    "bytearray": (1, bytearray),
    "memoryview": (1, lambda n: memoryview(bytearray(n))),
    "uint8": (1, lambda n: np.empty(n, np.uint8)),
    "int16": (2, lambda n: np.empty(n // 2, "<i2")),
    "float32": (4, lambda n: np.empty(n // 4, "<f4")),
    "int64_big_endian": (8, lambda n: np.empty(n // 8, ">i8")),
    "float64_2d": (8, lambda n: np.empty((n // 8, 1), "<f8")),
    "structured": (16, lambda n: np.empty(n // 16, STRUCT_DTYPE)),
}


@settings(max_examples=60)
@given(
    frames=checkpoint_specs(max_frames=3, max_bufs=5, sizes=buffer_sizes(200_000)),
    data=st.data(),
)
def test_buffer_types_encode_as_their_raw_bytes(
    frames: list[FrameSpec], data: st.DataObject
) -> None:
    """bytes, bytearray, memoryviews and numpy arrays (int32, float64, structured, ...) write
    the same bytes as their raw contents, and restore into arrays of other dtypes."""
    ins: list[list[Any]] = []
    trimmed: list[FrameSpec] = []
    for fr in frames:
        objs, bufs = [], []
        for b in fr.bufs:
            name = data.draw(st.sampled_from(sorted(IN_REPRS)), label="input type")
            size, make = IN_REPRS[name]
            raw = b.data[: b.size - b.size % size]
            bufs.append(literal(raw, meta=b.meta))
            objs.append(make(raw))
        ins.append(objs)
        trimmed.append(FrameSpec(fr.style, tuple(bufs)))

    ref, ref_rec = checkpt_mmio(trimmed)
    for mode in ("stream", "mmio"):
        f = io.BytesIO()
        region = bytearray(checkpoint_bound(trimmed))
        ck = Checkpt.stream(f) if mode == "stream" else Checkpt.mmio(region)
        for fr, objs in zip(trimmed, ins, strict=True):
            ck.frame_open(fr.style)
            for b, obj in zip(fr.bufs, objs, strict=True):
                ck.buf(obj, meta=b.meta)
            ck.frame_close()
        end = ck.offset
        ck.fini()
        assert (f.getvalue() if mode == "stream" else bytes(region[:end])) == ref

    for mode in ("stream", "mmio"):
        rs = Restore.stream(io.BytesIO(ref)) if mode == "stream" else Restore.mmio(ref)
        for fr in trimmed:
            rs.frame_open(fr.style)
            for b in fr.bufs:
                fits = [k for k, (sz, _) in OUT_REPRS.items() if b.size % sz == 0]
                name = data.draw(st.sampled_from(sorted(fits)), label="output type")
                out = OUT_REPRS[name][1](b.size)
                rs.buf(out, meta=b.meta)
                raw = out.tobytes() if isinstance(out, np.ndarray) else bytes(out)
                assert raw == b.data, name
            rs.frame_close()
        assert rs.offset == len(ref)
        rs.fini()
    check_layout(trimmed, ref_rec, len(ref))


@settings(max_examples=60)
@given(arrs=st.lists(np_arrays(), max_size=6), style=st.sampled_from([1, 2]))
def test_numpy_arrays_round_trip(arrs: list[np.ndarray[Any, Any]], style: int) -> None:
    """Arrays of any fixed-size dtype and shape (0-d, empty, structured, NaN payloads) write their
    raw bytes and restore bit for bit into ``np.empty_like``."""
    region = bytearray(lz4_frame_bound([a.nbytes for a in arrs]))
    ck = Checkpt.mmio(region)
    with ck.frame(style):
        for a in arrs:
            ck.buf(a)
    end = ck.offset
    ck.fini()
    if style == FrameStyle.RAW:
        assert bytes(region[:end]) == b"".join(a.tobytes() for a in arrs)
    rs = Restore.stream(io.BytesIO(bytes(region[:end])))
    with rs.frame(style):
        for a in arrs:
            out = np.empty_like(a)
            rs.buf(out)
            assert out.tobytes() == a.tobytes()
            assert out.dtype == a.dtype
            assert out.shape == a.shape
    assert rs.offset == end
    rs.fini()


@settings(max_examples=30)
@given(frames=checkpoint_specs(styles=(0, 1), max_frames=3), data=st.data())
def test_view_advances_like_buf_and_aliases_region(
    frames: list[FrameSpec], data: st.DataObject
) -> None:
    """In RAW mmio frames view(n) returns a read-only memoryview into the region and moves the
    offset exactly as buf(n) would."""
    blob, rec = checkpt_mmio(frames)
    region = np.frombuffer(bytearray(blob), dtype=np.uint8)
    rs = Restore.mmio(region)
    got = Offsets()
    for fr in frames:
        got.opens.append(rs.frame_open(fr.style))
        afters = []
        for b in fr.bufs:
            if data.draw(st.booleans(), label="use view"):
                before = rs.offset
                v = rs.view(b.size)
                assert isinstance(v, memoryview)
                assert v.readonly
                assert v.nbytes == b.size
                assert bytes(v) == b.data
                if b.size:
                    arr = np.frombuffer(v, dtype=np.uint8)
                    assert np.shares_memory(arr, region)
                    assert arr.ctypes.data == region.ctypes.data + before
            else:
                out = bytearray(b.size)
                rs.buf(out, meta=b.meta)
                assert out == b.data
            afters.append(rs.offset)
        got.afters.append(afters)
        got.closes.append(rs.frame_close())
    assert got == rec
    rs.fini()


def test_frame_context_manager_and_string_styles() -> None:
    f = io.BytesIO()
    with Checkpt.stream(f) as ck:
        assert ck.mode == "stream"
        with ck.frame("lz4"):
            assert ck.in_frame
            assert ck.frame_style is FrameStyle.LZ4
            ck.buf(b"hello" * 100)
        assert not ck.in_frame
        assert ck.can_open
        assert ck.frame_style is None
        with ck.frame("raw"):
            assert ck.frame_style is FrameStyle.RAW
            ck.buf(np.arange(3, dtype="<u2"))
        with ck.frame():
            assert ck.frame_style is FrameStyle.RAW
    assert not ck.can_open  # finished
    with pytest.raises(InvalidArgumentError, match="finished"):
        ck.frame_open()
    ck.fini()  # a second fini is a no-op
    with Restore.mmio(f.getvalue()) as rs:
        assert rs.mode == "mmio"
        with rs.frame(FrameStyle.LZ4):
            out = bytearray(500)
            rs.buf(out)
            assert out == b"hello" * 100
        with rs.frame(1):
            assert rs.view(6).tobytes() == b"\x00\x00\x01\x00\x02\x00"
        with rs.frame(0):
            pass
        assert rs.offset == rs.size


def test_exception_inside_frame_block_fails_the_object() -> None:
    ck = Checkpt.mmio(bytearray(100))

    def in_frame() -> None:
        with ck.frame():
            ck.buf(b"abc")
            raise KeyError("boom")

    with pytest.raises(KeyError):
        in_frame()
    assert ck.offset == 3
    assert_failed(ck)
    ck2 = Checkpt.stream(io.BytesIO())

    def body() -> None:
        with ck2:
            ck2.frame_open()
            raise KeyError("boom")

    with pytest.raises(KeyError):
        body()
    # failed, then finished by __exit__
    assert not ck2.failed
    assert not ck2.can_open
    with pytest.raises(InvalidArgumentError):
        ck2.frame_close()


# ----------------------------------------------------------------------------------------------
# Too-small mmio regions
# ----------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(frames=checkpoint_specs(styles=(0, 1), max_frames=4), data=st.data())
def test_raw_region_too_small_fails_at_the_overflowing_call(
    frames: list[FrameSpec], data: st.DataObject
) -> None:
    """RAW: CheckptIOError at exactly the buffer that does not fit; nothing of it is written,
    nothing past the region is touched, earlier buffers are intact."""
    full = b"".join(b.data for fr in frames for b in fr.bufs)
    assume(len(full) > 0)
    size = data.draw(st.integers(0, len(full) - 1), label="region size")
    # The overflowing buffer, and a sentinel none of its bytes equal at its first position.
    pos, victim = 0, None
    for fr in frames:
        for b in fr.bufs:
            if pos + b.size > size and b.size:
                victim = b
                break
            pos += b.size
        if victim is not None:
            break
    assert victim is not None
    sentinel = victim.data[0] ^ 0xFF
    backing = np.full(size + 64, sentinel, dtype=np.uint8)
    ck = Checkpt.mmio(backing[:size])
    pos = 0
    raised = False
    for fr in frames:
        ck.frame_open(fr.style)
        for b in fr.bufs:
            if b is victim:
                msg = f"at offset {pos} do not fit in {size}$"
                with pytest.raises(CheckptIOError, match=msg) as ei:
                    ck.buf(b.data, meta=b.meta)
                assert ei.value.code == ERR_IO
                raised = True
                break
            ck.buf(b.data, meta=b.meta)
            pos += b.size
            assert ck.offset == pos
        if raised:
            break
        ck.frame_close()
    assert raised
    assert ck.offset == pos
    assert backing[:pos].tobytes() == full[:pos]
    assert np.all(backing[pos:] == sentinel), "the failing buffer wrote bytes"
    assert_failed(ck)


@settings(max_examples=50)
@given(
    frames=checkpoint_specs(max_frames=3, sizes=buffer_sizes(150_000)).filter(
        lambda fs: any(f.kind == FrameStyle.LZ4 and any(f.sizes) for f in fs)
    ),
    data=st.data(),
)
def test_lz4_region_too_small_fails(frames: list[FrameSpec], data: st.DataObject) -> None:
    """A region smaller than the output fails: CompressionError in an LZ4 frame, CheckptIOError
    in a RAW one, no later than the first buffer that cannot fit; earlier bytes are exact and
    nothing past the region is written."""
    full, rec = checkpt_mmio(frames)
    size = data.draw(
        st.one_of(st.integers(0, len(full) - 1), st.integers(max(0, len(full) - 8), len(full) - 1)),
        label="region size",
    )
    backing = np.full(size + 128, 0x5A, dtype=np.uint8)
    ck = Checkpt.mmio(backing[:size])
    err: CheckptError | None = None
    start_of_failing = -1
    failing: tuple[int, int] | None = None
    for fi, fr in enumerate(frames):
        ck.frame_open(fr.style)
        for bi, b in enumerate(fr.bufs):
            start_of_failing = ck.offset
            try:
                ck.buf(b.data, meta=b.meta)
            except CheckptError as e:
                err, failing = e, (fi, rec.afters[fi][bi])
                break
            # A call succeeds only if its bytes fit, and then they are the full write's bytes.
            assert ck.offset == rec.afters[fi][bi] <= size
        if err is not None:
            break
        ck.frame_close()
    assert err is not None, "a region too small for the output must fail"
    assert failing is not None
    fi_bad, after_bad = failing
    if frames[fi_bad].kind == FrameStyle.LZ4:
        assert type(err) is CompressionError
        assert f"LZ4 frame at offset {rec.opens[fi_bad]}, chunk " in str(err)
    else:
        assert type(err) is CheckptIOError
        assert after_bad > size  # RAW fails at exactly the overflowing call
    assert backing[:start_of_failing].tobytes() == full[:start_of_failing]
    assert np.all(backing[size:] == 0x5A), "wrote past the region's end"
    assert_failed(ck)


@pytest.mark.parametrize("room", [0, 1, 2, 3])
def test_lz4_fails_with_fewer_than_four_bytes_left(room: int) -> None:
    ck = Checkpt.mmio(bytearray(room))
    ck.frame_open(FrameStyle.LZ4)
    ck.buf(b"")  # zero bytes never need room
    with pytest.raises(CompressionError, match=r"frame at offset 0, chunk 0") as ei:
        ck.buf(b"x")
    assert ei.value.code == ERR_COMP
    assert isinstance(ei.value, ValueError)
    assert_failed(ck)


# ----------------------------------------------------------------------------------------------
# Truncated input
# ----------------------------------------------------------------------------------------------


def _first_unreadable(frames: list[FrameSpec], rec: Offsets, cut: int) -> tuple[int, int]:
    """The (frame, buffer) whose restore must fail when the input ends at ``cut``."""
    for fi, fr in enumerate(frames):
        for bi, b in enumerate(fr.bufs):
            if b.size and rec.afters[fi][bi] > cut:
                return fi, bi
    raise AssertionError("nothing is cut")


def _restore_truncated(
    rs: Restore, frames: list[FrameSpec], rec: Offsets, cut: int, mode: str
) -> None:
    fi_bad, bi_bad = _first_unreadable(frames, rec, cut)
    for fi, fr in enumerate(frames):
        assert rs.frame_open(fr.style) == rec.opens[fi]
        for bi, b in enumerate(fr.bufs):
            out = bytearray(b.size)
            if (fi, bi) == (fi_bad, bi_bad):
                lz4_mmio = mode == "mmio" and fr.kind == FrameStyle.LZ4
                with pytest.raises(CompressionError if lz4_mmio else CheckptIOError) as ei:
                    rs.buf(out, meta=b.meta)
                if fr.kind == FrameStyle.LZ4:
                    assert f"frame at offset {rec.opens[fi]}," in str(ei.value)
                    assert re.search(r"chunk \d+", str(ei.value))
                assert_failed(rs)
                return
            rs.buf(out, meta=b.meta)
            assert out == b.data
            assert rs.offset == rec.afters[fi][bi]
        assert rs.frame_close() == rec.closes[fi]
    raise AssertionError("the truncated input restored without error")


@settings(max_examples=60)
@given(frames=checkpoint_specs(max_frames=4, sizes=buffer_sizes(150_000)), data=st.data())
def test_truncated_input_fails_at_the_first_missing_buffer(
    frames: list[FrameSpec], data: st.DataObject
) -> None:
    """Cut anywhere: stream mode raises CheckptIOError, mmio raises CheckptIOError (RAW) or
    CompressionError (LZ4), exactly at the first buffer with missing bytes."""
    blob, rec = checkpt_mmio(frames)
    assume(len(blob) > 0)
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    for mode in ("stream", "mmio"):
        part = blob[:cut]
        rs = Restore.stream(io.BytesIO(part)) if mode == "stream" else Restore.mmio(part)
        assert rs.size == cut
        _restore_truncated(rs, frames, rec, cut, mode)


def _mixed_frames() -> list[FrameSpec]:
    c = [Content(g, n, s) for g, n, s in (
        ("text", 70_000, 1), ("splitmix64", 300, 2), ("runs", 140_000, 3), ("words", 1, 4),
        ("fill", 65_536, 5), ("mul32", 5000, 6),
    )]
    return [
        FrameSpec(1, (BufSpec(c[1]), BufSpec(c[3]))),
        FrameSpec(2, (BufSpec(c[0]), BufSpec(c[1], True), BufSpec(c[2]), BufSpec(c[3]))),
        FrameSpec(2, ()),
        FrameSpec(0, (BufSpec(c[4]),)),
        FrameSpec(2, (BufSpec(c[5]), BufSpec(c[4], True))),
    ]


MIXED = _mixed_frames()


def _boundaries(frames: list[FrameSpec], blob: bytes, rec: Offsets) -> list[int]:
    """Every frame, buffer and LZ4 chunk boundary of ``blob``."""
    points = {0}
    for fr, start in zip(frames, rec.opens, strict=True):
        points.add(start)
        if fr.kind == FrameStyle.LZ4:
            off = start
            for cks in decode_lz4_frame(blob, start, fr.sizes)[1]:
                for _, stored in cks:
                    points.update((off + 3, off + stored))  # after the header, after the block
                    off += stored
    for afters in rec.afters:
        points.update(afters)
    return sorted(points)


@pytest.mark.parametrize("mode", ["stream", "mmio"])
def test_truncated_at_every_boundary(mode: str) -> None:
    blob, rec = checkpt_mmio(MIXED)
    cuts = sorted({c + d for c in _boundaries(MIXED, blob, rec) for d in (-1, 0, 1)})
    cuts = [c for c in cuts if 0 <= c < len(blob)]
    assert len(cuts) > 30
    for cut in cuts:
        part = blob[:cut]
        rs = Restore.stream(io.BytesIO(part)) if mode == "stream" else Restore.mmio(part)
        _restore_truncated(rs, MIXED, rec, cut, mode)


# ----------------------------------------------------------------------------------------------
# Corrupt input
# ----------------------------------------------------------------------------------------------


def _lz4_chunk_positions(frames: list[FrameSpec], blob: bytes, rec: Offsets) -> list[Any]:
    """(frame index, buffer index, chunk index, header offset, usz, stored) of every chunk."""
    out = []
    for fi, (fr, start) in enumerate(zip(frames, rec.opens, strict=True)):
        if fr.kind != FrameStyle.LZ4:
            continue
        off = start
        for bi, cks in enumerate(decode_lz4_frame(blob, start, fr.sizes)[1]):
            for ci, (usz, stored) in enumerate(cks):
                out.append((fi, bi, ci, off, usz, stored))
                off += stored
    return out


def _restore_all(blob: bytes | bytearray, frames: list[FrameSpec], mode: str) -> list[bytes]:
    rs = Restore.stream(io.BytesIO(bytes(blob))) if mode == "stream" else Restore.mmio(blob)
    got = []
    for fr in frames:
        rs.frame_open(fr.style)
        for b in fr.bufs:
            out = bytearray(b.size)
            rs.buf(out, meta=b.meta)
            got.append(bytes(out))
        rs.frame_close()
    rs.fini()
    return got


@pytest.mark.parametrize("mode", ["stream", "mmio"])
@pytest.mark.parametrize("which", ["zero", "one_too_big", "max24"])
def test_corrupt_chunk_header(mode: str, which: str) -> None:
    """csz = 0 or csz > CSZ_MAX(usz) - 3 is a CompressionError naming frame offset and chunk."""
    blob, rec = checkpt_mmio(MIXED)
    chunks = _lz4_chunk_positions(MIXED, blob, rec)
    assert len(chunks) >= 8
    for fi, bi, ci, off, usz, _ in chunks:
        csz = {"zero": 0, "one_too_big": chunk_csz_max(usz) - 3 + 1, "max24": (1 << 24) - 1}[which]
        bad = bytearray(blob)
        bad[off : off + 3] = csz.to_bytes(3, "little")
        with pytest.raises(CompressionError) as ei:
            _restore_all(bad, MIXED, mode)
        msg = str(ei.value)
        assert f"frame at offset {rec.opens[fi]}, buffer {bi}, chunk {ci} at offset {off}" in msg
        assert f"compressed size {csz} for a {usz}-byte chunk" in msg
        assert ei.value.code == ERR_COMP


@pytest.mark.parametrize("mode", ["stream", "mmio"])
def test_error_names_buffer_index_in_call_order(mode: str) -> None:
    """Zero-size buffers count: the failing buffer is named by its call index in the frame."""
    payload = Content("runs", 70_000, 9).data
    frames = [
        FrameSpec(1, (literal(b"head"),)),
        FrameSpec(2, (literal(b""), literal(b"abc"), literal(b"", meta=True), literal(payload))),
    ]
    blob, rec = checkpt_mmio(frames)
    chunks = _lz4_chunk_positions(frames, blob, rec)
    assert [(fi, bi, ci) for fi, bi, ci, *_ in chunks] == [(1, 1, 0), (1, 3, 0), (1, 3, 1)]
    _, _, _, off, _, _ = chunks[2]
    bad = bytearray(blob)
    bad[off : off + 3] = b"\0\0\0"
    msg = rf"frame at offset 4, buffer 3, chunk 1 at offset {off}:"
    with pytest.raises(CompressionError, match=msg):
        _restore_all(bad, frames, mode)


def _replace_chunk(blob: bytes, off: int, stored: int, block: bytes) -> bytes:
    return blob[:off] + len(block).to_bytes(3, "little") + block + blob[off + stored :]


@pytest.mark.parametrize("mode", ["stream", "mmio"])
@pytest.mark.parametrize("delta", [-1, +1])
def test_block_of_wrong_decoded_size_is_rejected(mode: str, delta: int) -> None:
    """A well-formed LZ4 block that decodes to usz-1 (upstream accepts it and keeps stale ring
    bytes) or usz+1 bytes must raise CompressionError; the second chunk of a buffer is used so
    the block needs the 64 KiB history."""
    text = Content("text", 3 * CHUNK_USZ_MAX, 7)
    frames = [FrameSpec(2, (literal(text.data),))]
    blob, rec = checkpt_mmio(frames)
    fi, bi, ci, off, usz, stored = _lz4_chunk_positions(frames, blob, rec)[1]
    assert (fi, bi, ci, usz) == (0, 0, 1, CHUNK_USZ_MAX)
    hist = text.data[:CHUNK_USZ_MAX]
    piece = text.data[CHUNK_USZ_MAX : CHUNK_USZ_MAX + usz + delta]
    block = lz4.block.compress(piece, store_size=False, dict=hist)
    bad = _replace_chunk(blob, off, stored, block)
    with pytest.raises(CompressionError) as ei:
        _restore_all(bad, frames, mode)
    msg = str(ei.value)
    assert f"frame at offset 0, buffer 0, chunk 1 at offset {off}" in msg
    if delta < 0:
        assert f"decoded to {usz - 1} bytes, expected {usz}" in msg
    # The same block decodes fine when the size matches: the replacement itself is valid.
    right = text.data[CHUNK_USZ_MAX : 2 * CHUNK_USZ_MAX]
    good = lz4.block.compress(right, store_size=False, dict=hist)
    assert _restore_all(_replace_chunk(blob, off, stored, good), frames, mode) == [text.data]


@pytest.mark.parametrize("mode", ["stream", "mmio"])
def test_truncated_block_with_fixed_header_is_rejected(mode: str) -> None:
    """Drop the last byte of a block and fix its header: the block is malformed."""
    frames = [FrameSpec(2, (literal(Content("words", 5000, 3).data),))]
    blob, rec = checkpt_mmio(frames)
    (_, _, _, off, _, stored), = _lz4_chunk_positions(frames, blob, rec)
    block = blob[off + 3 : off + stored]
    bad = _replace_chunk(blob, off, stored, block[:-1])
    with pytest.raises(CompressionError, match=r"frame at offset 0, buffer 0, chunk 0.*malformed"):
        _restore_all(bad, frames, mode)
    with pytest.raises(ValueError, match="chunk at offset 0"):
        decode_lz4_frame(bad, 0, frames[0].sizes)


@settings(max_examples=120)
@given(
    frames=st.lists(
        frame_specs(styles=(2,), max_bufs=4, sizes=buffer_sizes(140_000)), min_size=1, max_size=2
    ),
    data=st.data(),
)
def test_flipped_block_bytes_agree_with_independent_decoder(
    frames: list[FrameSpec], data: st.DataObject
) -> None:
    """LZ4 has no checksum: a flipped byte inside a block may raise CompressionError or decode to
    other bytes. Either way the engine agrees exactly with python-lz4 (which raises unless a block
    decodes to exactly usz bytes), in both modes, and output sizes never change."""
    blob, rec = checkpt_mmio(frames)
    chunks = _lz4_chunk_positions(frames, blob, rec)
    assume(chunks)
    fi, _, _, off, _, stored = data.draw(st.sampled_from(chunks), label="chunk")
    nflips = data.draw(st.integers(1, 3), label="flips")
    bad = bytearray(blob)
    for _ in range(nflips):
        pos = data.draw(st.integers(off + 3, off + stored - 1), label="byte")
        bad[pos] ^= data.draw(st.integers(1, 255), label="mask")

    expected: list[bytes] | None = []
    for fr, start in zip(frames, rec.opens, strict=True):
        try:
            bufs, _, _ = decode_lz4_frame(bad, start, fr.sizes)
        except ValueError:
            expected = None
            break
        assert expected is not None
        expected.extend(bufs)
    event("python-lz4 rejects" if expected is None else "python-lz4 accepts")
    for mode in ("stream", "mmio"):
        if expected is None:
            with pytest.raises(CompressionError, match=f"frame at offset {rec.opens[fi]}, buffer "):
                _restore_all(bad, frames, mode)
            continue
        got = _restore_all(bad, frames, mode)  # must not raise: python-lz4 accepts it
        assert [len(g) for g in got] == [b.size for fr in frames for b in fr.bufs]
        assert got == expected


# ----------------------------------------------------------------------------------------------
# Error classes
# ----------------------------------------------------------------------------------------------


def test_error_codes_bases_and_strerror() -> None:
    table = [
        (InvalidArgumentError, ERR_INVAL, ValueError),
        (UnsupportedError, ERR_UNSUP, NotImplementedError),
        (CheckptIOError, ERR_IO, OSError),
        (CompressionError, ERR_COMP, ValueError),
        (FormatError, ERR_COMP, ValueError),
    ]
    for cls, code, base in table:
        assert issubclass(cls, CheckptError)
        assert issubclass(cls, base)
        assert cls.code == code
        assert cls("x").code == code
    assert (SUCCESS, ERR_INVAL, ERR_UNSUP, ERR_IO, ERR_COMP) == (0, -1, -2, -3, -4)
    assert strerror(0) == "success"
    assert strerror(-1) == "bad input args"
    assert strerror(-2) == "unsupported on this target"
    assert strerror(-3) == "io error"
    assert strerror(-4) == "compression error"
    for other in (1, -5, 99, -1000):
        assert strerror(other) == "unknown"
    assert [error_for_code(c) for c in (-1, -2, -3, -4)] == [
        InvalidArgumentError, UnsupportedError, CheckptIOError, CompressionError,
    ]
    assert ndckpt.strerror is strerror


@pytest.mark.parametrize("style", [3, -1, 255, 1 << 40])
@pytest.mark.parametrize("which", ["checkpt", "restore"])
def test_unknown_style_int_is_unsupported(style: int, which: str) -> None:
    obj: Checkpt | Restore = Checkpt.mmio(bytearray(8)) if which == "checkpt" else Restore.mmio(b"")
    with pytest.raises(UnsupportedError, match=str(style)) as ei:
        obj.frame_open(style)
    assert ei.value.code == ERR_UNSUP
    assert isinstance(ei.value, NotImplementedError)
    assert_failed(obj)


@pytest.mark.parametrize("style", [1.0, "zstd", None, True, b"raw"])
def test_bad_style_type_is_invalid(style: object) -> None:
    ck = Checkpt.mmio(bytearray(8))
    with pytest.raises(InvalidArgumentError):
        ck.frame_open(style)
    assert_failed(ck)


def test_style_names_and_default() -> None:
    for style, kind in ((0, "RAW"), (1, "RAW"), (2, "LZ4"), ("raw", "RAW"), ("LZ4", "LZ4")):
        ck = Checkpt.mmio(bytearray(8))
        assert ck.frame_open(style) == 0
        assert ck.frame_style is FrameStyle[kind]
        ck.frame_close()
        ck.fini()


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


class _NoRead:
    pass


@pytest.mark.parametrize(
    "bad", [-1, -100, object(), "a/path", 3.0, None, True, _NoRead(), io.StringIO()]
)
def test_bad_stream_targets(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        Checkpt.stream(bad)
    assert ei.value.code == ERR_INVAL
    with pytest.raises(InvalidArgumentError):
        Restore.stream(bad)


@pytest.mark.parametrize("size", [0, 1, WBUF_MIN - 1, -5, 1.5e6, "big", None])
def test_stream_buffer_too_small(size: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="69632"):
        Checkpt.stream(io.BytesIO(), wbuf_size=size)
    with pytest.raises(InvalidArgumentError, match="69632"):
        Restore.stream(io.BytesIO(), rbuf_size=size)
    Checkpt.stream(io.BytesIO(), wbuf_size=WBUF_MIN).fini()
    Restore.stream(io.BytesIO(), rbuf_size=WBUF_MIN).fini()


@pytest.mark.parametrize(
    "region",
    [
        b"\x00" * 64,
        memoryview(bytearray(64)).toreadonly(),
        np.zeros(64, np.uint8)[::2],  # not contiguous
        np.zeros((8, 8), np.uint8, order="F")[:, :3],
        np.asfortranarray(np.zeros((8, 8), np.int32)),
        "text",
        object(),
        42,
    ],
)
def test_bad_checkpt_regions(region: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Checkpt.mmio(region)


def test_readonly_numpy_region_is_invalid_for_checkpt_but_fine_for_restore() -> None:
    a = np.zeros(64, np.uint8)
    a.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="writable"):
        Checkpt.mmio(a)
    rs = Restore.mmio(a)
    assert rs.size == 64
    rs.fini()


@pytest.mark.parametrize("region", [np.zeros(64, np.uint8)[::2], "text", object(), 42])
def test_bad_restore_regions(region: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Restore.mmio(region)


@pytest.mark.parametrize("style", [FrameStyle.RAW, FrameStyle.LZ4])
@pytest.mark.parametrize(
    "bad",
    [
        np.arange(32, dtype=np.int32)[::2],
        np.zeros((4, 4), order="F"),
        "a string",
        12,
        object(),
        [1, 2, 3],
    ],
)
def test_bad_input_buffers(style: FrameStyle, bad: Any) -> None:
    """Non-contiguous arrays and non-buffers are InvalidArgumentError and fail the writer."""
    ck = Checkpt.mmio(bytearray(1024))
    ck.frame_open(style)
    with pytest.raises(InvalidArgumentError):
        ck.buf(bad)
    assert_failed(ck)


@pytest.mark.parametrize("style", [FrameStyle.RAW, FrameStyle.LZ4])
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(32, dtype=np.int32)[::2],
        np.zeros((4, 4), order="F"),
        b"\x00" * 16,
        memoryview(bytearray(16)).toreadonly(),
        "a string",
    ],
)
def test_bad_output_buffers(style: FrameStyle, bad: Any) -> None:
    blob, _ = checkpt_mmio([FrameSpec(style, (literal(bytes(64)),))])
    rs = Restore.mmio(blob)
    rs.frame_open(style)
    with pytest.raises(InvalidArgumentError):
        rs.buf(bad)
    assert_failed(rs)


@pytest.mark.parametrize("which", ["checkpt", "restore"])
@pytest.mark.parametrize("style", [FrameStyle.RAW, FrameStyle.LZ4])
def test_meta_limit(which: str, style: FrameStyle) -> None:
    """meta=True accepts up to 65536 bytes; 65537 is InvalidArgumentError (data has no limit)."""
    frames = [FrameSpec(style, (literal(bytes(META_MAX), meta=True), literal(bytes(META_MAX + 1))))]
    blob, _ = checkpt_mmio(frames)
    if which == "checkpt":
        obj: Checkpt | Restore = Checkpt.mmio(bytearray(len(blob) * 2 + 1000))
        ok, too_big = bytes(META_MAX), bytes(META_MAX + 1)
    else:
        obj = Restore.mmio(blob)
        ok, too_big = bytearray(META_MAX), bytearray(META_MAX + 1)
    obj.frame_open(style)
    obj.buf(ok, meta=True)
    with pytest.raises(InvalidArgumentError, match="65536"):
        obj.buf(too_big, meta=True)
    assert_failed(obj)


@pytest.mark.parametrize("which", ["checkpt", "restore"])
def test_zero_size_buffers_need_a_frame(which: str) -> None:
    for empty in (b"", bytearray(), np.empty(0), np.empty((0, 3), np.int64), memoryview(b"")):
        obj: Checkpt | Restore
        obj = Checkpt.mmio(bytearray(8)) if which == "checkpt" else Restore.mmio(b"")
        if which == "restore" and isinstance(empty, bytes | memoryview):
            empty = bytearray()
        with pytest.raises(InvalidArgumentError, match="not in a frame"):
            obj.buf(empty)
        assert_failed(obj)
        obj = Checkpt.mmio(bytearray(0)) if which == "checkpt" else Restore.mmio(b"")
        obj.frame_open(FrameStyle.LZ4)
        obj.buf(empty)
        obj.buf(empty, meta=True)
        assert obj.offset == 0
        assert obj.frame_close() == 0
        obj.fini()


# ----------------------------------------------------------------------------------------------
# view and seek
# ----------------------------------------------------------------------------------------------


def test_view_requires_mmio_and_raw() -> None:
    frames = [FrameSpec(2, (literal(b"abc" * 10),)), FrameSpec(1, (literal(b"xyz"),))]
    blob, _ = checkpt_mmio(frames)
    rs = Restore.mmio(blob)
    rs.frame_open(FrameStyle.LZ4)
    with pytest.raises(InvalidArgumentError, match="RAW"):
        rs.view(30)
    assert_failed(rs)

    rs = Restore.stream(io.BytesIO(blob))
    rs.seek(len(blob) - 3)
    rs.frame_open(FrameStyle.RAW)
    with pytest.raises(InvalidArgumentError, match="mmio"):
        rs.view(3)
    assert_failed(rs)

    rs = Restore.mmio(blob)
    with pytest.raises(InvalidArgumentError, match="not in a frame"):
        rs.view(0)
    assert_failed(rs)

    for bad in (-1, 2.0, True, "3"):
        rs = Restore.mmio(blob)
        rs.seek(len(blob) - 3)
        rs.frame_open(FrameStyle.RAW)
        with pytest.raises(InvalidArgumentError, match="nbytes"):
            rs.view(bad)  # type: ignore[arg-type]
        assert_failed(rs)

    rs = Restore.mmio(blob)
    rs.seek(len(blob) - 3)
    rs.frame_open(FrameStyle.RAW)
    assert rs.view(0).nbytes == 0
    assert rs.offset == len(blob) - 3
    with pytest.raises(CheckptIOError, match="region"):
        rs.view(4)
    assert_failed(rs)


def test_raw_region_overrun_on_restore_is_io_error() -> None:
    rs = Restore.mmio(bytes(10))
    rs.frame_open()
    rs.buf(bytearray(6))
    with pytest.raises(CheckptIOError, match="offset 6"):
        rs.buf(bytearray(5))
    assert_failed(rs)


@pytest.mark.parametrize("kind", ["mmio", "bytesio", "fd"])
def test_seek_rules(kind: str, tmp_path: Path) -> None:
    blob, rec = checkpt_mmio(MIXED)
    path = tmp_path / "c.ckpt"
    path.write_bytes(blob)
    fds: list[int] = []

    def make() -> Restore:
        if kind == "mmio":
            return Restore.mmio(blob)
        if kind == "bytesio":
            return Restore.stream(io.BytesIO(blob))
        fds.append(os.open(path, os.O_RDONLY))
        return Restore.stream(fds[-1])

    try:
        rs = make()
        assert rs.size == len(blob)
        rs.seek(len(blob))  # to EOF
        rs.seek(0)  # to SOF
        for i in (3, 1, 4, 0):
            rs.seek(rec.opens[i])
            assert rs.offset == rec.opens[i]
            read_frames(rs, [MIXED[i]])
        for bad in (len(blob) + 1, -1, 1 << 70, 2.0, "0"):
            rs = make()
            with pytest.raises(InvalidArgumentError):
                rs.seek(bad)  # type: ignore[arg-type]
            assert_failed(rs)
        rs = make()
        rs.frame_open(MIXED[0].style)
        with pytest.raises(InvalidArgumentError, match="in the frame"):
            rs.seek(0)
        assert_failed(rs)
    finally:
        for fd in fds:
            os.close(fd)


def test_seek_on_pipe_is_invalid() -> None:
    r, w = os.pipe()
    try:
        rs = Restore.stream(r)
        assert rs.size is None
        assert rs.offset == 0
        with pytest.raises(InvalidArgumentError, match="not seekable"):
            rs.seek(0)
        assert_failed(rs)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("use_fd", [False, True])
def test_stream_restore_offsets_count_from_file_start(use_fd: bool, tmp_path: Path) -> None:
    """A seekable input positioned after a prefix: offsets include the prefix (fd_restore)."""
    blob, rec = checkpt_mmio(MIXED)
    prefix = b"0123456789"
    path = tmp_path / "p.ckpt"
    path.write_bytes(prefix + blob)
    with open(path, "rb") as f:
        f.seek(len(prefix))
        rs = Restore.stream(f.fileno() if use_fd else f)
        assert rs.offset == len(prefix)
        assert rs.size == len(prefix) + len(blob)
        got = read_frames(rs, MIXED)
        assert got.opens == [o + len(prefix) for o in rec.opens]
        assert got.closes == [c + len(prefix) for c in rec.closes]
        rs.fini()


# ----------------------------------------------------------------------------------------------
# I/O failures
# ----------------------------------------------------------------------------------------------


class _FailingWriter:
    def __init__(self, result: Any = None, exc: BaseException | None = None) -> None:
        self.result, self.exc = result, exc

    def write(self, b: Any) -> Any:
        if self.exc is not None:
            raise self.exc
        return self.result


@pytest.mark.parametrize(
    ("writer", "pattern"),
    [
        (_FailingWriter(exc=OSError(errno.ENOSPC, "No space left on device")), "No space"),
        (_FailingWriter(result=0), "returned 0"),
        (_FailingWriter(result=None), "would block"),
        (_FailingWriter(exc=ValueError("I/O operation on closed file")), "closed file"),
    ],
)
@pytest.mark.parametrize("size", [10, 200_000])
def test_write_failures_are_io_errors(writer: Any, pattern: str, size: int) -> None:
    """Small buffers fail at the flush in frame_close; large RAW buffers fail in buf."""
    ck = Checkpt.stream(writer)
    ck.frame_open()
    if size >= 1 << 16:
        with pytest.raises(CheckptIOError, match=pattern) as ei:
            ck.buf(bytes(size))
    else:
        ck.buf(bytes(size))
        with pytest.raises(CheckptIOError, match=pattern) as ei:
            ck.frame_close()
    assert ei.value.code == ERR_IO
    assert isinstance(ei.value, OSError)
    if isinstance(writer.exc, OSError):
        assert ei.value.errno == errno.ENOSPC
    assert_failed(ck)


def test_closed_fd_is_io_error(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
    ck = Checkpt.stream(fd)
    ck.frame_open(FrameStyle.LZ4)
    ck.buf(b"abc" * 1000)
    os.close(fd)
    with pytest.raises(CheckptIOError) as ei:
        ck.frame_close()
    assert ei.value.errno == errno.EBADF
    assert_failed(ck)


def test_read_failure_is_io_error(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes(100))
    fd = os.open(path, os.O_WRONLY)  # not readable
    try:
        rs = Restore.stream(fd)
        rs.frame_open()
        with pytest.raises(CheckptIOError) as ei:
            rs.buf(bytearray(10))
        assert ei.value.errno == errno.EBADF
        assert_failed(rs)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# State machine basics (the rule-based machine is in test_engine_statemachine.py)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["checkpt", "restore"])
def test_illegal_transitions(which: str) -> None:
    def make() -> Checkpt | Restore:
        return Checkpt.mmio(bytearray(64)) if which == "checkpt" else Restore.mmio(bytes(64))

    obj = make()
    assert obj.can_open
    assert not obj.in_frame
    assert not obj.failed
    with pytest.raises(InvalidArgumentError, match="not in a frame"):
        obj.frame_close()
    assert_failed(obj)

    obj = make()
    obj.frame_open()
    with pytest.raises(InvalidArgumentError, match="already in a frame"):
        obj.frame_open(FrameStyle.LZ4)
    assert_failed(obj)

    obj = make()
    obj.frame_open(FrameStyle.LZ4)
    with pytest.raises(InvalidArgumentError, match="inside the frame"):
        obj.fini()
    assert obj.failed
    obj.fini()  # now succeeds
    obj.fini()  # and again: a no-op
    with pytest.raises(InvalidArgumentError, match="finished"):
        obj.frame_open()
